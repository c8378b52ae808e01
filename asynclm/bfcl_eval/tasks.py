"""A BFCL entry as a latency task: prompt, expected call chains, simulated latencies. Pure.

Every AST category becomes chains of expected calls: a parallel entry's calls are independent
(one chain each), a simple or multiple entry is one chain of one call, an irrelevance entry has
none, a multistep_parallel task has its three chains. The expected calls are BFCL's possible
answers, written as calls by `answer_call`: for each parameter its first accepted value, or
nothing where the first accepted value is "" (optional).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asynclm.bfcl_eval.checker import category_kind
from asynclm.bfcl_eval.data import Entry
from asynclm.bfcl_eval.rules import OPTIONAL, concrete
from asynclm.tools.simulated import fnv1a_32

__all__ = [
    "INSTRUCTIONS",
    "ExpectedCall",
    "LatencyModel",
    "Task",
    "answer_call",
    "cheat_sheet",
    "make_task",
    "parse_latency",
    "simulated_result",
]

INSTRUCTIONS = (
    "You are an expert at calling functions. Make the calls that fulfil the user's request, "
    "with argument values taken from the request; start calls that do not depend on each "
    "other right away. If none of the functions fits the request, make no call and say so."
)


def simulated_result(name: str, arguments: Mapping[str, Any]) -> str:
    """What a simulated function returns: short and stable (`ok #0427`), so that a run
    measures the calling, not the reading of long results (every mode injects them alike).
    Training data that imitates the harness's runs uses the same text."""
    key = name + repr(sorted(arguments.items(), key=lambda item: item[0]))
    return f"ok #{fnv1a_32(key) % 10000:04d}"


@dataclass(frozen=True, slots=True)
class ExpectedCall:
    """One ground-truth call: its id in the task, the function and the arguments written."""

    call_id: str
    name: str
    arguments: dict[str, Any]

    @property
    def body(self) -> str:
        """The call as Python syntax, `name(key=value, ...)` (what a call block holds)."""
        from asynclm.cml.tokens import format_value

        rendered = ", ".join(f"{k}={format_value(v)}" for k, v in self.arguments.items())
        return f"{self.name}({rendered})"


@dataclass(frozen=True, slots=True)
class Task:
    """An entry ready to run: what the user says, and the calls it expects, chain by chain.

    Attributes:
        entry: The BFCL entry (functions and possible answers).
        prompt: The user's message.
        system: Instructions from the entry's own system messages (some live entries have them).
        chains: Expected calls; inside a chain each call depends on the one before it.
    """

    entry: Entry
    prompt: str
    system: str
    chains: tuple[tuple[ExpectedCall, ...], ...]

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def calls(self) -> list[ExpectedCall]:
        return [c for chain in self.chains for c in chain]


def make_task(entry: Entry) -> Task:
    """The task of a BFCL entry (its first turn).

    Raises:
        ValueError: A category the harness does not run (multi-turn ones).
    """
    kind = category_kind(entry.category)
    messages = entry.question[0] if entry.question else []
    prompt = "\n".join(m["content"] for m in messages if m.get("role") == "user")
    system = "\n".join(m["content"] for m in messages if m.get("role") == "system")
    answers = _answer_chains(kind, entry.ground_truth)
    longest = max(map(len, answers), default=0)
    docs = {f["name"]: f for f in reversed(entry.functions)}  # the first of a name wins
    chains = tuple(
        tuple(
            answer_call(a, _call_id(i, k, longest), docs.get(next(iter(a))))
            for k, a in enumerate(chain)
        )
        for i, chain in enumerate(answers)
    )
    return Task(entry, prompt, system, chains)


def _answer_chains(kind: str, ground_truth: list | None) -> list[list[dict]]:
    if kind in ("irrelevance", "relevance") or not ground_truth:
        return []
    if kind == "chains":
        return [list(chain) for chain in ground_truth]
    if kind == "parallel":
        return [[answer] for answer in ground_truth]
    return [[ground_truth[0]]]


def _call_id(chain: int, position: int, longest: int) -> str:
    """`c1, c2, ...` when every chain has one call; `a1, a2, b1, ...` for longer chains."""
    if longest <= 1:
        return f"c{chain + 1}"
    return f"{_letters(chain)}{position + 1}"


def _letters(index: int) -> str:
    text = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        text = chr(ord("a") + rest) + text
    return text


def answer_call(answer: dict, call_id: str = "c1", doc: dict | None = None) -> ExpectedCall:
    """A possible answer written as one call: each parameter's first accepted value.

    With the function's document: a required parameter takes its first accepted value that is
    not "", and an undocumented one is left out where "" is accepted. Otherwise a parameter
    whose first accepted value is "" is left out, as is one with no accepted value at all (a few
    live entries). Possible dicts are made concrete (`rules.concrete`).
    """
    name, accepted = next(iter(answer.items()))
    parameters = (doc or {}).get("parameters", {})
    required = set(parameters.get("required", []))
    documented = parameters.get("properties")
    arguments = {}
    for param, options in accepted.items():
        given = [o for o in options if not _is_optional(o)]
        if not given or (documented is not None and param not in documented and given != options):
            continue
        if param in required or not _is_optional(options[0]):
            arguments[param] = concrete(given[0])
    return ExpectedCall(call_id, name, arguments)


def _is_optional(value: Any) -> bool:
    return type(value) is str and value == OPTIONAL


def cheat_sheet(task: Task) -> str:
    """The ground-truth calls as a note appended to the prompt (`--cheat-sheet`)."""
    if not task.chains:
        return "Cheat sheet: no function fits this request; make no call."
    lines = ["Cheat sheet: make exactly these calls."]
    for chain in task.chains:
        lines.append(" then ".join(c.body for c in chain))
    if any(len(chain) > 1 for chain in task.chains):
        lines.append("Calls on one line run in that order, each after the one before returns.")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """How long a simulated function takes.

    Attributes:
        kind: "fnv" (30-500 ms from the FNV-1a hash of the name, as in AsyncLM), "fixed" or
            "uniform" (a per-task, per-function draw between `low` and `high`, seeded).
        low: The fixed latency, or the uniform draw's low end (seconds).
        high: The uniform draw's high end (seconds).
    """

    kind: str = "fnv"
    low: float = 0.0
    high: float = 0.0

    def seconds(self, name: str, task_id: str = "", *, seed: int = 0) -> float:
        """The latency of function `name` in task `task_id`."""
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return random.Random(f"{seed}:{task_id}:{name}").uniform(self.low, self.high)
        from asynclm.tools.simulated import simulated_latency

        return simulated_latency(name)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"fixed {self.low:g} s"
        if self.kind == "uniform":
            return f"uniform {self.low:g}-{self.high:g} s"
        return "FNV-1a of the name, 30-500 ms"


def parse_latency(text: str) -> LatencyModel:
    """`fnv`, `fixed:0.2` or `uniform:0.03,0.5` as a latency model.

    Raises:
        ValueError: Any other text, or negative or inverted bounds.
    """
    kind, _, rest = text.partition(":")
    try:
        values = [float(v) for v in rest.split(",")] if rest else []
    except ValueError:
        values = [-1.0]
    if not all(math.isfinite(v) for v in values):
        values = [-1.0]
    if kind == "fnv" and not rest:
        return LatencyModel()
    if kind == "fixed" and len(values) == 1 and values[0] >= 0:
        return LatencyModel("fixed", values[0], values[0])
    if kind == "uniform" and len(values) == 2 and 0 <= values[0] <= values[1]:
        return LatencyModel("uniform", values[0], values[1])
    raise ValueError(
        f"bad latency {text!r}: use fnv, fixed:SECONDS or uniform:LOW,HIGH (0 <= LOW <= HIGH)"
    )


def latencies(task: Task, model: LatencyModel, *, seed: int = 0) -> dict[str, float]:
    """Each function of the task's documents → its simulated latency."""
    return {f["name"]: model.seconds(f["name"], task.id, seed=seed) for f in task.entry.functions}
