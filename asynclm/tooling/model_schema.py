"""The JSON schema of a pydantic model, cleaned for the model reading it.

pydantic writes a "title" on every property and puts nested models under `$defs`; a tool's
parameter schema keeps neither (titles only cost prompt tokens), except that a recursive model
keeps its `$defs`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["object_schema"]

_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_LITERAL_KEYS = frozenset({"default", "enum", "const", "examples"})
_DEFS_PREFIX = "#/$defs/"


def object_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields as a tool parameter schema: an object with no extra properties.

    Args:
        model: The model of a tool's parameters (field aliases are the parameter names).

    Returns:
        `{"type": "object", "properties", "required", "additionalProperties": False}`, plus
        `$defs` for recursive models.
    """
    cleaned = _strip_titles(model.model_json_schema(by_alias=True))
    defs = cleaned.pop("$defs", {})
    inlined = _inline_refs(cleaned, defs, ())
    if _contains_ref(inlined):  # recursive models keep their $defs
        inlined, defs_out = cleaned, defs
    else:
        defs_out = {}
    schema = {
        "type": "object",
        "properties": inlined.get("properties", {}),
        "required": inlined.get("required", []),
        "additionalProperties": False,
    }
    if defs_out:
        schema["$defs"] = defs_out
    return schema


def _strip_titles(node: Any) -> Any:
    """Drops pydantic's generated "title" keys (not properties that happen to be named so)."""
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        elif key in _LITERAL_KEYS:
            out[key] = value
        else:
            out[key] = _strip_titles(value)
    return out


def _inline_refs(node: Any, defs: dict[str, Any], stack: tuple[str, ...]) -> Any:
    """Replaces `$ref`s into `$defs` by their definitions, leaving recursive ones in place."""
    if isinstance(node, list):
        return [_inline_refs(item, defs, stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX):
        target = ref[len(_DEFS_PREFIX) :]
        if target in defs and target not in stack:
            rest = {key: value for key, value in node.items() if key != "$ref"}
            resolved = _inline_refs(defs[target], defs, (*stack, target))
            return {**resolved, **_inline_refs(rest, defs, stack)}
    return {key: _inline_refs(value, defs, stack) for key, value in node.items()}


def _contains_ref(node: Any) -> bool:
    if isinstance(node, list):
        return any(_contains_ref(item) for item in node)
    if isinstance(node, dict):
        return "$ref" in node or any(_contains_ref(value) for value in node.values())
    return False
