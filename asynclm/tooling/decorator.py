"""`@tool`: a typed Python function as a `Tool`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from asynclm.tooling.results import DEFAULT_MAX_RESULT_CHARS
from asynclm.tooling.signature import describe_function
from asynclm.tooling.tool import Tool, is_coroutine_function

__all__ = ["tool"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def tool(func: F, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    latency: float | None = None,
    requires_approval: bool = False,
    retries: int | None = None,
) -> Callable[[F], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    latency: float | None = None,
    requires_approval: bool = False,
    retries: int | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turns a typed function into a `Tool`; usable bare (`@tool`) or with options.

    The JSON schema comes from the type hints (through pydantic); the description from the
    docstring's text before its first section, and each parameter's description from its
    "Args:" section. Parameters with defaults are optional. Calls are validated, and their
    arguments converted to the annotated types, by the pydantic model of the parameters.
    A first parameter annotated `RunContext[Deps]` receives the run's context (dependencies,
    call id, progress reports) and is not part of the schema.

    Args:
        func: The function (sync or async), when used bare.
        name: Tool name; defaults to the function's name.
        description: Overrides the docstring's summary.
        timeout: Seconds a call may run; None for no limit.
        max_result_chars: Cap on the formatted result.
        latency: Estimated seconds per call, stated to the model; None when unknown.
        requires_approval: Each call waits for the application's approval before it runs.
        retries: Failed calls allowed per run before the run ends (None: the agent's).

    Returns:
        The tool, or a decorator making one.

    Raises:
        ToolDefinitionError: Listing every problem found in the function at once.
    """

    def decorate(function: Callable[..., Any]) -> Tool:
        described = describe_function(function, name)
        return Tool(
            name=described.name,
            description=described.description if description is None else description,
            parameters=described.parameters,
            function=function,
            is_async=is_coroutine_function(function),
            timeout=timeout,
            max_result_chars=max_result_chars,
            latency=latency,
            validator=described.validator,
            takes_context=described.takes_context,
            requires_approval=requires_approval,
            retries=retries,
        )

    return decorate if func is None else decorate(func)
