"""Raw function descriptions as found in the wild: OpenAI's and BFCL's forms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asynclm.cml.schema import normalize_schema
from asynclm.tooling.errors import ToolDefinitionError

__all__ = ["FunctionDoc", "read_function_doc"]


@dataclass(frozen=True, slots=True)
class FunctionDoc:
    """The parts of a function description a tool needs, its parameters as JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]


def read_function_doc(doc: Mapping[str, Any]) -> FunctionDoc:
    """Reads a function description.

    Args:
        doc: OpenAI form `{"type": "function", "function": {...}}`, whose parameters are used
            as they are, or BFCL form `{"name", "description", "parameters"}`, whose types
            ("dict", "float", "tuple", "any", ...) are converted to JSON Schema.

    Returns:
        The name, description and parameter schema.

    Raises:
        ToolDefinitionError: Listing every problem with `doc`.
    """
    spec, is_openai = _unwrap(doc)
    name = spec.get("name")
    problems = _problems(spec)
    if problems:
        raise ToolDefinitionError(repr(name) if isinstance(name, str) else "from schema", problems)
    parameters = dict(spec.get("parameters") or _EMPTY_PARAMETERS)
    return FunctionDoc(
        name=str(name),
        description=spec.get("description") or "",
        parameters=parameters if is_openai else normalize_schema(parameters),
    )


_EMPTY_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}, "required": []}


def _unwrap(doc: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The function description inside `doc`, and whether `doc` was in OpenAI form."""
    if not isinstance(doc, Mapping):
        raise ToolDefinitionError("from schema", [f"expected a dict, got {type(doc).__name__}"])
    if doc.get("type") == "function" and isinstance(doc.get("function"), Mapping):
        return doc["function"], True
    return doc, False


def _problems(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        problems.append("missing 'name' (a non-empty string)")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        problems.append("'description' must be a string")
    parameters = spec.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        problems.append("'parameters' must be a JSON schema object")
    return problems
