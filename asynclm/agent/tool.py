"""Tools: Python functions with a JSON schema the model can call.

A `Tool` pairs an OpenAI-style function description (name, description, JSON schema of the
arguments) with the callable that runs it. `@tool` builds one from a typed function and its
Google-style docstring; `Tool.from_schema` builds one from a raw description (OpenAI or BFCL
form). `Tool.invoke` validates the arguments, runs the function (sync ones in a worker thread)
and applies the tool's timeout; `format_result` turns any result into bounded text.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, overload

import anyio
import anyio.to_thread
import jsonschema
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo

from asynclm.cml.call import CallArgumentError, validate_arguments
from asynclm.cml.schema import normalize_schema

__all__ = [
    "Tool",
    "ToolDefinitionError",
    "ToolError",
    "ToolTimeoutError",
    "format_result",
    "parse_docstring",
    "tool",
]

DEFAULT_MAX_RESULT_CHARS = 4000

F = TypeVar("F", bound=Callable[..., Any])
Arguments = dict[str, Any]


class ToolError(Exception):
    """Base class of every error raised by the tool layer."""


class ToolDefinitionError(ToolError, ValueError):
    """A tool cannot be defined; the message lists every problem found, one per line."""

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.subject = subject
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"cannot define tool {subject}:\n{lines}")


class ToolTimeoutError(ToolError, TimeoutError):
    """A tool call ran past its timeout."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"tool {name!r} timed out after {timeout:g} s")


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable tool and its OpenAI-style function description.

    Attributes:
        name: The function name the model calls (a Python identifier; dotted names such as
            BFCL's `math.factorial` are accepted).
        description: What the tool does, shown to the model.
        parameters: JSON schema of the arguments,
            `{"type": "object", "properties": {...}, "required": [...]}`.
        function: The callable run by `invoke`; None for a description-only tool.
        is_async: Whether `function` is a coroutine function.
        timeout: Seconds a call may run before `ToolTimeoutError`; None for no limit.
        max_result_chars: Cap on the text `format_result` produces for the model.
        prepare: Turns validated JSON arguments into the Python values `function` expects
            (Enum members, pydantic models, tuples); set by `@tool`, None keeps them as is.
    """

    name: str
    description: str
    parameters: dict[str, Any] = field(hash=False)
    function: Callable[..., Any] | None = None
    is_async: bool = False
    timeout: float | None = None
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    prepare: Callable[[Arguments], Arguments] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        problems = _check_tool_fields(self)
        if problems:
            raise ToolDefinitionError(repr(self.name), problems)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the underlying function directly, bypassing validation and timeout."""
        return self._require_function()(*args, **kwargs)

    def openai_schema(self) -> dict[str, Any]:
        """The tool as an OpenAI function-calling entry.

        Returns:
            `{"type": "function", "function": {"name", "description", "parameters"}}`.
        """
        function = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }
        return {"type": "function", "function": function}

    def format_result(self, value: Any) -> str:
        """Formats a result of this tool for the model (see `format_result`)."""
        return format_result(value, self.max_result_chars)

    async def invoke(
        self, arguments: Mapping[str, Any], *, limiter: anyio.CapacityLimiter | None = None
    ) -> Any:
        """Validates the arguments and runs the tool.

        Sync functions run in a worker thread (`anyio.to_thread.run_sync`); on timeout or
        cancellation the thread is abandoned (Python cannot stop it) and finishes on its own.

        Args:
            arguments: Keyword arguments, checked against `parameters`.
            limiter: Caps how many sync tools run in threads at once; unused for async tools.

        Returns:
            Whatever the function returns.

        Raises:
            CallArgumentError: The arguments do not match the schema.
            ToolTimeoutError: The call ran past `timeout`.
            ToolError: The tool has no function.
        """
        function = self._require_function()
        checked = validate_arguments(dict(arguments), self.parameters)
        if self.prepare is not None:
            checked = self.prepare(checked)
        try:
            with anyio.fail_after(self.timeout) as scope:
                return await self._run(function, checked, limiter)
        except TimeoutError as exc:
            if self.timeout is None or not scope.cancel_called:
                raise  # raised by the function itself, not our deadline
            raise ToolTimeoutError(self.name, self.timeout) from exc

    async def _run(self, function: Callable[..., Any], arguments: Arguments, limiter: Any) -> Any:
        if self.is_async:
            return await function(**arguments)
        call = functools.partial(function, **arguments)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)

    def _require_function(self) -> Callable[..., Any]:
        if self.function is None:
            raise ToolError(
                f"tool {self.name!r} has no function to run: it was built from a schema only"
            )
        return self.function

    @classmethod
    def from_schema(
        cls,
        doc: Mapping[str, Any],
        function: Callable[..., Any] | None = None,
        *,
        timeout: float | None = None,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    ) -> Tool:
        """Builds a tool from a raw function description.

        Args:
            doc: OpenAI form `{"type": "function", "function": {...}}`, whose parameters are
                used as they are, or BFCL form `{"name", "description", "parameters"}`, whose
                types ("dict", "float", "tuple", "any", ...) are converted to JSON Schema.
            function: The callable to run, called with the arguments as keywords.
            timeout: Seconds a call may run; None for no limit.
            max_result_chars: Cap on the formatted result.

        Returns:
            The tool.

        Raises:
            ToolDefinitionError: Listing every problem with `doc`.
        """
        spec, is_openai = _unwrap_function_doc(doc)
        name = spec.get("name")
        subject = repr(name) if isinstance(name, str) else "from schema"
        problems = _check_function_doc(spec)
        if problems:
            raise ToolDefinitionError(subject, problems)
        parameters = dict(spec.get("parameters") or _empty_parameters())
        return cls(
            name=str(name),
            description=spec.get("description") or "",
            parameters=parameters if is_openai else normalize_schema(parameters),
            function=function,
            is_async=function is not None and _is_coroutine_function(function),
            timeout=timeout,
            max_result_chars=max_result_chars,
        )


# --- the @tool decorator ---------------------------------------------------------------------


@overload
def tool(func: F, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
) -> Callable[[F], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turns a typed function into a `Tool`; usable bare (`@tool`) or with options.

    The JSON schema comes from the type hints (through pydantic); the description from the
    docstring's text before its first section, and each parameter's description from its
    "Args:" section. Parameters with defaults are optional.

    Args:
        func: The function (sync or async), when used bare.
        name: Tool name; defaults to the function's name.
        description: Overrides the docstring's summary.
        timeout: Seconds a call may run; None for no limit.
        max_result_chars: Cap on the formatted result.

    Returns:
        The tool, or a decorator making one.

    Raises:
        ToolDefinitionError: Listing every problem found in the function at once.
    """

    def decorate(function: Callable[..., Any]) -> Tool:
        return _tool_from_function(function, name, description, timeout, max_result_chars)

    return decorate if func is None else decorate(func)


def _tool_from_function(
    function: Callable[..., Any],
    name: str | None,
    description: str | None,
    timeout: float | None,
    max_result_chars: int,
) -> Tool:
    if not callable(function):
        raise ToolDefinitionError(repr(function), ["@tool needs a function"])
    tool_name = name if name is not None else getattr(function, "__name__", "")
    summary, arg_docs = parse_docstring(inspect.getdoc(function))
    problems: list[str] = []
    if not _is_identifier(tool_name):
        problems.append(f"tool name {tool_name!r} is not a Python identifier")
    params = _signature_parameters(function, problems)
    problems += _check_parameters(params)
    problems += [
        f"docstring describes parameter {doc_name!r}, which is not in the signature"
        for doc_name in arg_docs
        if doc_name not in {p.name for p in params}
    ]
    if problems:
        raise ToolDefinitionError(repr(tool_name), problems)
    schema, prepare = _arguments_model(tool_name, params, arg_docs)
    return Tool(
        name=tool_name,
        description=summary if description is None else description,
        parameters=schema,
        function=function,
        is_async=_is_coroutine_function(function),
        timeout=timeout,
        max_result_chars=max_result_chars,
        prepare=prepare,
    )


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
        problems.append(
            f"parameter {param.name!r}: cannot resolve annotation {param.annotation!r} ({exc})"
        )
        return param.replace(annotation=Any)
    return param.replace(annotation=annotation)


def _check_parameters(params: list[inspect.Parameter]) -> list[str]:
    problems = []
    for param in params:
        problems += _parameter_problems(param)
    return problems


def _parameter_problems(param: inspect.Parameter) -> list[str]:
    label = f"parameter {param.name!r}"
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


def _arguments_model(
    tool_name: str, params: list[inspect.Parameter], arg_docs: dict[str, str]
) -> tuple[dict[str, Any], Callable[[Arguments], Arguments]]:
    # Internal field names p0, p1, ... with the real names as aliases: any parameter name works,
    # even ones pydantic reserves (model_*, json, _private).
    fields: dict[str, Any] = {}
    for index, param in enumerate(params):
        info = Field(alias=param.name, description=arg_docs.get(param.name))
        annotation = Annotated[param.annotation, info]  # type: ignore[name-defined]
        default = ... if param.default is param.empty else param.default
        fields[f"p{index}"] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    model = create_model(f"{tool_name}_arguments", __config__=config, **fields)
    return _object_schema(model.model_json_schema(by_alias=True)), _make_prepare(model)


def _make_prepare(model: type[BaseModel]) -> Callable[[Arguments], Arguments]:
    aliases = {name: info.alias or name for name, info in model.model_fields.items()}

    def prepare(arguments: Arguments) -> Arguments:
        try:
            instance = model.model_validate(arguments)
        except ValidationError as exc:
            raise CallArgumentError(str(exc)) from exc
        return {alias: getattr(instance, name) for name, alias in aliases.items()}

    return prepare


def _object_schema(raw: dict[str, Any]) -> dict[str, Any]:
    cleaned = _strip_titles(raw)
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


_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_LITERAL_KEYS = frozenset({"default", "enum", "const", "examples"})
_DEFS_PREFIX = "#/$defs/"


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


# --- docstrings --------------------------------------------------------------------------------

_ARG_SECTIONS = frozenset({"args", "arguments", "parameters", "params"})
_SECTION_NAMES = _ARG_SECTIONS | {
    "keyword args", "keyword arguments", "returns", "return", "yields", "yield", "raises",
    "example", "examples", "note", "notes", "attributes", "see also", "warning", "warnings",
    "todo", "references",
}  # fmt: skip
_ARG_ENTRY = re.compile(r"^(?P<name>\*{0,2}[^\W\d]\w*)\s*(?:\([^)]*\))?\s*:\s*(?P<text>.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Splits a Google-style docstring into its description and per-argument descriptions.

    Args:
        doc: The docstring (already dedented or not), or None.

    Returns:
        `(description, {argument: description})`; the description is the text before the
        first section, one line per paragraph.
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] = summary
    for line in lines:
        header = line.rstrip().removesuffix(":").lower()
        if line.endswith(":") and not line.startswith(" ") and header in _SECTION_NAMES:
            current = sections.setdefault(header, [])
        else:
            current.append(line)
    arg_lines = [line for key in _ARG_SECTIONS for line in sections.get(key, [])]
    return _paragraphs(summary), _parse_args(arg_lines)


def _paragraphs(lines: list[str]) -> str:
    paragraphs = " ".join(line.strip() or "\n" for line in lines).split("\n")
    return "\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _parse_args(lines: list[str]) -> dict[str, str]:
    entries: dict[str, str] = {}
    name: str | None = None
    indent: int | None = None
    for line in lines:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        indent = width if indent is None else indent
        match = _ARG_ENTRY.match(line.strip())
        if width <= indent and match:
            name = match["name"]
            entries[name] = match["text"].strip()
        elif name is not None:
            entries[name] = f"{entries[name]} {line.strip()}".strip()
    return entries


# --- raw function descriptions -----------------------------------------------------------------


def _unwrap_function_doc(doc: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The function description inside `doc`, and whether `doc` was in OpenAI form."""
    if not isinstance(doc, Mapping):
        raise ToolDefinitionError("from schema", [f"expected a dict, got {type(doc).__name__}"])
    if doc.get("type") == "function" and isinstance(doc.get("function"), Mapping):
        return doc["function"], True
    return doc, False


def _check_function_doc(spec: Mapping[str, Any]) -> list[str]:
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


def _empty_parameters() -> dict[str, Any]:
    return {"type": "object", "properties": {}, "required": []}


def _check_tool_fields(tool: Tool) -> list[str]:
    problems = []
    if not isinstance(tool.name, str) or not _is_dotted_identifier(tool.name):
        problems.append(f"name {tool.name!r} is not a (dotted) Python identifier")
    if not isinstance(tool.description, str):
        problems.append("description must be a string")
    problems += _schema_problems(tool.parameters)
    if tool.function is not None and not callable(tool.function):
        problems.append("function is not callable")
    if tool.timeout is not None and not tool.timeout > 0:
        problems.append(f"timeout must be positive or None, got {tool.timeout!r}")
    if not isinstance(tool.max_result_chars, int) or tool.max_result_chars <= 0:
        problems.append(f"max_result_chars must be a positive int, got {tool.max_result_chars!r}")
    return problems


def _schema_problems(parameters: Any) -> list[str]:
    if not isinstance(parameters, dict):
        return [f"parameters must be a dict, got {type(parameters).__name__}"]
    problems = []
    if parameters.get("type") != "object":
        problems.append('parameters must be an object schema ({"type": "object", ...})')
    properties = parameters.get("properties", {})
    required = parameters.get("required", [])
    names = properties if isinstance(properties, dict) else {}
    missing = [n for n in required if n not in names] if isinstance(required, list) else []
    if missing:
        problems.append(f"required names {missing} are not in properties")
    try:
        jsonschema.validators.validator_for(parameters).check_schema(parameters)
    except jsonschema.SchemaError as exc:
        problems.append(f"parameters is not a valid JSON schema: {exc.message}")
    return problems


def _is_identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def _is_dotted_identifier(name: str) -> bool:
    return all(_is_identifier(part) for part in name.split("."))


def _is_coroutine_function(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    if isinstance(function, functools.partial):
        return _is_coroutine_function(function.func)
    return inspect.iscoroutinefunction(getattr(function, "__call__", None))  # noqa: B004


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


# --- results -----------------------------------------------------------------------------------


def format_result(value: Any, max_chars: int) -> str:
    """Turns a tool result into text for the model, at most `max_chars` long.

    Strings pass as they are; everything else becomes JSON (pydantic models and dataclasses
    through their fields, anything else not JSON-serialisable through `str`). Text over the
    cap is cut and ends with a marker such as `… [truncated 12345 chars]`.

    Args:
        value: The result.
        max_chars: The cap (positive).

    Returns:
        The text.

    Raises:
        ValueError: `max_chars` is not positive.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    text = value if isinstance(value, str) else _to_json(value)
    return _truncate(text, max_chars)


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):  # circular structures, exotic keys
        return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    keep = max_chars
    for _ in range(3):  # the marker's length depends on the count it reports
        marker = f"… [truncated {len(text) - keep} chars]"
        keep = max(0, max_chars - len(marker))
    if keep == 0:
        return text[:max_chars]
    return text[:keep] + f"… [truncated {len(text) - keep} chars]"
