"""What a run produces: call records, token usage, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from asynclm.trace import Trace

Mode = Literal["async", "sync-parallel", "sync"]
MODES: tuple[Mode, ...] = ("async", "sync-parallel", "sync")


@dataclass(slots=True)
class CallRecord:
    """One tool call: what the model asked for, and what came of it (times from run start)."""

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
        return self.error is None and self.finished_at is not None

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
    inject_seconds: float = 0.0  # runtime work spent injecting (encoding, bookkeeping)


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of `Agent.run`.

    Attributes:
        output: the answer: the text the model wrote outside CML blocks.
        calls: every call, in dispatch order.
        timeline: the run's trace (Chrome-trace exportable, drawable as a Gantt chart).
        usage: token counts.
        mode: the calling mode used.
        elapsed: wall-clock seconds of the run.
        finish_reason: why generation ended ("eos", "length", "stop").
        transcript: the whole assistant turn as the model saw it (calls and interrupts included).
    """

    output: str
    calls: tuple[CallRecord, ...]
    timeline: Trace
    usage: Usage
    mode: Mode
    elapsed: float
    finish_reason: str
    transcript: str = ""
    errors: tuple[str, ...] = field(default=())

    def call(self, call_id: str) -> CallRecord:
        for record in self.calls:
            if record.id == call_id:
                return record
        raise KeyError(f"no call with id {call_id!r}")
