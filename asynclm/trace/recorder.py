"""`Trace`: a thread-safe recorder of what happened during a run, and when.

A `Trace` records spans (a decode step, a tool call, a trap), instants (an interrupt injected)
and counters, each on a *lane* — "model" for the model's own work, "tool:get_weather#w1" for
one call. Times are seconds since the trace was created, read from a monotonic clock
(`time.perf_counter()` unless a test scripts time), so the trace is also the run's one clock.
It saves itself as Chrome trace JSON (`asynclm.trace.chrome`) and reads such files back.

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
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asynclm.trace.chrome import parse_chrome, to_chrome
from asynclm.trace.event import UNENDED_ARG, SpanHandle, TraceEvent
from asynclm.trace.lanes import MODEL_LANE, lane_order
from asynclm.trace.paths import writable_path

__all__ = ["Trace", "from_chrome"]


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


def from_chrome(data: Mapping[str, Any] | list[Any]) -> Trace:
    """Build a Trace from Chrome trace JSON (an object with "traceEvents", or a bare list).

    Raises:
        ValueError: If `data` is not Chrome trace JSON.
    """
    read = parse_chrome(data)
    trace = Trace(read.name)
    for event in read.events:
        trace.add(event)
    return trace
