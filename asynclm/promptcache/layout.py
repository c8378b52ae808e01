"""Position layout of a PML schema, and planning a prompt against it.

No torch here: this is the arithmetic the KV side executes. A schema is laid out once, in
document order: every text piece (role prefixes and suffixes included) is encoded on its own and
takes consecutive position ids; a module occupies [start, start + length) and nested modules take
positions inside it; a parameter reserves `len` positions; the members of a union all start at
the union's start and the union is as long as its longest member.

Only the chat template's own text (what role tags render to, and `Special` text) is encoded with
special tokens recognised; all other text (modules, parameter values, free text) is plain text.

A prompt's selections are then resolved against the layout into a `PromptPlan` (see `plan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from asynclm.engine.chat import ChatFormat
from asynclm.promptcache.plan import (
    ModuleSegment,
    ParameterSegment,
    PromptPlan,
    TextSegment,
    content_key,
    prefix_key,
)
from asynclm.promptcache.schema import (
    Encoding,
    Module,
    ModulePath,
    Node,
    Parameter,
    PMLError,
    Prompt,
    Role,
    Schema,
    Select,
    Special,
    Union,
)

__all__ = [
    "ChatML",
    "Encoder",
    "ModuleLayout",
    "ParameterSlot",
    "SchemaLayout",
    "TextPiece",
    "layout_schema",
    "plan_prompt",
]


class Encoder(Protocol):
    """Text to token ids, no BOS added (`Tokenizer.encode` is one).

    `special=True` only for the chat template's own text (special tokens recognised); other
    text is plain text, whatever it contains.
    """

    def __call__(self, text: str, *, special: bool = False) -> Sequence[int]: ...


# The ChatML template (SmolLM2, Qwen2); kept under this name for the PML API.
ChatML = ChatFormat.chatml


# --- the schema layout ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPiece:
    """One encoded text piece at consecutive positions starting at `start`."""

    tokens: tuple[int, ...]
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)


@dataclass(frozen=True, slots=True)
class ParameterSlot:
    """The positions [start, start + length) reserved for a parameter of module `module`."""

    module: ModulePath
    name: str
    start: int
    length: int


@dataclass(frozen=True, slots=True)
class ModuleLayout:
    """Where one module sits in its schema.

    Attributes:
        path: Module names from the schema down, e.g. ("a", "b"); () is the schema's own text.
        start: First position of the module's span.
        length: Length of the span: own text, parameter slots and nested modules.
        pieces: The module's own text pieces (not those of nested modules), in order.
        parameters: The module's parameter slots, in order.
        union: Id of the union this module is a member of, or None.
        tokens: The module's own tokens: its pieces' tokens, concatenated.
        positions: The position of each of `tokens`: increasing, with gaps at parameter slots
            and nested modules.
        key: Content key of `tokens` at `positions` (see `content_key`).
    """

    path: ModulePath
    start: int
    length: int
    pieces: tuple[TextPiece, ...]
    parameters: tuple[ParameterSlot, ...]
    union: int | None
    tokens: tuple[int, ...] = field(repr=False)
    positions: tuple[int, ...] = field(repr=False)
    key: str

    @property
    def end(self) -> int:
        return self.start + self.length

    def parameter(self, name: str) -> ParameterSlot | None:
        """The slot of parameter `name`, or None."""
        return next((slot for slot in self.parameters if slot.name == name), None)


@dataclass(frozen=True, slots=True)
class SchemaLayout:
    """A schema laid out with one tokenizer and chat format; plans prompts against it.

    Attributes:
        schema: The schema.
        length: Positions the schema spans, [0, length); free text starts at `length`.
        modules: Every module, the schema's own text () first, in document order (parents
            before their nested modules).
        encode: The tokenizer's text-to-ids function.
        chat: The chat format role tags render with.
        max_position: The model's window: every planned position must be below it (None: no
            limit).
    """

    schema: Schema
    length: int
    modules: tuple[ModuleLayout, ...]
    encode: Encoder = field(repr=False, compare=False)
    chat: ChatFormat = field(repr=False, compare=False)
    max_position: int | None = None
    by_path: Mapping[ModulePath, ModuleLayout] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_path", {m.path: m for m in self.modules})

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def encoding(self) -> Encoding:
        return self.schema.encoding

    def module(self, path: Iterable[str]) -> ModuleLayout:
        """The layout of the module at `path`; PMLError if there is none."""
        path = tuple(path)
        found = self.by_path.get(path)
        if found is None:
            raise PMLError(f"schema {self.name!r} has no module {'/'.join(path)!r}")
        return found

    def plan(self, prompt: Prompt) -> PromptPlan:
        """Resolve `prompt`'s selections and lay out its uncached parts.

        Raises:
            PMLError: The prompt names another schema, an unknown module or parameter,
                selects two members of one union, has a parameter value longer than its slot,
                or needs a position at or past `max_position`.
        """
        if prompt.schema != self.name:
            raise PMLError(f"prompt is for schema {prompt.schema!r}, not {self.name!r}")
        selected = _Resolver(self).resolve(prompt.selections)
        modules = _module_segments(m for m in self.modules if m.path in selected)
        parameters = self._parameter_segments(selected)
        text, next_position = self._text_segments(prompt.text)
        _check_window(next_position, self.max_position, f"prompt for schema {self.name!r}")
        return PromptPlan(self.name, self.encoding, modules, parameters, text, next_position)

    def _parameter_segments(
        self, selected: Mapping[ModulePath, Mapping[str, _Arg]]
    ) -> tuple[ParameterSegment, ...]:
        filled: list[tuple[int, ParameterSegment]] = []
        for path, args in selected.items():
            module = self.by_path[path]
            for name, arg in args.items():
                slot = module.parameter(name)
                if slot is None:
                    known = ", ".join(s.name for s in module.parameters) or "none"
                    arg.fail(
                        f"module {_show(path)} has no parameter {name!r} (parameters: {known})"
                    )
                segment = self._parameter_segment(slot, arg)
                if segment.tokens:  # an empty value leaves the slot empty: nothing to compute
                    filled.append((slot.start, segment))
        return tuple(segment for _, segment in sorted(filled, key=lambda item: item[0]))

    def _parameter_segment(self, slot: ParameterSlot, arg: _Arg) -> ParameterSegment:
        tokens = _encode(self.encode, arg.value)
        if len(tokens) > slot.length:
            arg.fail(
                f"value of parameter {slot.name!r} of module {_show(slot.module)} is "
                f"{len(tokens)} tokens, longer than its reserved len={slot.length}"
            )
        positions = tuple(range(slot.start, slot.start + len(tokens)))
        return ParameterSegment(slot.module, slot.name, tokens, positions)

    def _text_segments(self, items: Iterable[str | Role]) -> tuple[tuple[TextSegment, ...], int]:
        position = self.length
        segments = []
        for item in items:
            if isinstance(item, str):
                role, texts = None, [(item, False)]
            else:
                role = item.role
                body = [(c, False) for c in item.children if isinstance(c, str)]
                prefix, suffix = self.chat.role_prefix(role), self.chat.role_suffix(role)
                texts = [(prefix, True), *body, (suffix, True)]
            tokens = tuple(t for text, sp in texts for t in _encode(self.encode, text, sp))
            segments.append(
                TextSegment(role, tokens, tuple(range(position, position + len(tokens))))
            )
            position += len(tokens)
        return tuple(segments), position


def layout_schema(
    schema: Schema,
    encode: Encoder,
    chat: ChatFormat | None = None,
    *,
    max_position: int | None = None,
) -> SchemaLayout:
    """Lay out `schema`: fixed position ids for every module, slot and text piece.

    Args:
        schema: The schema.
        encode: Text to token ids, without special tokens added (each text piece is encoded on
            its own, so piece boundaries are token boundaries); called with `special=True`
            for the chat template's pieces only.
        chat: How role tags render; ChatML by default.
        max_position: The model's window; every position must be below it.

    Returns:
        The layout, which plans prompts with `SchemaLayout.plan`.

    Raises:
        PMLError: The schema does not fit below `max_position`.
    """
    chat = ChatFormat.chatml() if chat is None else chat
    walker = _Walker(encode, chat)
    length = walker.lay_out(schema.children)
    _check_window(length, max_position, f"schema {schema.name!r}")
    modules = tuple(draft.freeze() for draft in walker.drafts)
    return SchemaLayout(schema, length, modules, encode, chat, max_position)


def _check_window(end: int, max_position: int | None, what: str) -> None:
    if max_position is not None and end > max_position:
        raise PMLError(
            f"{what} needs positions up to {end - 1}, beyond the window (max_position "
            f"{max_position}: positions 0..{max_position - 1})"
        )


def _encode(encode: Encoder, text: str, special: bool = False) -> tuple[int, ...]:
    return tuple(int(token) for token in encode(text, special=special))


def _show(path: ModulePath) -> str:
    return repr("/".join(path)) if path else "(schema)"


@dataclass(slots=True)
class _Draft:
    """A module's layout while the walk is filling it in."""

    path: ModulePath
    start: int
    union: int | None
    length: int = 0
    pieces: list[TextPiece] = field(default_factory=list)
    parameters: list[ParameterSlot] = field(default_factory=list)

    def freeze(self) -> ModuleLayout:
        pieces = tuple(self.pieces)
        tokens = tuple(t for piece in pieces for t in piece.tokens)
        positions = tuple(p for piece in pieces for p in range(piece.start, piece.end))
        return ModuleLayout(
            self.path,
            self.start,
            self.length,
            pieces,
            tuple(self.parameters),
            self.union,
            tokens,
            positions,
            content_key(tokens, positions),
        )


class _Walker:
    """Walks a schema in document order, handing out consecutive positions."""

    def __init__(self, encode: Encoder, chat: ChatFormat) -> None:
        self.encode = encode
        self.chat = chat
        self.drafts: list[_Draft] = []
        self.num_unions = 0

    def lay_out(self, children: Iterable[Node]) -> int:
        """Lay out the schema's top level; returns its length."""
        root = _Draft((), 0, None)
        self.drafts.append(root)
        root.length = self.walk(children, 0, root)
        return root.length

    def walk(self, children: Iterable[Node], position: int, owner: _Draft) -> int:
        for node in children:
            position = self.node(node, position, owner)
        return position

    def node(self, node: Node, position: int, owner: _Draft) -> int:
        """Lay out one node at `position`; returns the position after it."""
        if isinstance(node, str):
            return self.text(node, position, owner)
        if isinstance(node, Special):
            return self.text(node.text, position, owner, special=True)
        if isinstance(node, Parameter):
            owner.parameters.append(ParameterSlot(owner.path, node.name, position, node.length))
            return position + node.length
        if isinstance(node, Module):
            return self.module(node, position, owner.path, None)
        if isinstance(node, Union):
            return self.union(node, position, owner.path)
        position = self.text(self.chat.role_prefix(node.role), position, owner, special=True)
        position = self.walk(node.children, position, owner)
        return self.text(self.chat.role_suffix(node.role), position, owner, special=True)

    def text(self, text: str, position: int, owner: _Draft, *, special: bool = False) -> int:
        tokens = _encode(self.encode, text, special)
        if tokens:
            owner.pieces.append(TextPiece(tokens, position))
        return position + len(tokens)

    def module(self, module: Module, start: int, parent: ModulePath, union: int | None) -> int:
        draft = _Draft((*parent, module.name), start, union)
        self.drafts.append(draft)
        end = self.walk(module.children, start, draft)
        draft.length = end - start
        return end

    def union(self, union: Union, start: int, parent: ModulePath) -> int:
        union_id = self.num_unions
        self.num_unions += 1
        ends = [self.module(member, start, parent, union_id) for member in union.members]
        return max(ends)


# --- resolving a prompt's selections ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Arg:
    """A parameter value with where it was given, for error messages."""

    value: str
    location: tuple[int, int] | None

    def fail(self, message: str) -> NoReturn:
        line, column = self.location or (None, None)
        raise PMLError(message, line=line, column=column)


class _Resolver:
    """Turns nested `Select`s into the set of selected module paths with their arguments."""

    def __init__(self, layout: SchemaLayout) -> None:
        self.layout = layout
        self.selected: dict[ModulePath, dict[str, _Arg]] = {(): {}}

    def resolve(self, selections: Iterable[Select]) -> dict[ModulePath, dict[str, _Arg]]:
        for selection in selections:
            self.select(selection, ())
        self.check_unions()
        return self.selected

    def select(self, selection: Select, scope: ModulePath) -> None:
        path = self.find(selection, scope)
        for depth in range(1, len(path) + 1):  # selecting a module selects its ancestors
            self.selected.setdefault(path[:depth], {})
        args = self.selected[path]
        for name, value in selection.args:
            if name in args and args[name].value != value:
                _fail(selection, f"parameter {name!r} of module {_show(path)} given twice")
            args[name] = _Arg(value, selection.location)
        for child in selection.children:
            self.select(child, path)

    def find(self, selection: Select, scope: ModulePath) -> ModulePath:
        """The module named `selection.name` in `scope`, else the one such descendant."""
        direct = (*scope, selection.name)
        if direct in self.layout.by_path:
            return direct
        matches = [
            m.path
            for m in self.layout.modules
            if len(m.path) > len(scope) + 1
            and m.path[: len(scope)] == scope
            and m.path[-1] == selection.name
        ]
        if len(matches) == 1:
            return matches[0]
        where = f"module {_show(scope)}" if scope else f"schema {self.layout.name!r}"
        if matches:
            found = ", ".join(_show(p) for p in matches)
            _fail(
                selection,
                f"module {selection.name!r} is ambiguous in {where} ({found}); "
                "nest the selection inside its parent",
            )
        names = sorted(m.path[-1] for m in self.layout.modules if m.path[:-1] == scope and m.path)
        _fail(
            selection,
            f"unknown module {selection.name!r} in {where} (modules: {', '.join(names) or 'none'})",
        )

    def check_unions(self) -> None:
        chosen: dict[int, ModulePath] = {}
        for path in self.selected:
            union = self.layout.by_path[path].union
            if union is None:
                continue
            other = chosen.setdefault(union, path)
            if other != path:
                raise PMLError(
                    f"modules {_show(other)} and {_show(path)} are members of one union; "
                    "select at most one"
                )


def _fail(selection: Select, message: str) -> NoReturn:
    line, column = selection.location or (None, None)
    raise PMLError(message, line=line, column=column)


# --- the plan ---------------------------------------------------------------------------------


def _module_segments(modules: Iterable[ModuleLayout]) -> tuple[ModuleSegment, ...]:
    segments = []
    previous = ""
    for module in modules:
        previous = prefix_key(previous, module.key)
        segments.append(
            ModuleSegment(module.path, module.tokens, module.positions, module.key, previous)
        )
    return tuple(segments)


def plan_prompt(prompt: Prompt, layouts: Mapping[str, SchemaLayout]) -> PromptPlan:
    """Plan `prompt` against the layout of the schema it names.

    Args:
        prompt: The prompt.
        layouts: Registry of schema layouts by schema name.

    Raises:
        PMLError: The schema is not in `layouts`, or as in `SchemaLayout.plan`.
    """
    layout = layouts.get(prompt.schema)
    if layout is None:
        known = ", ".join(sorted(layouts)) or "none"
        raise PMLError(f"unknown schema {prompt.schema!r} (known: {known})")
    return layout.plan(prompt)
