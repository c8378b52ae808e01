"""Safe parsing of PML (Prompt Markup Language) schemas and prompts.

PML documents may come from untrusted users, so the parser (the standard library's expat, driven
directly) refuses any DOCTYPE outright: with no DTD there are no entity declarations, hence no
entity expansion ("billion laughs") and no external entities. Input size and element nesting
depth are capped. Every problem is a `PMLError` with a line and column where known.

Schema::

    <schema name="travel" encoding="modular">
      <system>You are a travel agent.</system>
      <module name="tools">Tool docs ...</module>
      <union>
        <module name="doc-paris">Paris text ...</module>
        <module name="doc-tokyo">Tokyo text ...</module>
      </union>
      <module name="trip">Plan a trip of <parameter name="days" len="4"/> days.</module>
    </schema>

Prompt (selections first, then free text)::

    <prompt schema="travel">
      <doc-tokyo/>
      <trip days="3"/>
      <user>What should I see?</user>
    </prompt>
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar
from xml.parsers import expat

from asynclm.promptcache.schema import (
    MAX_DEPTH,
    NOT_XML,
    ROLES,
    SPECIAL_TAG,
    Module,
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
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "PMLError",
    "parse_pml",
    "parse_prompt",
    "parse_schema",
]

DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_MAX_DEPTH = MAX_DEPTH

_LEN = re.compile(r"[0-9]{1,9}")
_T = TypeVar("_T")


@dataclass(slots=True)
class _Element:
    tag: str
    attrs: dict[str, str]
    line: int
    column: int
    children: list[_Element | str] = field(default_factory=list)

    def fail(self, message: str) -> NoReturn:
        raise PMLError(message, line=self.line, column=self.column)


def parse_schema(
    source: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Schema:
    """Parse a `<schema>` document.

    Args:
        source: The XML, as text or bytes (bytes honour the XML declaration's encoding).
        max_bytes: Largest accepted document, in bytes (UTF-8 for text).
        max_depth: Deepest accepted element nesting.

    Returns:
        The schema.

    Raises:
        PMLError: Malformed or unsafe XML, or an invalid schema.
    """
    root = _parse_tree(source, max_bytes, max_depth)
    if root.tag != "schema":
        root.fail(f"expected a <schema> root element, got <{root.tag}>")
    return _to_schema(root)


def parse_prompt(
    source: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Prompt:
    """Parse a `<prompt>` document; arguments and errors as in `parse_schema`."""
    root = _parse_tree(source, max_bytes, max_depth)
    if root.tag != "prompt":
        root.fail(f"expected a <prompt> root element, got <{root.tag}>")
    return _to_prompt(root)


def parse_pml(
    source: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Schema | Prompt:
    """Parse a `<schema>` or a `<prompt>` document, whichever the root element is."""
    root = _parse_tree(source, max_bytes, max_depth)
    if root.tag == "schema":
        return _to_schema(root)
    if root.tag == "prompt":
        return _to_prompt(root)
    root.fail(f"expected a <schema> or <prompt> root element, got <{root.tag}>")


# --- XML to a plain element tree --------------------------------------------------------------


class _TreeBuilder:
    """Expat handlers that build `_Element`s and refuse DTDs and entities."""

    def __init__(self, parser: expat.XMLParserType, max_depth: int) -> None:
        self.parser = parser
        self.max_depth = max_depth
        self.stack: list[_Element] = []
        self.root: _Element | None = None

    def location(self) -> tuple[int, int]:
        return self.parser.CurrentLineNumber, self.parser.CurrentColumnNumber + 1

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        line, column = self.location()
        if len(self.stack) >= self.max_depth:
            raise PMLError(f"elements nest deeper than {self.max_depth}", line=line, column=column)
        element = _Element(tag, attrs, line, column)
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element
        self.stack.append(element)

    def end(self, tag: str) -> None:
        self.stack.pop()

    def text(self, data: str) -> None:
        if not self.stack:
            return
        children = self.stack[-1].children
        if children and isinstance(children[-1], str):
            children[-1] += data
        else:
            children.append(data)

    def refuse_doctype(self, *args: object) -> None:
        line, column = self.location()
        raise PMLError("DOCTYPE/DTD is not allowed in PML", line=line, column=column)

    def refuse_entity(self, *args: object) -> None:
        line, column = self.location()
        raise PMLError("entity declarations are not allowed in PML", line=line, column=column)

    def refuse_external(self, *args: object) -> int:
        line, column = self.location()
        raise PMLError("external entities are not allowed in PML", line=line, column=column)


def _make_parser(max_depth: int) -> tuple[expat.XMLParserType, _TreeBuilder]:
    parser = expat.ParserCreate()
    builder = _TreeBuilder(parser, max_depth)
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.text
    parser.StartDoctypeDeclHandler = builder.refuse_doctype
    parser.EntityDeclHandler = builder.refuse_entity
    parser.UnparsedEntityDeclHandler = builder.refuse_entity
    parser.ExternalEntityRefHandler = builder.refuse_external
    return parser, builder


def _as_source(source: object) -> str | bytes:
    """The document as str or bytes (bytearray and memoryview are read as bytes)."""
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    if not isinstance(source, (str, bytes)):
        raise PMLError(f"PML source must be str or bytes, got {type(source).__name__}")
    return source


def _check_size(source: str | bytes, max_bytes: int) -> None:
    # A str has at least as many UTF-8 bytes as characters: check cheaply before encoding.
    size = len(source)
    if isinstance(source, str) and size <= max_bytes:
        size = len(source.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise PMLError(f"PML document is {size} bytes, over the limit of {max_bytes}")


def _parse_tree(source: str | bytes, max_bytes: int, max_depth: int) -> _Element:
    source = _as_source(source)
    _check_size(source, max_bytes)
    if isinstance(source, str):
        _check_characters(source)
    parser, builder = _make_parser(max_depth)
    try:
        parser.Parse(source, True)
    except PMLError:
        raise
    except expat.ExpatError as err:
        message = f"malformed XML: {expat.ErrorString(err.code)}"
        raise PMLError(message, line=err.lineno, column=err.offset + 1) from None
    except (LookupError, ValueError) as err:  # an unknown or unsupported declared encoding
        raise PMLError(f"malformed XML: cannot decode the document ({err})") from None
    if builder.root is None:
        raise PMLError("empty PML document")
    return builder.root


def _check_characters(source: str) -> None:
    """A clear error for characters XML 1.0 cannot carry (expat only says "invalid token")."""
    bad = NOT_XML.search(source)
    if bad:
        before = source[: bad.start()]
        line, column = before.count("\n") + 1, bad.start() - before.rfind("\n")
        raise PMLError(
            f"character U+{ord(bad.group()):04X} cannot appear in XML 1.0, not even as a "
            "character reference; build such prompts with the asynclm.promptcache classes",
            line=line,
            column=column,
        )


# --- element tree to dataclasses --------------------------------------------------------------


def _located(element: _Element, build: Callable[[], _T]) -> _T:
    """Run a constructor, giving its PMLError the element's location."""
    try:
        return build()
    except PMLError as err:
        raise err.at(element.line, element.column) from None


def _check_attrs(element: _Element, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    for name in element.attrs:
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            element.fail(f"<{element.tag}>: unknown attribute {name!r} (expected: {expected})")
    for name in required:
        if name not in element.attrs:
            element.fail(f"<{element.tag}>: missing attribute {name!r}")


def _elements_only(element: _Element) -> list[_Element]:
    """The child elements; any non-whitespace text is an error."""
    out: list[_Element] = []
    for child in element.children:
        if isinstance(child, _Element):
            out.append(child)
        elif child.strip(" \t\r\n"):
            element.fail(f"<{element.tag}>: text is not allowed here: {child.strip()[:40]!r}")
    return out


def _to_schema(element: _Element) -> Schema:
    _check_attrs(element, ("name", "encoding"), ("name",))
    nodes = _to_nodes(element)
    encoding = element.attrs.get("encoding", "modular")
    return _located(element, lambda: Schema(element.attrs["name"], nodes, encoding))  # type: ignore[arg-type]


def _to_nodes(element: _Element) -> list[Node]:
    return [c if isinstance(c, str) else _to_node(c) for c in element.children]


def _to_node(element: _Element) -> Node:
    tag = element.tag
    if tag == "module":
        _check_attrs(element, ("name",), ("name",))
        nodes = _to_nodes(element)
        return _located(element, lambda: Module(element.attrs["name"], nodes))
    if tag == "union":
        _check_attrs(element, (), ())
        members = [_to_node(c) for c in _elements_only(element)]
        return _located(element, lambda: Union(members))  # type: ignore[arg-type]
    if tag == "parameter":
        return _to_parameter(element)
    if tag == SPECIAL_TAG:
        return _to_special(element)
    if tag in ROLES:
        _check_attrs(element, (), ())
        nodes = _to_nodes(element)
        return _located(element, lambda: Role(tag, nodes))  # type: ignore[arg-type]
    element.fail(
        f"unknown element <{tag}> in a schema "
        "(expected module, union, parameter, special, system, user or assistant)"
    )


def _to_special(element: _Element) -> Special:
    _check_attrs(element, (), ())
    for child in element.children:
        if isinstance(child, _Element):
            child.fail(f"<{SPECIAL_TAG}> holds text only, not <{child.tag}>")
    return Special("".join(c for c in element.children if isinstance(c, str)))


def _to_parameter(element: _Element) -> Parameter:
    _check_attrs(element, ("name", "len"), ("name", "len"))
    if _elements_only(element):
        element.fail("<parameter> must be empty")
    length = element.attrs["len"]
    if not _LEN.fullmatch(length):
        element.fail(f"<parameter>: len must be a positive integer, got {length!r}")
    return _located(element, lambda: Parameter(element.attrs["name"], int(length)))


def _to_prompt(element: _Element) -> Prompt:
    _check_attrs(element, ("schema",), ("schema",))
    selections: list[Select] = []
    text: list[str | Role] = []
    for child in element.children:
        if isinstance(child, str):
            if child.strip(" \t\r\n"):
                text.append(child)
        elif child.tag in ROLES:
            text.append(_to_free_role(child))
        elif child.tag == SPECIAL_TAG:
            child.fail(f"<{SPECIAL_TAG}> text belongs in schemas; a prompt's text is plain text")
        elif text:
            child.fail(f"selection <{child.tag}> after free text; put selections first")
        else:
            selections.append(_to_select(child))
    return _located(element, lambda: Prompt(element.attrs["schema"], selections, text))


def _to_select(element: _Element) -> Select:
    children = [_to_select(c) for c in _elements_only(element)]
    location = (element.line, element.column)
    return _located(
        element, lambda: Select(element.tag, element.attrs, children, location=location)
    )


def _to_free_role(element: _Element) -> Role:
    _check_attrs(element, (), ())
    for child in element.children:
        if isinstance(child, _Element):
            child.fail(f"<{element.tag}> in a prompt holds free text only, not <{child.tag}>")
    text = "".join(c for c in element.children if isinstance(c, str))
    return _located(element, lambda: Role(element.tag, text))  # type: ignore[arg-type]
