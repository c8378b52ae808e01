"""A tool's documentation for the model: a Python-like signature, then one line per detail.

    get_weather(city: str, unit: "c" | "f" = "c", days: int = None)  # takes about 0.45 s
      Current weather for a city.
      city: The city's name, in English.
      days: How many days to forecast. [>= 1, <= 7]

Prompt tokens cost prefill time at run time and training time when fine-tuning, so the text is
compact: JSON types become Python ones (`str`, `int`, `float`, `bool`, `list[str]`,
`dict[str, float]`, literals `"a" | "b"`, `X | None`); an optional parameter shows its default,
or `= None`; a parameter gets its own line only for a description, constraints, or a type too
nested to write simply (then its JSON schema, compact).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from asynclm.tooling.tool import Tool

__all__ = ["describe_tool", "type_text"]

_SCALARS = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "array": "list",
    "object": "dict",
}
_CONSTRAINTS = (
    ("minimum", ">= {}"),
    ("maximum", "<= {}"),
    ("exclusiveMinimum", "> {}"),
    ("exclusiveMaximum", "< {}"),
    ("multipleOf", "multiple of {}"),
    ("minLength", "length >= {}"),
    ("maxLength", "length <= {}"),
    ("minItems", "items >= {}"),
    ("maxItems", "items <= {}"),
    ("pattern", "pattern {}"),
    ("format", "format {}"),
)
_SHOWN_ELSEWHERE = ("description", "default", "title")


def describe_tool(tool: Tool) -> str:
    """The documentation of one tool, as the model reads it (ends without a newline).

    Args:
        tool: The tool.

    Returns:
        The signature line (with `# takes about N s` when the tool's latency is known), the
        description's lines, one line per parameter with something to say, and the schema's
        `$defs` when it has any, indented.
    """
    properties: Mapping[str, Any] = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    params = ", ".join(_signature_param(n, s, n in required) for n, s in properties.items())
    head = f"{tool.name}({params})"
    if tool.latency is not None:
        head += f"  # takes about {tool.latency:.2g} s"
    body = [line for line in tool.description.splitlines() if line.strip()]
    body += [line for n, s in properties.items() if (line := _param_line(n, s))]
    if tool.parameters.get("$defs"):  # what `$ref`s name (recursive models)
        body.append("$defs: " + _json(tool.parameters["$defs"]))
    return "\n".join([head, *(f"  {line.strip()}" for line in body)])


def type_text(schema: Any) -> str | None:
    """A JSON schema as a Python-like type (`list[str]`, `"a" | "b"`, `int | None`).

    Returns:
        The type, or None when it cannot be written simply (objects with properties,
        references, combinations other than a union of simple types).
    """
    if not isinstance(schema, Mapping):
        return None
    if "enum" in schema and isinstance(schema["enum"], list):
        return " | ".join(_literal(value) for value in schema["enum"])
    if "const" in schema:
        return _literal(schema["const"])
    union = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(union, list):
        return _union(type_text(branch) for branch in union)
    if any(key in schema for key in ("$ref", "allOf", "not")):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union(type_text({**schema, "type": one}) for one in kind)
    if kind is None:
        return "Any"
    return _container_text(kind, schema)


def _container_text(kind: Any, schema: Mapping[str, Any]) -> str | None:
    if kind == "array":
        return _array_text(schema)
    if kind == "object":
        return _object_text(schema)
    return _SCALARS.get(kind) if isinstance(kind, str) else None


def _array_text(schema: Mapping[str, Any]) -> str | None:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list) and prefix:
        members = [type_text(item) for item in prefix]
        return None if None in members else f"tuple[{', '.join(map(str, members))}]"
    items = schema.get("items")
    if not isinstance(items, Mapping) or not items:
        return "list"
    inner = type_text(items)
    return None if inner is None else f"list[{inner}]"


def _object_text(schema: Mapping[str, Any]) -> str | None:
    if schema.get("properties") or schema.get("patternProperties"):
        return None
    values = schema.get("additionalProperties")
    if not isinstance(values, Mapping) or not values:
        return "dict"
    inner = type_text(values)
    return None if inner is None else f"dict[str, {inner}]"


def _union(parts: Iterable[str | None]) -> str | None:
    texts = list(parts)
    if None in texts:
        return None
    return " | ".join(dict.fromkeys(str(text) for text in texts))


def _signature_param(name: str, schema: Any, required: bool) -> str:
    kind = type_text(schema)
    text = f"{name}: {kind if kind is not None else 'dict'}"
    if isinstance(schema, Mapping) and "default" in schema:
        return f"{text} = {_literal(schema['default'])}"
    return text if required else f"{text} = None"


def _param_line(name: str, schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return ""
    parts = [str(schema.get("description") or "").strip()]
    constraints = _constraints(schema)
    if constraints:
        parts.append(f"[{', '.join(constraints)}]")
    if type_text(schema) is None:
        rest = {k: v for k, v in schema.items() if k not in _SHOWN_ELSEWHERE}
        parts.append("schema: " + _json(rest))
    text = " ".join(" ".join(part.split()) for part in parts if part)
    return f"{name}: {text}" if text else ""


def _constraints(schema: Mapping[str, Any]) -> list[str]:
    branches = [schema, *(b for b in schema.get("anyOf") or () if isinstance(b, Mapping))]
    found = [
        template.format(branch[key] if key in ("pattern", "format") else _literal(branch[key]))
        for branch in branches
        for key, template in _CONSTRAINTS
        if key in branch
    ]
    if schema.get("uniqueItems") is True:
        found.append("unique items")
    return list(dict.fromkeys(found))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _literal(value: Any) -> str:
    """A value as the model writes it in a call: strings in double quotes, None, True."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
