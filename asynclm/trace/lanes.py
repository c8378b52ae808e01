"""Lanes: the rows of a trace ("model", "tool:get_weather#w1") and their display order."""

from __future__ import annotations

from collections.abc import Iterable

from asynclm.trace.event import TraceEvent

__all__ = ["MODEL_LANE", "is_model_lane", "lane_order"]

MODEL_LANE = "model"


def is_model_lane(lane: str) -> bool:
    """True for the model's own lanes: "model", "model:<x>" or "model#<x>"."""
    return lane == MODEL_LANE or lane.startswith((MODEL_LANE + ":", MODEL_LANE + "#"))


def lane_order(events: Iterable[TraceEvent]) -> tuple[str, ...]:
    """Lanes for display: model lanes first, then the others, each by first appearance."""
    first: dict[str, int] = {}
    for event in sorted(events, key=lambda e: e.start):
        first.setdefault(event.lane, len(first))
    return tuple(sorted(first, key=lambda lane: (not is_model_lane(lane), first[lane])))
