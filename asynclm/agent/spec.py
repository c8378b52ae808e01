"""The run specification: everything one agent run needs, fixed before it starts.

`Agent` builds it; `AgentRun` reads it and nothing else of the agent. A test or another
front end (a session, a remote backend) can build one directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import anyio

from asynclm.agent.modes import CallingMode
from asynclm.backends.protocol import BackendContext
from asynclm.engine.sampling import Sampler
from asynclm.tooling import Tool

__all__ = ["ConstraintFactory", "ContextFactory", "RunConstraint", "RunSpec"]

DEFAULT_MAX_EMPTY_TRAPS = 3


class RunConstraint(Protocol):
    """A run's decoding constraint, of a kind its backend applies (the local engine: a logit
    mask, `asynclm.engine.grammar.Constraint`); it forgets its state when text is injected."""

    def reset(self) -> None:
        """Forget what was sampled so far (the runtime injected text after it)."""
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
        tool_threads: Caps the sync tools running in worker threads (an agent's runs share it).
        max_tokens: The most tokens the model may write in the run.
        tool_timeout: Seconds before a call without its own timeout is abandoned and reported
            as an error; None for no limit.
        max_empty_traps: Traps in a row with nothing to wait for before the run ends.
    """

    tools: Mapping[str, Tool]
    mode: CallingMode
    sampler: Sampler
    open_context: ContextFactory = field(repr=False)
    make_constraint: ConstraintFactory = field(repr=False)
    tool_threads: anyio.CapacityLimiter = field(repr=False)
    max_tokens: int = 512
    tool_timeout: float | None = 60.0
    max_empty_traps: int = DEFAULT_MAX_EMPTY_TRAPS

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid run specification: " + "; ".join(problems))
        object.__setattr__(self, "tools", MappingProxyType(dict(self.tools)))


def _problems(spec: RunSpec) -> list[str]:
    problems = []
    wrong = [name for name, tool in spec.tools.items() if tool.name != name]
    if wrong:
        problems.append(f"tools must be keyed by their names, not {wrong}")
    if not isinstance(spec.mode, CallingMode):
        problems.append(f"mode must be a CallingMode, got {spec.mode!r}")
    if spec.max_tokens < 1:
        problems.append(f"max_tokens must be >= 1, got {spec.max_tokens}")
    if spec.tool_timeout is not None and not spec.tool_timeout > 0:
        problems.append(f"tool_timeout must be positive or None, got {spec.tool_timeout!r}")
    if spec.max_empty_traps < 1:
        problems.append(f"max_empty_traps must be >= 1, got {spec.max_empty_traps}")
    return problems
