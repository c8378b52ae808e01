"""A small trace recorder for agent runs, with Chrome trace export.

A `Trace` records what happened during a run and when: spans (a decode step, a tool call, a trap)
and instants (an interrupt injected), each on a *lane* — "model" for the model's own work,
"tool:get_weather#w1" for one call. Times are seconds since the trace was created, read from
`time.perf_counter()`, so they are monotonic and precise.

The trace exports to the Chrome Trace Event Format (the JSON that Perfetto and chrome://tracing
open; lanes become threads), reads such files back, and summarizes itself for benchmarks. The
Gantt chart lives in `asynclm.agent.gantt`. No dependency beyond the standard library.

    trace = Trace()
    with trace.span("decode", lane="model", tokens=12):
        ...
    h = trace.begin("get_weather", category="call", lane="tool:get_weather#w1", city="Paris")
    trace.end(h, ok=True)
    trace.instant("w1", category="interrupt", lane="model")
    trace.save_chrome("run.trace.json")
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "MODEL_LANE",
    "EventKind",
    "SpanHandle",
    "Trace",
    "TraceEvent",
    "from_chrome",
    "is_model_lane",
    "lane_order",
    "summarize",
    "to_chrome",
    "writable_path",
]

EventKind = Literal["span", "instant", "counter"]

MODEL_LANE = "model"
UNENDED_ARG = "unended"  # reserved arg name: flags, in Chrome JSON, a span closed at export
_PID = 1
_US = 1e6  # Chrome trace times are microseconds


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


@dataclass(slots=True)
class _OpenSpan:
    seq: int
    name: str
    category: str
    lane: str
    start: float
    args: dict[str, Any]


class Trace:
    """A thread-safe, append-only record of spans, instants and counters.

    Args:
        name: A label for the whole trace (the process name in Chrome trace viewers).
        clock: A monotonic clock in seconds; `time.perf_counter` unless a test scripts time.
    """

    def __init__(self, name: str = "asynclm", *, clock: Callable[[], float] | None = None) -> None:
        self.name = name
        self._clock = clock or time.perf_counter
        self._t0 = self._clock()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._done: list[tuple[int, TraceEvent]] = []
        self._open: dict[int, _OpenSpan] = {}

    def now(self) -> float:
        """Seconds since the trace started."""
        return self._clock() - self._t0

    # -- recording -----------------------------------------------------------------------------

    def begin(
        self, name: str, *, category: str | None = None, lane: str = MODEL_LANE, **args: Any
    ) -> SpanHandle:
        """Open a span now and return its handle.

        Args:
            name: What the span is.
            category: Its category; defaults to `name`.
            lane: The row it belongs to.
            **args: Extra data; `end` may add more.

        Returns:
            A handle to pass to `end`.
        """
        _check_names(name, lane, args)
        start = self.now()
        with self._lock:
            seq = next(self._seq)
            self._open[seq] = _OpenSpan(seq, name, category or name, lane, start, dict(args))
        return SpanHandle(seq, name, lane)

    def end(self, handle: SpanHandle, **args: Any) -> TraceEvent:
        """Close an open span now, adding `args` to its data.

        Raises:
            ValueError: If the span was already ended or belongs to another trace.
        """
        _check_names(handle.name, handle.lane, args)
        end = self.now()
        with self._lock:
            span = self._open.pop(handle.id, None)
            if span is None or span.name != handle.name or span.lane != handle.lane:
                raise ValueError(
                    f"span {handle.name!r} on lane {handle.lane!r} is not open "
                    "(already ended, or from another trace)"
                )
            event = _close(span, end, args, unended=False)
            self._done.append((span.seq, event))
        return event

    @contextmanager
    def span(
        self, name: str, *, category: str | None = None, lane: str = MODEL_LANE, **args: Any
    ) -> Iterator[SpanHandle]:
        """Record a span around a block; an exception escaping it is noted as `error=<type>`.

        Args:
            name: What the span is.
            category: Its category; defaults to `name`.
            lane: The row it belongs to.
            **args: Extra data.
        """
        handle = self.begin(name, category=category, lane=lane, **args)
        try:
            yield handle
        except BaseException as exc:
            self.end(handle, error=type(exc).__name__)
            raise
        self.end(handle)

    def instant(
        self, name: str, *, category: str | None = None, lane: str = MODEL_LANE, **args: Any
    ) -> TraceEvent:
        """Record a point event now (an interrupt injected, a call dispatched).

        Args:
            name: What happened.
            category: Its category; defaults to `name`.
            lane: The row it belongs to.
            **args: Extra data.
        """
        _check_names(name, lane, args)
        event = TraceEvent(name, category or name, lane, self.now(), None, dict(args), "instant")
        self.add(event)
        return event

    def counter(self, name: str, *, lane: str = MODEL_LANE, **values: float) -> TraceEvent:
        """Record the current value of one or more numeric series (batch size, pending calls).

        Raises:
            ValueError: If no value is given or a value is not a number.
        """
        if not values:
            raise ValueError(f"counter {name!r} needs at least one value, e.g. pending=3")
        bad = {
            k: v for k, v in values.items() if isinstance(v, bool) or not isinstance(v, int | float)
        }
        if bad:
            raise ValueError(f"counter values must be numbers, got {bad!r}")
        event = TraceEvent(name, "counter", lane, self.now(), None, dict(values), "counter")
        self.add(event)
        return event

    def add(self, event: TraceEvent) -> None:
        """Append an already built event (times measured elsewhere, or read from a file)."""
        if not isinstance(event, TraceEvent):
            raise ValueError(f"expected a TraceEvent, got {type(event).__name__}")
        with self._lock:
            self._done.append((next(self._seq), event))

    # -- reading -------------------------------------------------------------------------------

    @property
    def events(self) -> tuple[TraceEvent, ...]:
        """A snapshot of all events sorted by start (ties in recording order).

        Spans still open are included, closed at the snapshot time and flagged `unended`.
        """
        now = self.now()
        with self._lock:
            items = list(self._done)
            items += [(s.seq, _close(s, now, {}, unended=True)) for s in self._open.values()]
        items.sort(key=lambda item: (item[1].start, item[0]))
        return tuple(event for _, event in items)

    @property
    def num_open(self) -> int:
        """How many spans are open now."""
        with self._lock:
            return len(self._open)

    @property
    def lanes(self) -> tuple[str, ...]:
        """Lanes in display order: see `lane_order`."""
        return lane_order(self.events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._done) + len(self._open)

    # -- files ---------------------------------------------------------------------------------

    def save_chrome(self, path: str | os.PathLike[str]) -> Path:
        """Write the trace as Chrome trace JSON (open it in https://ui.perfetto.dev).

        Non-JSON arg values are written as their `str()`.

        Returns:
            The path written.

        Raises:
            FileNotFoundError: If the folder of `path` does not exist.
        """
        path = writable_path(path)
        path.write_text(json.dumps(to_chrome(self), default=str), encoding="utf-8")
        return path

    @classmethod
    def load_chrome(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a Chrome trace JSON file (as written by `save_chrome`) back into a Trace.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: If it is not Chrome trace JSON.
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err})") from err
        return from_chrome(data)


def _check_names(name: str, lane: str, args: Mapping[str, Any]) -> None:
    if not isinstance(name, str) or not name or not isinstance(lane, str) or not lane:
        raise ValueError(f"trace events need a non-empty name and lane, got {name!r}, {lane!r}")
    if UNENDED_ARG in args:
        raise ValueError(f"{UNENDED_ARG!r} is a reserved trace arg name")


def _close(span: _OpenSpan, end: float, args: Mapping[str, Any], *, unended: bool) -> TraceEvent:
    return TraceEvent(
        span.name,
        span.category,
        span.lane,
        span.start,
        max(end, span.start),
        {**span.args, **args},
        "span",
        unended,
    )


def is_model_lane(lane: str) -> bool:
    """True for the model's own lanes: "model", "model:<x>" or "model#<x>"."""
    return lane == MODEL_LANE or lane.startswith((MODEL_LANE + ":", MODEL_LANE + "#"))


def lane_order(events: Iterable[TraceEvent]) -> tuple[str, ...]:
    """Lanes for display: model lanes first, then the others, each by first appearance."""
    first: dict[str, int] = {}
    for event in sorted(events, key=lambda e: e.start):
        first.setdefault(event.lane, len(first))
    return tuple(sorted(first, key=lambda lane: (not is_model_lane(lane), first[lane])))


# -- Chrome Trace Event Format ---------------------------------------------------------------------


def to_chrome(trace: Trace) -> dict[str, Any]:
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


def from_chrome(data: Mapping[str, Any] | list[Any]) -> Trace:
    """Build a Trace from Chrome trace JSON (an object with "traceEvents", or a bare list).

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
    trace = Trace(_process_name(raw))
    lanes = _thread_names(raw)
    for item in raw:
        event = _parse_event(item, lanes)
        if event is not None:
            trace.add(event)
    return trace


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


def writable_path(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path whose folder exists.

    Raises:
        FileNotFoundError: If the folder does not exist (with a message that says so).
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: folder {folder} does not exist (create it first)"
        )
    return path
