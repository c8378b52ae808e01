"""Typed events streamed by `Agent.run_stream` as a run unfolds (times from run start).

Every event also goes to the agent's hooks (`asynclm.agent.hooks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text the model wrote outside CML blocks (interim text or the answer)."""

    text: str
    t: float


@dataclass(frozen=True, slots=True)
class CallDispatched:
    """The model closed a call block; the call is valid and handed to its tool."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    t: float


@dataclass(frozen=True, slots=True)
class ApprovalRequested:
    """A call of a tool that `requires_approval` waits for `run.approve(id)` / `run.deny(id)`
    (or the run's approver); generation goes on meanwhile."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    t: float


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The tool started running (at dispatch, at the trap in sync-parallel mode, or once
    approved)."""

    call_id: str
    name: str
    t: float


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A running tool reported progress (`RunContext.report_progress`)."""

    call_id: str
    name: str
    progress: float | None
    message: str
    t: float


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A tool returned (ok) or failed (error holds the message)."""

    call_id: str
    name: str
    ok: bool
    text: str
    t: float


@dataclass(frozen=True, slots=True)
class InterruptInjected:
    """An interrupt (a result, an error or a user message) entered the live context."""

    call_id: str
    text: str
    num_tokens: int
    t: float


@dataclass(frozen=True, slots=True)
class TrapStarted:
    """The model waits for results (pending call ids)."""

    pending: tuple[str, ...]
    t: float


@dataclass(frozen=True, slots=True)
class TrapEnded:
    """The wait is over (a result is in, or every one the mode waits for)."""

    t: float


@dataclass(frozen=True, slots=True)
class OutputRetry:
    """A structured answer failed validation; the error goes back to the model."""

    attempt: int
    error: str
    t: float


AgentEvent = (
    TextDelta
    | CallDispatched
    | ApprovalRequested
    | CallStarted
    | CallProgress
    | CallFinished
    | InterruptInjected
    | TrapStarted
    | TrapEnded
    | OutputRetry
)
