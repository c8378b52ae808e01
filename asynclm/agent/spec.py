"""The run specification: everything one agent run needs, fixed before it starts.

`Agent` builds it; `AgentRun` reads it and nothing else of the agent. A test or another
front end (a session, a remote backend) can build one directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

from asynclm.agent.hooks import HookSet
from asynclm.agent.limits import UsageLimits, limit_problems
from asynclm.agent.modes import CallingMode
from asynclm.agent.output import OutputSpec
from asynclm.backends.protocol import BackendContext
from asynclm.engine.sampling import Sampler
from asynclm.tooling import Tool, ToolThreads

__all__ = ["ConstraintFactory", "ContextFactory", "RunConstraint", "RunSpec"]

DEFAULT_MAX_EMPTY_TRAPS = 3


class RunConstraint(Protocol):
    """A run's decoding constraint, of a kind its backend applies (the local engine: a logit
    mask, `asynclm.engine.grammar.Constraint`); it forgets its state when text is injected."""

    def reset(self) -> None:
        """Forget what was sampled so far (the runtime injected text after it)."""
        ...

    def rollback(self, num_tokens: int = 1) -> None:
        """Un-sample the last tokens (the runtime removed them from the context)."""
        ...


ContextFactory = Callable[[str], AbstractAsyncContextManager[BackendContext]]
"""`open_context(prompt)`: a context holding the whole prompt, ready for the assistant's turn
(its tokens are `prompt_pieces(...)` encoded); released when the block exits."""

ConstraintFactory = Callable[[], RunConstraint]
"""A new decoding constraint for one run."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What one agent run needs.

    Attributes:
        tools: The tools the model may call, by name (read-only).
        mode: The calling mode's strategy.
        sampler: How tokens are picked.
        open_context: Opens the run's context for a prompt (see `ContextFactory`).
        make_constraint: Makes the run's decoding constraint (called once per run).
        tool_threads: Caps the sync tools' worker threads, abandoned ones included (an agent's
            runs share it).
        max_tokens: The most tokens the model may write in the run.
        tool_timeout: Seconds before a call without its own timeout is abandoned and reported
            as an error; None for no limit.
        max_empty_traps: Traps in a row with nothing to wait for before the run ends.
        max_calls: The most call blocks of a run; None for no limit (see `UsageLimits`).
        max_seconds: The run's wall-time limit; None for none.
        tool_retries: Failed calls allowed per tool without retries of its own.
        output: How to read a structured answer; None for a text answer.
        make_answer_constraint: Makes the constraint a structured answer is written under
            (its JSON schema's grammar); None to write it unconstrained and only validate it.
        hooks: Called as the run unfolds.
        agent_name: The agent's name (for logs and spans).
        model_name: The model's name (for logs and spans).
    """

    tools: Mapping[str, Tool]
    mode: CallingMode
    sampler: Sampler
    open_context: ContextFactory = field(repr=False)
    make_constraint: ConstraintFactory = field(repr=False)
    tool_threads: ToolThreads = field(repr=False)
    max_tokens: int = 512
    tool_timeout: float | None = 60.0
    max_empty_traps: int = DEFAULT_MAX_EMPTY_TRAPS
    max_calls: int | None = None
    max_seconds: float | None = None
    tool_retries: int = 3
    output: OutputSpec[Any] | None = None
    make_answer_constraint: ConstraintFactory | None = field(default=None, repr=False)
    hooks: HookSet = field(default_factory=HookSet, repr=False)
    agent_name: str = "agent"
    model_name: str = ""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid run specification: " + "; ".join(problems))
        object.__setattr__(self, "tools", MappingProxyType(dict(self.tools)))

    @property
    def limits(self) -> UsageLimits:
        """The run's usage limits."""
        return UsageLimits(self.max_tokens, self.max_calls, self.max_seconds, self.tool_retries)

    def with_limits(self, limits: UsageLimits) -> RunSpec:
        """This spec with other usage limits."""
        return replace(
            self,
            max_tokens=limits.max_tokens,
            max_calls=limits.max_calls,
            max_seconds=limits.max_seconds,
            tool_retries=limits.tool_retries,
        )

    def retries_of(self, tool_name: str) -> int:
        """Failed calls a tool may have in a run."""
        tool = self.tools.get(tool_name)
        own = tool.retries if tool is not None else None
        return own if own is not None else self.tool_retries


def _problems(spec: RunSpec) -> list[str]:
    problems = []
    wrong = [name for name, tool in spec.tools.items() if tool.name != name]
    if wrong:
        problems.append(f"tools must be keyed by their names, not {wrong}")
    if not isinstance(spec.mode, CallingMode):
        problems.append(f"mode must be a CallingMode, got {spec.mode!r}")
    if not isinstance(spec.tool_threads, ToolThreads):
        problems.append(
            f"tool_threads must be a ToolThreads, got {type(spec.tool_threads).__name__}"
        )
    problems += limit_problems(spec.max_tokens, spec.max_calls, spec.max_seconds, spec.tool_retries)
    if spec.tool_timeout is not None and not spec.tool_timeout > 0:
        problems.append(f"tool_timeout must be positive or None, got {spec.tool_timeout!r}")
    if spec.max_empty_traps < 1:
        problems.append(f"max_empty_traps must be >= 1, got {spec.max_empty_traps}")
    return problems
