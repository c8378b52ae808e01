"""What a run produces: call records, token usage, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal

from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.agent.output import OutputT
from asynclm.trace import Trace

Mode = Literal["async", "sync-parallel", "sync"]
MODES: tuple[Mode, ...] = ("async", "sync-parallel", "sync")

CANCELLED = "cancelled: the run ended before the call finished"


@dataclass(slots=True)
class CallRecord:
    """One tool call: what the model asked for, and what came of it (times from run start).

    Every call block the model writes gets a record, valid or not. When the run is over each
    record is finished: `ok` (a result) or not (`error` says why: the tool failed or timed
    out, the call was refused or denied, or the run ended first — "cancelled: ...").
    """

    id: str
    name: str
    arguments: dict[str, Any]
    body: str
    dispatched_at: float
    started_at: float | None = None
    finished_at: float | None = None
    injected_at: float | None = None
    result: Any = None
    result_text: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the tool returned a result."""
        return self.error is None and self.finished_at is not None

    @property
    def cancelled(self) -> bool:
        """Whether the run ended before the call finished (or started)."""
        return self.error == CANCELLED

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(slots=True)
class Usage:
    """Tokens of a run: prompt (prefilled for it / reused from cache), generated, injected."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    injected_tokens: int = 0
    interrupts: int = 0
    calls: int = 0
    inject_seconds: float = 0.0  # runtime work spent injecting (encoding, bookkeeping)


@dataclass(frozen=True, slots=True)
class RunResult(Generic[OutputT]):
    """The outcome of `Agent.run`.

    Attributes:
        output: The answer: its text for a text agent, the validated value for an agent
            with an `output_type`.
        calls: Every call, in dispatch order.
        timeline: The run's trace (Chrome-trace exportable, drawable as a Gantt chart).
        usage: Token counts.
        mode: The calling mode used.
        elapsed: Wall-clock seconds of the run.
        finish_reason: Why the run ended (see `asynclm.agent.limits`).
        transcript: The whole assistant turn as the model saw it (calls, interrupts included).
        errors: Problems of the run (refused calls, malformed blocks, invalid answers).
        text: The answer's text: what the model wrote after its last block or interrupt.
        interim: What the model wrote before its answer (e.g. "working on it" while calls
            ran), one entry per stretch between blocks and interrupts.
        messages: The whole conversation: the history the run was given, then this turn.
        new_messages: This run's messages: the user's, then the model's turn.
        first_token_at: Seconds from the run's start to its first generated token.
    """

    output: OutputT
    calls: tuple[CallRecord, ...]
    timeline: Trace
    usage: Usage
    mode: Mode
    elapsed: float
    finish_reason: str
    transcript: str = ""
    errors: tuple[str, ...] = field(default=())
    text: str = ""
    interim: tuple[str, ...] = ()
    messages: tuple[UserMessage | AssistantMessage, ...] = ()
    new_messages: tuple[UserMessage | AssistantMessage, ...] = ()
    first_token_at: float | None = None

    def call(self, call_id: str) -> CallRecord:
        """The record of the call with this id.

        Raises:
            KeyError: No call has it.
        """
        for record in self.calls:
            if record.id == call_id:
                return record
        raise KeyError(f"no call with id {call_id!r}")
