"""One recorded event of a trace, and the handle of an open span."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["UNENDED_ARG", "EventKind", "SpanHandle", "TraceEvent"]

EventKind = Literal["span", "instant", "counter"]

UNENDED_ARG = "unended"  # reserved arg name: flags, in Chrome JSON, a span closed at export


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One recorded event.

    Attributes:
        name: What happened ("decode", "get_weather", a call id...).
        category: Its kind for colouring and totals ("decode", "call", "interrupt", "trap",
            "prefill", "counter"...).
        lane: The row it belongs to ("model", "tool:get_weather#w1").
        start: Seconds since the trace started.
        end: Seconds since the trace started; None for instants and counters.
        args: Extra data (JSON-friendly values export best).
        kind: "span", "instant" or "counter"; inferred from `end` when not given.
        unended: True for a span still open when the snapshot was taken, closed at that time.
    """

    name: str
    category: str
    lane: str
    start: float
    end: float | None = None
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    kind: EventKind | None = None
    unended: bool = False

    def __post_init__(self) -> None:
        if self.kind is None:
            object.__setattr__(self, "kind", "span" if self.end is not None else "instant")
        _check_event(self)

    @property
    def duration(self) -> float:
        """Seconds the span lasted; 0 for instants and counters."""
        return 0.0 if self.end is None else self.end - self.start

    @property
    def is_span(self) -> bool:
        return self.kind == "span"


def _check_event(event: TraceEvent) -> None:
    if not event.name or not event.lane or not event.category:
        raise ValueError(f"trace events need a non-empty name, category and lane: {event!r}")
    if event.kind not in ("span", "instant", "counter"):
        raise ValueError(f"event kind must be span, instant or counter, got {event.kind!r}")
    if not math.isfinite(event.start):
        raise ValueError(f"event start must be a finite number, got {event.start!r}")
    if event.kind == "span":
        if event.end is None or not math.isfinite(event.end) or event.end < event.start:
            raise ValueError(
                f"span {event.name!r} needs a finite end >= start {event.start}, got {event.end!r}"
            )
    elif event.end is not None:
        raise ValueError(f"a {event.kind} event has no end, got end={event.end!r}")


@dataclass(frozen=True, slots=True)
class SpanHandle:
    """Identifies an open span; pass it to `Trace.end`."""

    id: int
    name: str
    lane: str
