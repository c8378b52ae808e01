"""Typed events streamed by `Agent.run_stream` as a run unfolds (times from run start)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text the model wrote (outside CML blocks)."""

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
    t: float


AgentEvent = TextDelta | CallDispatched | CallFinished | InterruptInjected | TrapStarted | TrapEnded
