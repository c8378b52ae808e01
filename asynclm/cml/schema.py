"""Function-parameter schemas as found in the wild (BFCL, OpenAPI) → valid JSON Schema."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

# Type names seen in BFCL (Python, Java and JavaScript categories) and OpenAPI documents,
# lower-cased. "any" and unknown names map to None: no type constraint.
_TYPES: dict[str, str | None] = {
    "string": "string", "str": "string", "char": "string", "character": "string",
    "integer": "integer", "int": "integer", "long": "integer", "short": "integer",
    "byte": "integer", "bigint": "integer",
    "number": "number", "float": "number", "double": "number", "decimal": "number",
    "boolean": "boolean", "bool": "boolean",
    "object": "object", "dict": "object", "map": "object", "hashmap": "object",
    "array": "array", "list": "array", "tuple": "array", "set": "array", "arraylist": "array",
    "null": "null", "none": "null", "nonetype": "null",
    "any": None,
}  # fmt: skip

_ANNOTATIONS = ("title", "description")
_NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_COUNT_KEYWORDS = (
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
)  # fmt: skip
_SCHEMA_LIST_KEYWORDS = ("anyOf", "oneOf", "allOf", "prefixItems")


def normalize_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Converts a function-parameter schema into valid JSON Schema (Draft 2020-12).

    BFCL types become JSON types (`dict` → object, `float` → number, `tuple` → array,
    `any` → no constraint; Java/JavaScript names such as `String` or `long` likewise),
    `optional: true` on a property removes it from `required`, `nullable: true` admits null,
    a list-valued `items` becomes `prefixItems`, and keywords that are unknown or malformed
    (which would break validation) are dropped. A schema with `properties` and no type is an
    object. The input is not modified.

    Args:
        schema: A parameter schema, e.g. a BFCL function's `parameters`.

    Returns:
        A new, valid JSON schema.
    """
    if not isinstance(schema, dict):
        return {}
    out: dict[str, Any] = {}
    schema_type = _normalize_type(schema)
    if schema_type is not None:
        out["type"] = schema_type
    out.update(_annotations(schema))
    out.update(_value_keywords(schema))
    out.update(_composite_keywords(schema))
    out.update(_object_keywords(schema))
    out.update(_array_keywords(schema))
    return out


def _normalize_type(schema: dict[str, Any]) -> str | list[str] | None:
    types = _mapped_types(schema.get("type"))
    if not types and isinstance(schema.get("properties"), dict):
        types = ["object"]
    if schema.get("nullable") is True and types and "null" not in types:
        types.append("null")
    if not types:
        return None
    return types[0] if len(types) == 1 else types


def _mapped_types(raw: Any) -> list[str]:
    """JSON types for a type name or list of names; [] for no constraint ("any", unknown)."""
    types: list[str] = []
    for name in raw if isinstance(raw, list) else [raw]:
        mapped = _TYPES.get(name.lower()) if isinstance(name, str) else None
        if mapped is None:
            return []
        if mapped not in types:
            types.append(mapped)
    return types


def _annotations(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: str(schema[key]) for key in _ANNOTATIONS if key in schema}
    if "default" in schema:
        out["default"] = copy.deepcopy(schema["default"])
    if isinstance(schema.get("examples"), list):
        out["examples"] = copy.deepcopy(schema["examples"])
    return out


def _value_keywords(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        out["enum"] = copy.deepcopy(schema["enum"])
    if "const" in schema:
        out["const"] = copy.deepcopy(schema["const"])
    for key in _NUMBER_KEYWORDS:
        if _is_number(schema.get(key)):
            out[key] = schema[key]
    if _is_number(schema.get("multipleOf")) and schema["multipleOf"] > 0:
        out["multipleOf"] = schema["multipleOf"]
    for key in _COUNT_KEYWORDS:
        if _is_count(schema.get(key)):
            out[key] = schema[key]
    if isinstance(schema.get("pattern"), str) and _is_regex(schema["pattern"]):
        out["pattern"] = schema["pattern"]
    if isinstance(schema.get("format"), str):
        out["format"] = schema["format"]
    if isinstance(schema.get("uniqueItems"), bool):
        out["uniqueItems"] = schema["uniqueItems"]
    return out


def _composite_keywords(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _SCHEMA_LIST_KEYWORDS:
        value = schema.get(key)
        if isinstance(value, list) and value:
            out[key] = [normalize_schema(item) for item in value]
    if isinstance(schema.get("not"), dict):
        out["not"] = normalize_schema(schema["not"])
    return out


def _object_keywords(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    properties = schema.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {str(name): normalize_schema(sub) for name, sub in properties.items()}
    required = _required(schema, properties if isinstance(properties, dict) else None)
    if required:
        out["required"] = required
    extra = schema.get("additionalProperties")
    if isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif isinstance(extra, dict):
        out["additionalProperties"] = normalize_schema(extra)
    return out


def _required(schema: dict[str, Any], properties: dict[str, Any] | None) -> list[str]:
    """Required names: the declared ones that exist, plus properties flagged
    `required: true` or `optional: false`, minus properties flagged `optional: true`."""
    declared = schema.get("required")
    declared = declared if isinstance(declared, list) else []
    names = [name for name in declared if isinstance(name, str)]
    if properties is None:
        return list(dict.fromkeys(names))
    flags = {name: sub for name, sub in properties.items() if isinstance(sub, dict)}
    names += [name for name, sub in flags.items() if _flagged_required(sub)]
    optional = {name for name, sub in flags.items() if sub.get("optional") is True}
    kept = [name for name in names if name in properties and name not in optional]
    return list(dict.fromkeys(kept))


def _flagged_required(schema: dict[str, Any]) -> bool:
    return schema.get("required") is True or schema.get("optional") is False


def _array_keywords(schema: dict[str, Any]) -> dict[str, Any]:
    items = schema.get("items")
    if isinstance(items, dict):
        return {"items": normalize_schema(items)}
    if isinstance(items, list) and items and "prefixItems" not in schema:
        return {"prefixItems": [normalize_schema(item) for item in items]}
    if isinstance(items, bool):
        return {"items": items}
    return {}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_regex(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True
