"""The PML tree: frozen dataclasses for schemas and prompts, and a Python builder API.

The same classes are what `asynclm.promptcache.pml` parses XML into and what Python code builds
directly; `to_xml()` writes them back so that parsing the output gives an equal object::

    schema = Schema("travel", [
        System("You are a travel agent."),
        Module("tools", "Tool docs ..."),
        Union([Module("doc-paris", "Paris ..."), Module("doc-tokyo", "Tokyo ...")]),
        Module("trip", ["Plan a trip of ", Parameter("days", 4), " days."]),
    ])
    prompt = Prompt("travel", [Select("doc-tokyo"), Select("trip", {"days": "3"})],
                    [User("What should I see?")])

Text is kept verbatim with one exception, XML's own: in an element whose text is all whitespace
(element-only content, e.g. the indentation between `<module>` elements) that whitespace is
formatting and is dropped. The builder applies the same rule, and merges adjacent strings, so a
built tree and its parsed XML are always equal.

Text is plain text: `<|im_end|>` in a module, a turn or a parameter value is encoded as those
characters, never as the model's control token. Only the chat template's own text is special:
what role tags render to, and `Special` text (`<special>` in XML), which a schema's author
writes to put the template's pieces where role tags cannot go.

The builder takes any `str`. XML 1.0 cannot carry some characters at all, not even as
character references (most C0 controls such as form feeds and ANSI escapes, lone surrogates,
U+FFFE/U+FFFF): a tree holding them is valid and lays out as it is (the tokenizer replaces a
lone surrogate with U+FFFD), but `to_xml()` refuses it with a `PMLError`, and XML text cannot
contain them. Build such prompts with the classes here, not as XML.

Trees nest at most `MAX_DEPTH` levels (the XML parser's default limit), so every recursive walk
over a tree is bounded; a deeper tree is a `PMLError` when it is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

Encoding = Literal["prefix", "modular"]
RoleName = Literal["system", "user", "assistant"]
ModulePath = tuple[str, ...]

ENCODINGS: tuple[str, ...] = ("prefix", "modular")
ROLES: tuple[str, ...] = ("system", "user", "assistant")
SPECIAL_TAG = "special"
MAX_DEPTH = 64  # deepest element nesting of a PML document, its root element included

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Characters XML 1.0 cannot carry, not even as character references.
NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_SPACE = " \t\r\n"


class PMLError(ValueError):
    """A PML schema or prompt is malformed, unsafe, or does not fit its schema.

    Attributes:
        message: The message without the location.
        line: 1-based line in the XML source, or None when unknown.
        column: 1-based column in the XML source, or None when unknown.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        where = "" if line is None else f" (line {line}, column {column})"
        super().__init__(message + where)

    def at(self, line: int | None, column: int | None) -> PMLError:
        """This error with a location, unless it already has one."""
        if self.line is not None or line is None:
            return self
        return PMLError(self.message, line=line, column=column)


@dataclass(frozen=True, slots=True, init=False)
class Special:
    """The chat template's own text, placed by a schema's author (`<special>` in XML).

    Encoded with the model's special tokens recognised (`<|im_start|>` is one token), unlike
    every other text. Only schemas hold it (e.g. a system turn's opening in its first module
    and its closing in the last, where a `<system>` tag cannot span them); prompts cannot.

    Attributes:
        text: The text.
    """

    text: str

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise PMLError(f"special text must be a string, got {type(text).__name__}")
        object.__setattr__(self, "text", text)


@dataclass(frozen=True, slots=True, init=False)
class Parameter:
    """A parameter: `length` positions reserved inside a module, filled per prompt.

    Attributes:
        name: Parameter name, unique in its module.
        length: Number of reserved positions (the longest value, in tokens).
    """

    name: str
    length: int

    def __init__(self, name: str, length: int) -> None:
        _check_name(name, "parameter")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise PMLError(f"parameter {name!r}: len must be a positive integer, got {length!r}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "length", length)


@dataclass(frozen=True, slots=True, init=False)
class Module:
    """A named, separately cached part of a schema; modules may nest.

    Attributes:
        name: Module name, unique in its scope (its parent's direct modules, unions included).
        children: Text, parameters, nested modules, unions and role blocks in document order.
    """

    name: str
    children: tuple[Node, ...]
    depth: int = field(compare=False, repr=False)

    def __init__(self, name: str, children: Node | Iterable[Node] = ()) -> None:
        _check_name(name, "module")
        where = f"module {name!r}"
        nodes = _normalize(children, where)
        object.__setattr__(self, "depth", _depth(nodes, where))
        _check_scope(nodes, where, in_module=True)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "children", nodes)


@dataclass(frozen=True, slots=True, init=False)
class Union:
    """Alternative modules sharing one start position; a prompt selects at most one.

    Attributes:
        members: The member modules; the union is as long as its longest member.
    """

    members: tuple[Module, ...]
    depth: int = field(compare=False, repr=False)

    def __init__(self, members: Iterable[Module]) -> None:
        members = tuple(members)
        if not members:
            raise PMLError("union: needs at least one member module")
        for member in members:
            if not isinstance(member, Module):
                raise PMLError(f"union: members must be modules, got {member!r}")
        object.__setattr__(self, "depth", _depth(members, "union"))
        object.__setattr__(self, "members", members)


@dataclass(frozen=True, slots=True, init=False)
class Role:
    """A chat turn (`<system>`, `<user>`, `<assistant>`) rendered with the chat template.

    Attributes:
        role: "system", "user" or "assistant".
        children: What the turn wraps: text, modules, unions, parameters (inside a module).
    """

    role: RoleName
    children: tuple[Node, ...]
    depth: int = field(compare=False, repr=False)

    def __init__(self, role: RoleName, children: Node | Iterable[Node] = ()) -> None:
        if role not in ROLES:
            raise PMLError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        nodes = _normalize(children, f"<{role}>")
        object.__setattr__(self, "depth", _depth(nodes, f"<{role}>"))
        if any(isinstance(node, Role) for node in _descendants(nodes)):
            raise PMLError(f"<{role}>: role tags may not nest")
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "children", nodes)


def System(children: Node | Iterable[Node] = ()) -> Role:
    """A `<system>` turn."""
    return Role("system", children)


def User(children: Node | Iterable[Node] = ()) -> Role:
    """A `<user>` turn."""
    return Role("user", children)


def Assistant(children: Node | Iterable[Node] = ()) -> Role:
    """An `<assistant>` turn."""
    return Role("assistant", children)


Node = str | Special | Module | Union | Parameter | Role
_NODE_TYPES = (str, Special, Module, Union, Parameter, Role)


@dataclass(frozen=True, slots=True, init=False)
class Schema:
    """A PML schema: the fixed layout that prompts select modules from.

    Text outside any module belongs to the schema itself and is part of every prompt.

    Attributes:
        name: Schema name; prompts refer to it.
        children: Top-level text, modules, unions and role blocks.
        encoding: "modular" (each module's KV is computed on its own) or "prefix" (a module's
            KV depends on the modules laid out before it).
    """

    name: str
    children: tuple[Node, ...]
    encoding: Encoding

    def __init__(
        self, name: str, children: Node | Iterable[Node] = (), encoding: Encoding = "modular"
    ) -> None:
        _check_name(name, "schema")
        if encoding not in ENCODINGS:
            raise PMLError(
                f"schema {name!r}: encoding must be 'prefix' or 'modular', got {encoding!r}"
            )
        where = f"schema {name!r}"
        nodes = _normalize(children, where)
        _check_scope(nodes, where, in_module=False)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "children", nodes)
        object.__setattr__(self, "encoding", encoding)

    def iter_modules(self) -> Iterator[tuple[ModulePath, Module]]:
        """Every module with its path, in document order (parents before children)."""
        yield from _iter_modules(self.children, ())

    def to_xml(self, indent: str | None = "  ") -> str:
        """The schema as PML; `indent=None` writes it on one line."""
        attrs = {"name": self.name}
        if self.encoding != "modular":
            attrs["encoding"] = self.encoding
        return _element("schema", attrs, self.children, indent, 0)


@dataclass(frozen=True, slots=True, init=False)
class Select:
    """A prompt's selection of one module, with parameter values and nested selections.

    Attributes:
        name: Module name, looked up among the modules of the enclosing selection (or of the
            schema), then, if unambiguous, among all their descendants.
        args: Parameter values as sorted (name, value) pairs.
        children: Selections of modules nested in this one.
        location: (line, column) in the prompt's XML, if parsed; used in error messages.
    """

    name: str
    args: tuple[tuple[str, str], ...]
    children: tuple[Select, ...]
    location: tuple[int, int] | None = field(compare=False, repr=False)
    depth: int = field(compare=False, repr=False)

    def __init__(
        self,
        name: str,
        args: Mapping[str, str] | None = None,
        children: Iterable[Select] = (),
        *,
        location: tuple[int, int] | None = None,
    ) -> None:
        _check_name(name, "module")
        pairs = tuple(sorted((args or {}).items()))
        for key, value in pairs:
            _check_name(key, "parameter")
            if not isinstance(value, str):
                raise PMLError(f"<{name}>: value of parameter {key!r} must be a string")
        children = tuple(children)
        for child in children:
            if not isinstance(child, Select):
                raise PMLError(f"<{name}>: may only contain nested selections, got {child!r}")
        object.__setattr__(self, "depth", _depth(children, f"<{name}>"))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", pairs)
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "location", location)

    def to_xml(self, indent: str | None = "  ", level: int = 0) -> str:
        """The selection as a PML element."""
        return _element(self.name, dict(self.args), self.children, indent, level)


@dataclass(frozen=True, slots=True, init=False)
class Prompt:
    """A PML prompt: module selections, then free text appended after the schema's layout.

    Attributes:
        schema: Name of the schema this prompt uses.
        selections: Selected modules (the schema's own text is always included).
        text: Free text: strings and role turns whose children are strings. Whitespace-only
            strings between them are formatting and dropped.
    """

    schema: str
    selections: tuple[Select, ...]
    text: tuple[str | Role, ...]

    def __init__(
        self,
        schema: str,
        selections: Iterable[Select] = (),
        text: str | Role | Iterable[str | Role] = (),
    ) -> None:
        _check_name(schema, "schema")
        selections = tuple(selections)
        for sel in selections:
            if not isinstance(sel, Select):
                raise PMLError(f"prompt: selections must be Select, got {sel!r}")
        items = _normalize(text, "prompt")
        for item in items:
            if not isinstance(item, (str, Role)) or not _is_plain_role(item):
                raise PMLError(f"prompt: free text must be strings or roles of text, got {item!r}")
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "selections", selections)
        object.__setattr__(self, "text", tuple(i for i in items if not _is_blank(i)))

    def to_xml(self, indent: str | None = "  ") -> str:
        """The prompt as PML."""
        return _element("prompt", {"schema": self.schema}, self.selections + self.text, indent, 0)


# --- validation -------------------------------------------------------------------------------


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PMLError(
            f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.', "
            "starting with a letter or '_'"
        )
    if what in ("module", "schema") and (name in ROLES or name == SPECIAL_TAG):
        raise PMLError(f"invalid {what} name {name!r}: reserved for the <{name}> tag")


def _depth(children: Iterable[object], where: str) -> int:
    """The nesting depth of a node with these children; PMLError past `MAX_DEPTH`."""
    depth = 1 + max((getattr(child, "depth", 0) for child in children), default=0)
    if depth >= MAX_DEPTH:  # its document's root element adds one more level
        raise PMLError(f"{where}: the tree nests deeper than {MAX_DEPTH - 1} levels")
    return depth


def _check_xml_text(text: str) -> None:
    bad = NOT_XML.search(text)
    if bad:
        raise PMLError(
            f"character {bad.group()!r} (U+{ord(bad.group()):04X}) cannot be written as XML 1.0; "
            "the tree itself is valid: pass it to Prompt Cache as objects, not as XML"
        )


def _is_blank(item: object) -> bool:
    return isinstance(item, str) and not item.strip(_XML_SPACE)


def _is_plain_role(item: str | Role) -> bool:
    return isinstance(item, str) or all(isinstance(c, str) for c in item.children)


def _normalize(children: Node | Iterable[Node], where: str) -> tuple[Node, ...]:
    """Merge adjacent strings, drop empty ones, drop whitespace in element-only content."""
    items = (children,) if isinstance(children, _NODE_TYPES) else tuple(children)
    merged: list[Node] = []
    for item in items:
        if isinstance(item, str):
            if merged and isinstance(merged[-1], str):
                merged[-1] += item
            elif item:
                merged.append(item)
        elif isinstance(item, _NODE_TYPES):
            merged.append(item)
        else:
            raise PMLError(f"{where}: unexpected child {item!r}")
    if all(_is_blank(item) or not isinstance(item, (str, Special)) for item in merged):
        merged = [item for item in merged if not isinstance(item, str)]
    return tuple(merged)


def _scope(nodes: Iterable[Node]) -> Iterator[Node]:
    """Nodes of one naming scope: looks through roles and unions, not into modules."""
    for node in nodes:
        if isinstance(node, Role):
            yield from _scope(node.children)
        elif isinstance(node, Union):
            yield from node.members
        else:
            yield node


def _check_scope(nodes: tuple[Node, ...], where: str, *, in_module: bool) -> None:
    modules: set[str] = set()
    parameters: set[str] = set()
    for node in _scope(nodes):
        if isinstance(node, Module):
            if node.name in modules:
                raise PMLError(f"{where}: duplicate module name {node.name!r}")
            modules.add(node.name)
        elif isinstance(node, Parameter):
            if not in_module:
                raise PMLError(f"{where}: parameter {node.name!r} is outside any module")
            if node.name in parameters:
                raise PMLError(f"{where}: duplicate parameter name {node.name!r}")
            parameters.add(node.name)


def _descendants(nodes: Iterable[Node]) -> Iterator[Node]:
    for node in nodes:
        yield node
        if isinstance(node, (Module, Role)):
            yield from _descendants(node.children)
        elif isinstance(node, Union):
            yield from _descendants(node.members)


def _iter_modules(nodes: Iterable[Node], path: ModulePath) -> Iterator[tuple[ModulePath, Module]]:
    for node in _scope(nodes):
        if isinstance(node, Module):
            yield (*path, node.name), node
            yield from _iter_modules(node.children, (*path, node.name))


# --- XML writing ------------------------------------------------------------------------------


def _escape_text(text: str) -> str:
    _check_xml_text(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\r", "&#13;")


def _escape_attr(value: str) -> str:
    value = _escape_text(value).replace('"', "&quot;")
    return value.replace("\n", "&#10;").replace("\t", "&#9;")


def _element(
    tag: str, attrs: Mapping[str, str], children: Iterable[object], indent: str | None, level: int
) -> str:
    head = tag + "".join(f' {k}="{_escape_attr(v)}"' for k, v in attrs.items())
    children = tuple(children)
    if not children:
        return f"<{head}/>"
    inner = [_node_xml(child, indent, level + 1) for child in children]
    if indent is None or any(isinstance(child, (str, Special)) for child in children):
        return f"<{head}>{''.join(inner)}</{tag}>"
    pad = "\n" + indent * (level + 1)
    return f"<{head}>{pad}{pad.join(inner)}\n{indent * level}</{tag}>"


def _node_xml(node: object, indent: str | None, level: int) -> str:
    if isinstance(node, str):
        return _escape_text(node)
    if isinstance(node, Special):
        return f"<{SPECIAL_TAG}>{_escape_text(node.text)}</{SPECIAL_TAG}>"
    if isinstance(node, Parameter):
        return f'<parameter name="{node.name}" len="{node.length}"/>'
    if isinstance(node, Module):
        return _element("module", {"name": node.name}, node.children, indent, level)
    if isinstance(node, Union):
        return _element("union", {}, node.members, indent, level)
    if isinstance(node, Role):
        return _element(node.role, {}, node.children, indent, level)
    if isinstance(node, Select):
        return node.to_xml(indent, level)
    raise TypeError(f"not a PML node: {node!r}")
