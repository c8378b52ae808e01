"""The Chrome Trace Event Format: the JSON Perfetto and chrome://tracing open.

Lanes become threads of one process; spans complete events ("X"), instants thread-scoped
instant events ("i"), counters counter events ("C"); times are microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from asynclm.trace.event import UNENDED_ARG, EventKind, TraceEvent
from asynclm.trace.lanes import lane_order

__all__ = ["ChromeTrace", "TraceLike", "parse_chrome", "to_chrome"]

_PID = 1
_US = 1e6  # Chrome trace times are microseconds


class TraceLike(Protocol):
    """What `to_chrome` reads of a trace (a `Trace` has both)."""

    @property
    def name(self) -> str: ...

    @property
    def events(self) -> Sequence[TraceEvent]: ...


@dataclass(frozen=True, slots=True)
class ChromeTrace:
    """A Chrome trace read back: its process name and its events, in file order."""

    name: str
    events: tuple[TraceEvent, ...]


def to_chrome(trace: TraceLike) -> dict[str, Any]:
    """The trace as a Chrome Trace Event Format object (JSON-ready).

    Spans become complete events ("ph": "X"), instants thread-scoped instant events ("i"),
    counters counter events ("C"); times are microseconds since the trace started. Each lane is a
    thread (stable tid by display order, named by "thread_name" metadata) in process 1.
    Spans still open are closed now and carry the arg `unended: true`.
    """
    events = trace.events
    tids = {lane: i + 1 for i, lane in enumerate(lane_order(events))}
    out: list[dict[str, Any]] = [_meta("process_name", 0, name=trace.name)]
    for lane, tid in tids.items():
        out.append(_meta("thread_name", tid, name=lane))
        out.append(_meta("thread_sort_index", tid, sort_index=tid))
    out += [_chrome_event(event, tids[event.lane]) for event in events]
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def _meta(name: str, tid: int, /, **args: Any) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": _PID, "tid": tid, "args": args}


def _us(seconds: float) -> float:
    return round(seconds * _US, 3)


def _chrome_event(event: TraceEvent, tid: int) -> dict[str, Any]:
    args = dict(event.args)
    if event.unended:
        args[UNENDED_ARG] = True
    out: dict[str, Any] = {
        "name": event.name,
        "cat": event.category,
        "pid": _PID,
        "tid": tid,
        "ts": _us(event.start),
        "args": args,
    }
    if event.kind == "span":
        out |= {"ph": "X", "dur": _us(event.duration)}
    elif event.kind == "instant":
        out |= {"ph": "i", "s": "t"}
    else:
        out["ph"] = "C"
    return out


def parse_chrome(data: Mapping[str, Any] | list[Any]) -> ChromeTrace:
    """Read Chrome trace JSON (an object with "traceEvents", or a bare list).

    Complete ("X"), instant ("i"/"I") and counter ("C") events are read; lanes come from
    "thread_name" metadata (or "tid:<n>" without it); other phases are skipped.

    Raises:
        ValueError: If `data` is not Chrome trace JSON.
    """
    raw = data.get("traceEvents") if isinstance(data, Mapping) else data
    if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
        raise ValueError(
            "not Chrome trace JSON: expected a list of event objects under 'traceEvents'"
        )
    lanes = _thread_names(raw)
    parsed = (_parse_event(item, lanes) for item in raw)
    return ChromeTrace(_process_name(raw), tuple(e for e in parsed if e is not None))


def _process_name(raw: list[Mapping[str, Any]]) -> str:
    for item in raw:
        if item.get("ph") == "M" and item.get("name") == "process_name":
            return str(item.get("args", {}).get("name", "asynclm"))
    return "asynclm"


def _thread_names(raw: list[Mapping[str, Any]]) -> dict[tuple[Any, Any], str]:
    return {
        (item.get("pid"), item.get("tid")): str(item.get("args", {}).get("name"))
        for item in raw
        if item.get("ph") == "M" and item.get("name") == "thread_name"
    }


def _parse_event(item: Mapping[str, Any], lanes: dict[tuple[Any, Any], str]) -> TraceEvent | None:
    ph = item.get("ph")
    if ph not in ("X", "i", "I", "C"):
        return None
    try:
        name, start = str(item["name"]), float(item["ts"]) / _US
        end = start + float(item["dur"]) / _US if ph == "X" else None
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed Chrome trace event {dict(item)!r}: {err}") from err
    args = dict(item.get("args") or {})
    unended = ph == "X" and args.pop(UNENDED_ARG, False) is True
    kind: EventKind = "span" if ph == "X" else "counter" if ph == "C" else "instant"
    lane = lanes.get((item.get("pid"), item.get("tid")), f"tid:{item.get('tid')}")
    category = str(item.get("cat") or ("counter" if kind == "counter" else name))
    return TraceEvent(name, category, lane, start, end, args, kind, unended)


# -- summary ---------------------------------------------------------------------------------------
