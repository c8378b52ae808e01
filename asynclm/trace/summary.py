"""Small JSON-ready figures of a trace, for benchmarks."""

from __future__ import annotations

import math
from typing import Any

from asynclm.trace.event import TraceEvent
from asynclm.trace.lanes import lane_order
from asynclm.trace.recorder import Trace

__all__ = ["summarize"]


def summarize(trace: Trace) -> dict[str, Any]:
    """Small JSON-ready figures for benchmarks.

    Returns:
        A dict with `makespan_s` (first event start to last event end), `busy_s` (per category,
        wall time covered by at least one span of it), `total_s` (per category, summed span
        durations: overlapping calls count each), `spans_per_lane`, `instants` (count per
        category) and `unended` (spans still open).
    """
    events = trace.events
    spans = [e for e in events if e.is_span]
    starts = [e.start for e in events]
    ends = [e.end if e.end is not None else e.start for e in events]
    by_category: dict[str, list[TraceEvent]] = {}
    for span in spans:
        by_category.setdefault(span.category, []).append(span)
    lanes_spans = {lane: sum(1 for s in spans if s.lane == lane) for lane in lane_order(events)}
    instants: dict[str, int] = {}
    for event in events:
        if event.kind == "instant":
            instants[event.category] = instants.get(event.category, 0) + 1
    return {
        "makespan_s": max(ends) - min(starts) if events else 0.0,
        "busy_s": {cat: _union_length(group) for cat, group in by_category.items()},
        "total_s": {cat: sum(s.duration for s in group) for cat, group in by_category.items()},
        "spans_per_lane": lanes_spans,
        "instants": instants,
        "unended": sum(1 for s in spans if s.unended),
    }


def _union_length(spans: list[TraceEvent]) -> float:
    """Length of the union of the spans' intervals."""
    total, reach = 0.0, -math.inf
    for start, end in sorted((s.start, s.start + s.duration) for s in spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
