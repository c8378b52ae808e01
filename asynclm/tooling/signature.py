"""A typed function's parameters as a tool description: JSON schema, docs and validator.

The schema comes from the type hints through pydantic (one model per function, built once);
the description and the parameters' descriptions from the Google-style docstring. Every
problem found is reported at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo

from asynclm.cml.tokens import is_identifier
from asynclm.tooling.context import is_run_context
from asynclm.tooling.docstring import parse_docstring
from asynclm.tooling.errors import ToolDefinitionError
from asynclm.tooling.model_schema import object_schema
from asynclm.tooling.validation import ModelValidator

__all__ = ["FunctionDescription", "describe_function"]


@dataclass(frozen=True, slots=True)
class FunctionDescription:
    """What a typed function says about itself as a tool.

    Attributes:
        name: The tool name.
        description: The docstring's text before its first section.
        parameters: JSON schema of the arguments.
        validator: Validates a call's arguments and converts them for the function.
        takes_context: Whether the first parameter is a `RunContext` (passed by the runtime,
            not part of the schema).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    validator: ModelValidator
    takes_context: bool = False


def describe_function(function: Callable[..., Any], name: str | None = None) -> FunctionDescription:
    """Reads a function's signature and docstring.

    Args:
        function: A sync or async function with type hints on every parameter; its first
            parameter may be a `RunContext[...]`, which the runtime passes.
        name: The tool name; defaults to the function's name.

    Returns:
        The description.

    Raises:
        ToolDefinitionError: Listing every problem found.
    """
    if not callable(function):
        raise ToolDefinitionError(repr(function), ["@tool needs a function"])
    tool_name = name if name is not None else getattr(function, "__name__", "")
    summary, arg_docs = parse_docstring(inspect.getdoc(function))
    problems: list[str] = []
    if not is_identifier(tool_name):
        problems.append(f"tool name {tool_name!r} is not a Python identifier")
    problems += _kind_problems(function)
    params = _signature_parameters(function, problems)
    takes_context = bool(params) and is_run_context(params[0].annotation)
    if takes_context:
        params = params[1:]
    for param in params:
        problems += _parameter_problems(param)
    names = {p.name for p in params}
    problems += [
        f"docstring describes parameter {doc_name!r}, which is not in the signature"
        for doc_name in arg_docs
        if doc_name not in names
    ]
    if problems:
        raise ToolDefinitionError(repr(tool_name), problems)
    model = _arguments_model(tool_name, params, arg_docs)
    schema = object_schema(model)
    validator = ModelValidator(model, schema)
    return FunctionDescription(tool_name, summary, schema, validator, takes_context)


def _kind_problems(function: Callable[..., Any]) -> list[str]:
    """Generators give many values; a tool call gives one result."""
    target = inspect.unwrap(function)
    if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
        return [
            "a generator cannot be a tool: a call returns one result (to report progress, take "
            "a RunContext first parameter and call ctx.report_progress)"
        ]
    return []


def _signature_parameters(
    function: Callable[..., Any], problems: list[str]
) -> list[inspect.Parameter]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        problems.append(f"cannot read the signature: {exc}")
        return []
    namespace = getattr(inspect.unwrap(function), "__globals__", {})
    return [_resolve_annotation(p, namespace, problems) for p in signature.parameters.values()]


def _resolve_annotation(
    param: inspect.Parameter, namespace: dict[str, Any], problems: list[str]
) -> inspect.Parameter:
    # String annotations (`from __future__ import annotations`) are resolved one by one, so one
    # unknown name does not hide the problems of the other parameters.
    if not isinstance(param.annotation, str):
        return param
    try:
        annotation = eval(param.annotation, namespace)  # what inspect's eval_str does
    except Exception as exc:
        if is_run_context(param.annotation):  # e.g. its Deps imported for type checking only
            return param
        problems.append(
            f"parameter {param.name!r}: cannot resolve annotation {param.annotation!r} ({exc})"
        )
        return param.replace(annotation=Any)
    return param.replace(annotation=annotation)


def _parameter_problems(param: inspect.Parameter) -> list[str]:
    label = f"parameter {param.name!r}"
    if is_run_context(param.annotation):
        return [f"{label}: a RunContext parameter must be the first one"]
    if param.kind is param.VAR_POSITIONAL:
        return [f"*{param.name} is not supported: a tool takes named arguments only"]
    if param.kind is param.VAR_KEYWORD:
        return [f"**{param.name} is not supported: a tool takes named arguments only"]
    problems = []
    if param.kind is param.POSITIONAL_ONLY:
        problems.append(f"{label} is positional-only; a tool is called with keyword arguments")
    if param.annotation is param.empty:
        return [*problems, f"{label} has no type annotation"]
    try:
        adapter = TypeAdapter(param.annotation)
        adapter.json_schema()
    except (PydanticUserError, TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0]
        return [*problems, f"{label}: unsupported type {_type_name(param.annotation)} ({reason})"]
    return problems + _default_problems(param, adapter, label)


def _default_problems(param: inspect.Parameter, adapter: TypeAdapter[Any], label: str) -> list[str]:
    if param.default is param.empty or isinstance(param.default, FieldInfo):
        return []
    try:
        adapter.validate_python(param.default)
    except ValidationError:
        annotation = _type_name(param.annotation)
        return [f"{label}: default {param.default!r} is not a valid {annotation}"]
    return []


def _arguments_model(tool_name: str, params: list[inspect.Parameter], arg_docs: dict[str, str]):
    # Internal field names p0, p1, ... with the real names as aliases: any parameter name works,
    # even ones pydantic reserves (model_*, json, _private).
    fields: dict[str, Any] = {}
    for index, param in enumerate(params):
        info = Field(alias=param.name, description=arg_docs.get(param.name))
        annotation = Annotated[param.annotation, info]  # type: ignore[name-defined]
        default = ... if param.default is param.empty else param.default
        fields[f"p{index}"] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    return create_model(f"{tool_name}_arguments", __config__=config, **fields)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")
