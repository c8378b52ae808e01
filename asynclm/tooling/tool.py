"""`Tool`: a callable and the OpenAI-style function description the model reads."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

from asynclm.cml.call import SchemaValidator
from asynclm.cml.tokens import is_dotted_name
from asynclm.tooling.context import RunContext
from asynclm.tooling.errors import ToolDefinitionError, ToolError, ToolTimeoutError
from asynclm.tooling.function_doc import read_function_doc
from asynclm.tooling.results import DEFAULT_MAX_RESULT_CHARS, format_result
from asynclm.tooling.threads import ToolThreads
from asynclm.tooling.validation import ArgumentValidator

__all__ = ["Tool"]


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
        latency: The tool's estimated seconds per call, stated in its documentation so that
            the model can start the slowest ready call first; None when unknown.
        validator: Checks a call's arguments and returns the keyword arguments for `function`
            (built once, when the tool is defined). `@tool` sets the pydantic model of the
            function's parameters; otherwise, or when `parameters` is not the validator's
            `schema` (e.g. after `dataclasses.replace`), the JSON schema is compiled.
        takes_context: Whether `function` takes a `RunContext` as its first argument.
        requires_approval: Whether each call waits for the application's approval before it
            runs (the agent's other calls and generation go on meanwhile).
        retries: How many of this tool's calls may fail in one run before the run ends
            (None: the agent's `tool_retries`).
    """

    name: str
    description: str
    parameters: dict[str, Any] = field(hash=False)
    function: Callable[..., Any] | None = None
    is_async: bool = False
    timeout: float | None = None
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    latency: float | None = None
    validator: ArgumentValidator | None = field(default=None, repr=False, compare=False)
    takes_context: bool = False
    requires_approval: bool = False
    retries: int | None = None

    def __post_init__(self) -> None:
        problems = _field_problems(self)
        stale = getattr(self.validator, "schema", None) != self.parameters
        if stale and isinstance(self.parameters, dict):
            try:
                object.__setattr__(self, "validator", SchemaValidator(self.parameters))
            except ValueError as exc:
                problems.append(f"parameters is not a valid JSON schema: {exc}")
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

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Checks arguments with the tool's validator.

        Returns:
            The keyword arguments for `function`.

        Raises:
            CallArgumentError: Listing every problem.
        """
        validator = cast(ArgumentValidator, self.validator)  # set by __post_init__
        return validator(dict(arguments))

    async def invoke(
        self,
        arguments: Mapping[str, Any],
        *,
        limiter: ToolThreads | None = None,
        timeout: float | None = None,
        context: RunContext[Any] | None = None,
    ) -> Any:
        """Validates the arguments and runs the tool under its time limit.

        Sync functions run in a worker thread; on timeout or cancellation the thread is
        abandoned (Python cannot stop it) and finishes on its own, holding its slot of
        `limiter` until it does. A sync function that returns an awaitable has it awaited.

        Args:
            arguments: Keyword arguments, checked by the tool's validator.
            limiter: Caps the threads of sync tools, abandoned ones included (see
                `ToolThreads`); a private cap of one thread per call when None.
            timeout: The limit for a tool without its own `timeout` (the tool's own wins);
                None for no limit.
            context: What the tool learns of its run, for a tool that `takes_context`
                (default: a context without dependencies).

        Returns:
            Whatever the function returns.

        Raises:
            CallArgumentError: The arguments do not match the schema.
            ToolTimeoutError: The call ran past its limit.
            ToolError: The tool has no function, or returned a generator.
            ValueError: `timeout` is not positive.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        function = self._require_function()
        call = functools.partial(function, **self.validate(arguments))
        if self.takes_context:
            call = functools.partial(call, context or RunContext(None, tool_name=self.name))
        threads = limiter or ToolThreads(1)
        limit = self.timeout if self.timeout is not None else timeout
        try:
            with anyio.fail_after(limit) as scope:
                return _checked_result(self.name, await self._run(call, threads))
        except TimeoutError as exc:
            if limit is None or not scope.cancel_called:
                raise  # raised by the function itself, not our deadline
            raise ToolTimeoutError(self.name, limit, _waiting_note(threads)) from exc

    async def _run(self, call: Callable[[], Any], threads: ToolThreads) -> Any:
        value = await call() if self.is_async else await threads.run(call)
        if inspect.isawaitable(value):  # a sync function handing back a coroutine
            value = await value
        return value

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
        latency: float | None = None,
        takes_context: bool = False,
        requires_approval: bool = False,
        retries: int | None = None,
    ) -> Tool:
        """Builds a tool from a raw function description.

        Args:
            doc: OpenAI form `{"type": "function", "function": {...}}`, whose parameters are
                used as they are, or BFCL form `{"name", "description", "parameters"}`, whose
                types ("dict", "float", "tuple", "any", ...) are converted to JSON Schema.
            function: The callable to run, called with the arguments as keywords.
            timeout: Seconds a call may run; None for no limit.
            max_result_chars: Cap on the formatted result.
            latency: Estimated seconds per call, stated to the model; None when unknown.
            takes_context: Whether `function` takes a `RunContext` first.
            requires_approval: Whether each call waits for the application's approval.
            retries: Failed calls allowed per run (None: the agent's setting).

        Returns:
            The tool; its arguments are validated with the JSON schema.

        Raises:
            ToolDefinitionError: Listing every problem with `doc`.
        """
        read = read_function_doc(doc)
        return cls(
            name=read.name,
            description=read.description,
            parameters=read.parameters,
            function=function,
            is_async=function is not None and is_coroutine_function(function),
            timeout=timeout,
            max_result_chars=max_result_chars,
            latency=latency,
            takes_context=takes_context,
            requires_approval=requires_approval,
            retries=retries,
        )


def _checked_result(name: str, value: Any) -> Any:
    if inspect.isgenerator(value):
        value.close()
    if inspect.isasyncgen(value) or inspect.isgenerator(value):
        raise ToolError(
            f"tool {name!r} returned a generator: a call returns one result (report progress "
            "with RunContext.report_progress)"
        )
    return value


def _waiting_note(threads: ToolThreads) -> str:
    if not threads.is_full:
        return ""
    return f"; it may have waited for a worker thread ({threads.describe()})"


def is_coroutine_function(function: Callable[..., Any]) -> bool:
    """Whether calling `function` returns an awaitable (partials and callables included)."""
    if inspect.iscoroutinefunction(function):
        return True
    if isinstance(function, functools.partial):
        return is_coroutine_function(function.func)
    return inspect.iscoroutinefunction(getattr(function, "__call__", None))  # noqa: B004


def _field_problems(tool: Tool) -> list[str]:
    problems = []
    if not isinstance(tool.name, str) or not is_dotted_name(tool.name):
        problems.append(f"name {tool.name!r} is not a (dotted) Python identifier")
    if not isinstance(tool.description, str):
        problems.append("description must be a string")
    problems += _parameters_problems(tool.parameters)
    if tool.function is not None and not callable(tool.function):
        problems.append("function is not callable")
    if tool.timeout is not None and not tool.timeout > 0:
        problems.append(f"timeout must be positive or None, got {tool.timeout!r}")
    if not isinstance(tool.max_result_chars, int) or tool.max_result_chars <= 0:
        problems.append(f"max_result_chars must be a positive int, got {tool.max_result_chars!r}")
    if tool.latency is not None and not (math.isfinite(tool.latency) and tool.latency >= 0):
        problems.append(f"latency must be a non-negative number of seconds, got {tool.latency!r}")
    if tool.retries is not None and not (isinstance(tool.retries, int) and tool.retries >= 0):
        problems.append(f"retries must be an int >= 0 or None, got {tool.retries!r}")
    if tool.validator is not None and not callable(tool.validator):
        problems.append("validator is not callable")
    elif tool.validator is not None and not hasattr(tool.validator, "schema"):
        problems.append("validator needs the `schema` it validates")
    return problems


def _parameters_problems(parameters: Any) -> list[str]:
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
    return problems
