"""Constrained mode: an EBNF grammar (xgrammar's dialect) for the inside of a call block.

The grammar covers the text after the opening `[CALL]` up to and including `[END]`:
` <id> [HEAD] <name>(<key>=<value>, ...) [END]`. It admits only known tool names, their
parameters by keyword in the declared order (required ones present, optional ones may be
left out) and Python literals of the declared types. Strings are marker-free: no string
literal can contain `[CALL]`, `[END]`, ..., which would cut the block short.

Not enforced by the grammar (checked afterwards by `validate_arguments`): numeric ranges,
string lengths, patterns and formats, array lengths, `allOf`/`not`. Numbers are written
without leading zeros, with at most 16 integer digits and a two-digit exponent, so that
every number admitted is finite.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Sequence
from typing import Any

from asynclm.cml.schema import normalize_schema
from asynclm.cml.tokens import END, HEAD, MARKERS, format_value, is_dotted_name, is_identifier

_ID_FIRST = "a-zA-Z_"
_ID_REST = "a-zA-Z0-9_"

_BASE_RULES = r"""
sep ::= "," " "?
integer ::= "-"? ("0" | [1-9] [0-9]*)
number ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]+)? ([eE] [+-]? [0-9]{1,2})?
boolean ::= "True" | "False"
null ::= "None"
escape ::= "\\" (["'\\nrtbf0] | "x" hex{2} | "u" hex{4} | "U00" ("0" hex{5} | "10" hex{4}))
hex ::= [0-9a-fA-F]
string ::= "\"" dq_0 "\"" | "'" sq_0 "'"
any_value ::= string | number | boolean | null | any_list | any_dict
any_list ::= "[" (any_value (sep any_value)*)? "]"
any_dict ::= "{" (any_pair (sep any_pair)*)? "}"
any_pair ::= string ":" " "? any_value
""".strip()


def call_grammar(tools: list[dict[str, Any]]) -> str:
    """Builds the grammar of a call block's text after `[CALL]`.

    Args:
        tools: Each `{"name": str, "parameters": JSON schema}`; the schema is passed
            through `normalize_schema`, so BFCL-style schemas are accepted as they are.

    Returns:
        The EBNF grammar, with `root` as its start rule.

    Raises:
        ValueError: If there are no tools, a tool or parameter name cannot be written as a
            call (`name(key=value)`), or an enum/const value has no literal form.
    """
    if not tools:
        raise ValueError("call_grammar needs at least one tool")
    builder = _Builder()
    alternatives = [builder.tool(tool) for tool in tools]
    lines = [
        f'root ::= " "? call_id " "? {_lit(HEAD)} " "? call " "? {_lit(END)}',
        "call ::= " + " | ".join(alternatives),
        _BASE_RULES,
        *_string_rules('"', "dq"),
        *_string_rules("'", "sq"),
        *_identifier_rules("call_id", keyword.kwlist),
        *builder.lines(),
    ]
    return "\n".join(lines) + "\n"


class _Builder:
    """Collects the rules for tools' arguments, sharing identical ones."""

    def __init__(self) -> None:
        self._rules: dict[str, str] = {}  # name -> body
        self._names: dict[str, str] = {}  # body -> name

    def lines(self) -> list[str]:
        return [f"{name} ::= {body}" for name, body in self._rules.items()]

    def rule(self, body: str) -> str:
        """The name of a rule with this body (created on first use)."""
        if body not in self._names:
            name = f"r{len(self._rules)}"
            self._names[body] = name
            self._rules[name] = body
        return self._names[body]

    def tool(self, tool: dict[str, Any]) -> str:
        name = tool.get("name")
        if not isinstance(name, str) or not is_dotted_name(name):
            raise ValueError(f"tool name {name!r} is not a dotted Python identifier")
        schema = normalize_schema(tool.get("parameters") or {})
        for param in schema.get("properties", {}):
            if not is_identifier(param):
                raise ValueError(f"parameter {param!r} of tool {name!r} is not an identifier")
        fields = self.fields(schema, lambda param: f'{_lit(param)} "="')
        return self.rule(f'{_lit(name)} "(" {fields} ")"')

    def fields(self, schema: dict[str, Any], key: Callable[[str], str]) -> str:
        """Keyed items for the schema's properties in declared order: required ones must
        appear, optional ones may be left out; `key(name)` writes an item's key."""
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        items = [
            (f"{key(name)} {self.value(sub)}", name in required) for name, sub in properties.items()
        ]
        return self.sequence(items)

    def sequence(self, items: list[tuple[str, bool]]) -> str:
        """Comma-separated items in order, each `(expression, required)`."""
        if not items:
            return '""'
        tails = [""] * (len(items) + 1)  # tails[i]: items i.. after a comma
        for i in range(len(items) - 1, -1, -1):
            expression, required = items[i]
            part = f"sep {expression}" if required else f"(sep {expression})?"
            tails[i] = self.rule(f"{part} {tails[i + 1]}".strip())
        firsts = []
        for i, (expression, required) in enumerate(items):
            firsts.append(f"{expression} {tails[i + 1]}".strip())
            if required:
                break
        else:
            firsts.append('""')
        return self.rule(" | ".join(f"({first})" for first in firsts))

    def value(self, schema: dict[str, Any]) -> str:
        """An expression for the literals that fit `schema`."""
        if "const" in schema:
            return self.literals([schema["const"]])
        if "enum" in schema:
            return self.literals(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.rule(" | ".join(self.value(sub) for sub in schema[key]))
        types = schema.get("type")
        if types is None:
            return "any_value"
        types = types if isinstance(types, list) else [types]
        return self.rule(" | ".join(self.typed(name, schema) for name in types))

    def typed(self, name: str, schema: dict[str, Any]) -> str:
        if name == "array":
            return self.array(schema)
        if name == "object":
            return self.object(schema)
        return name  # string, integer, number, boolean, null: base rules

    def array(self, schema: dict[str, Any]) -> str:
        if "prefixItems" in schema:
            items = [(self.value(sub), True) for sub in schema["prefixItems"]]
            return self.rule(f'"[" {self.sequence(items)} "]"')
        item = self.value(schema["items"]) if isinstance(schema.get("items"), dict) else "any_value"
        return self.rule(f'"[" ({item} (sep {item})*)? "]"')

    def object(self, schema: dict[str, Any]) -> str:
        if schema.get("properties"):
            fields = self.fields(schema, lambda name: f'{self.literals([name])} ":" " "?')
            return self.rule(f'"{{" {fields} "}}"')
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            pair = f'string ":" " "? {self.value(extra)}'
            return self.rule(f'"{{" ({pair} (sep {pair})*)? "}}"')
        if extra is False:
            return self.rule('"{" "}"')
        return "any_dict"

    def literals(self, values: list[Any]) -> str:
        """Alternatives writing each value as a Python literal (strings in either quote)."""
        spellings = [text for value in values for text in _spellings(value)]
        return self.rule(" | ".join(_lit(text) for text in dict.fromkeys(spellings)))


def _spellings(value: Any) -> list[str]:
    """Python literals for a value: a string in both quote styles, else its one form."""
    if isinstance(value, str):
        return [_quoted(value, "'"), _quoted(value, '"')]
    return [format_value(value)]


def _quoted(text: str, quote: str) -> str:
    """A marker-free Python string literal for `text` in the given quotes."""
    body = text.replace("\\", "\\\\").replace(quote, "\\" + quote)
    body = body.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    body = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in body)
    for marker in MARKERS:
        body = body.replace(marker, "\\x5b" + marker[1:])
    return quote + body + quote


def _lit(text: str) -> str:
    """An EBNF string literal matching exactly `text`."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _char_class(excluded: str, negate: bool = True) -> str:
    """An EBNF character class (`[^...]` if `negate`) over the given characters."""
    escapes = {"\n": "\\n", "\r": "\\r", "\\": "\\\\", "]": "\\]", "[": "\\[", "^": "\\^",
               "-": "\\-"}  # fmt: skip
    body = "".join(escapes.get(char, char) for char in excluded)
    return f"[{'^' if negate else ''}{body}]"


def _string_rules(quote: str, stem: str) -> list[str]:
    """Rules for the inside of a quoted string that contains no marker text.

    A small automaton: state `<stem>_0` has seen no marker prefix; the other states track
    the longest marker prefix just written ("[", "[C", "[CA", ...), and the character that
    would complete a marker is never admitted.
    """
    prefixes = sorted({m[:i] for m in MARKERS for i in range(1, len(m))})
    names = {prefix: f"{stem}_{i + 1}" for i, prefix in enumerate(prefixes)}
    names[""] = f"{stem}_0"
    plain = quote + "\\\n\r["
    lines = [f'{names[""]} ::= ({_char_class(plain)} | escape)* ("[" {names["["]})?']
    for prefix in prefixes:
        nexts = sorted({m[len(prefix)] for m in MARKERS if m.startswith(prefix)})
        alternatives = [
            f"{_char_class(plain + ''.join(nexts))} {names['']}",
            f"escape {names['']}",
            f'"[" {names["["]}',
            *(f"{_lit(c)} {names[prefix + c]}" for c in nexts if prefix + c in names),
        ]
        lines.append(f"{names[prefix]} ::= ({' | '.join(alternatives)})?")
    return lines


def _identifier_rules(stem: str, excluded: Sequence[str]) -> list[str]:
    """Rules for ASCII identifiers other than the `excluded` words (Python's keywords).

    A trie over the excluded words: each node admits the characters that leave the trie
    (then any identifier tail), the characters that follow it down, and the end of the
    identifier unless the node is an excluded word.
    """
    prefixes = sorted({word[:i] for word in excluded for i in range(len(word) + 1)})
    names = {prefix: f"{stem}_{i}" if prefix else stem for i, prefix in enumerate(prefixes)}
    lines = [f"{stem}_tail ::= [{_ID_REST}]*"]
    for prefix in prefixes:
        nexts = sorted(
            {word[len(prefix)] for word in excluded if word.startswith(prefix) and word != prefix}
        )
        allowed = _ID_REST if prefix else _ID_FIRST
        leave = _leave_class(allowed, "".join(nexts))
        alternatives = [f"{leave} {stem}_tail"]
        alternatives += [f"{_lit(c)} {names[prefix + c]}" for c in nexts]
        body = " | ".join(alternatives)
        optional = prefix and prefix not in excluded
        lines.append(f"{names[prefix]} ::= ({body}){'?' if optional else ''}")
    return lines


def _leave_class(ranges: str, excluded: str) -> str:
    """The characters of the ASCII class `ranges` (e.g. "a-zA-Z_") minus `excluded`."""
    chars = sorted(_expand(ranges) - set(excluded))
    return _char_class("".join(chars), negate=False)


def _expand(ranges: str) -> set[str]:
    chars: set[str] = set()
    i = 0
    while i < len(ranges):
        if i + 2 < len(ranges) and ranges[i + 1] == "-":
            chars.update(chr(c) for c in range(ord(ranges[i]), ord(ranges[i + 2]) + 1))
            i += 3
        else:
            chars.add(ranges[i])
            i += 1
    return chars
