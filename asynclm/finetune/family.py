"""A tool family: one synthetic tool, how users ask for it, what it returns, how answers say it;
and a chain: two families where the second call uses the first call's result.

`Family.draw` picks one of the family's request phrases and the arguments it names; the call
passes exactly those arguments (required ones are always named), so the question and the call
agree. A phrase placeholder `{name=value}` sets an argument without showing it (a flag implied
by the wording). Answer sentences (`says`) name arguments and result fields, so the answer
copies the values the tool returned.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any

Draw = Callable[[Random], Any]
Result = Callable[[dict[str, Any], Random], Any]
_FIXED = re.compile(r"\{(\w+)=([^{}]+)\}")


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of a family's tool."""

    type: str
    description: str
    draw: Draw
    required: bool = True
    enum: tuple[Any, ...] | None = None
    items: str | None = None

    def schema(self) -> dict[str, Any]:
        """The argument's JSON schema."""
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.items is not None:
            out["items"] = {"type": self.items}
        return out


@dataclass(frozen=True, slots=True, eq=False)
class Family:
    """A synthetic tool with the ways it is asked for and answered.

    Attributes:
        name: The tool's name.
        description: Its one-line description.
        params: Its arguments, in order.
        asks: Request phrases, each naming the arguments it passes (`{city}`).
        result: Draws the tool's return value from the arguments.
        says: Answer sentences naming arguments and result fields (`{temperature}`); a result
            that is not a dict is `{result}`.
        verb: The phrases ask for an action ("book a table ...") rather than information.
        held_out: Kept out of training: evaluation uses it as a tool never seen.
        errors: Error messages a failing call may report.
        plain: Templates that turn a result dict into a plain-text result (some tools return
            text, not JSON); `plain_says` answer those.
    """

    name: str
    description: str
    params: Mapping[str, Param]
    asks: tuple[str, ...]
    result: Result
    says: tuple[str, ...]
    verb: bool = False
    held_out: bool = False
    errors: tuple[str, ...] = field(default=())
    plain: tuple[str, ...] = field(default=())
    plain_says: tuple[str, ...] = field(default=())

    def doc(self) -> dict[str, Any]:
        """The tool's function document (the form `Tool.from_schema` reads)."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {
                "type": "object",
                "properties": {name: p.schema() for name, p in self.params.items()},
                "required": [name for name, p in self.params.items() if p.required],
            },
        }

    def draw(self, rng: Random, ask: str | None = None) -> tuple[str, dict[str, Any]]:
        """A request phrase and the arguments it names (in the tool's parameter order)."""
        ask = ask if ask is not None else rng.choice(self.asks)
        named = placeholders(ask)
        fixed = {name: json.loads(value) for name, value in _FIXED.findall(ask)}
        for _ in range(8):  # two arguments drawn from one pool should differ (Paris -> Paris)
            args = {
                name: fixed[name] if name in fixed else p.draw(rng)
                for name, p in self.params.items()
                if name in named or name in fixed
            }
            texts = [v for v in args.values() if isinstance(v, str)]
            if len(set(texts)) == len(texts):
                break
        return ask, args

    def phrase(self, ask: str, args: Mapping[str, Any]) -> str:
        """The request phrase with the argument values filled in."""
        return fill(_FIXED.sub("", ask), args)

    def outcome(self, rng: Random, args: dict[str, Any], plain_p: float = 0.3) -> tuple[Any, str]:
        """A result value for `args` and an answer sentence that reports it."""
        value = self.result(args, rng)
        if self.plain and rng.random() < plain_p:
            text = fill(rng.choice(self.plain), dict(args) | value)
            return text, fill(rng.choice(self.plain_says), dict(args) | {"result": text})
        fields = dict(args) | (dict(value) if isinstance(value, Mapping) else {"result": value})
        return value, fill(rng.choice(self.says), fields)


def placeholders(template: str) -> set[str]:
    """The names a template's placeholders refer to (`{city}`, `{a.city}` -> `a`)."""
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name:
            names.add(re.split(r"[.=\[]", name)[0])
    return names


def fill(template: str, values: Mapping[str, Any]) -> str:
    """Fills placeholders with values as an answer would write them."""
    return template.format_map(_Spoken(values))


def spoken(value: Any) -> Any:
    """A value as written in a sentence: lists as "a, b and c", the rest unchanged."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = [str(spoken(v)) for v in value]
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    if isinstance(value, Mapping):
        return _Spoken(value)
    return value


class _Spoken(dict):  # type: ignore[type-arg]
    """Mapping for `str.format_map` that writes values as `spoken` does."""

    def __getitem__(self, key: str) -> Any:
        return spoken(super().__getitem__(key))

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


@dataclass(frozen=True, slots=True)
class Chain:
    """Two families where the second call uses a field of the first call's result.

    The ask phrase names arguments of the first call as `{a.x}` and of the second as `{b.x}`.
    """

    first: str
    output: str
    then: str
    param: str
    asks: tuple[str, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)  # further arguments of the second call
