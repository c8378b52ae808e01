"""Trace recording, Chrome trace export/import, summary and the Gantt PNG."""

from __future__ import annotations

import json
import struct
import sys
import threading
from pathlib import Path

import anyio
import pytest

from asynclm.trace import (
    Trace,
    TraceEvent,
    draw_gantt,
    from_chrome,
    lane_order,
    summarize,
    to_chrome,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def synthetic_run() -> Trace:
    """A model lane and four tool lanes, as an async run would record them."""
    trace = Trace("synthetic")
    trace.add(TraceEvent("prefill", "prefill", "model", 0.0, 0.20, {"tokens": 48}))
    t = 0.20
    for i, (tool, latency) in enumerate(
        [("get_weather", 0.5), ("search", 0.3), ("get_weather", 0.45), ("translate", 0.2)]
    ):
        trace.add(TraceEvent("decode", "decode", "model", t, t + 0.08, {"tokens": 6}))
        trace.add(TraceEvent(f"w{i}", "dispatch", "model", t + 0.08))
        trace.add(TraceEvent(tool, "call", f"tool:{tool}#w{i}", t + 0.08, t + 0.08 + latency))
        t += 0.08
    trace.add(TraceEvent("trap", "trap", "model", t, t + 0.15))
    for i, at in enumerate([0.55, 0.62, 0.68, 0.80]):
        trace.add(TraceEvent(f"w{i}", "interrupt", "model", at, None, {"ok": True}))
    trace.add(TraceEvent("decode", "decode", "model", t + 0.15, t + 0.6, {"tokens": 40}))
    return trace


# -- recording -------------------------------------------------------------------------------------


def test_span_records_times_category_lane_and_args(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    clock.advance(1.0)
    with trace.span("get_weather", category="call", lane="tool:get_weather#w1", city="Paris"):
        clock.advance(0.25)
    (event,) = trace.events
    assert event == TraceEvent(
        "get_weather", "call", "tool:get_weather#w1", 1.0, 1.25, {"city": "Paris"}, "span"
    )
    assert event.duration == pytest.approx(0.25)
    assert event.is_span and not event.unended


def test_category_defaults_to_name_and_lane_to_model(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    with trace.span("decode"):
        clock.advance(0.1)
    assert trace.events[0].category == "decode"
    assert trace.events[0].lane == "model"


def test_begin_end_merges_args_and_rejects_double_end(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    handle = trace.begin("search", category="call", lane="tool:search#s", query="x")
    clock.advance(0.5)
    event = trace.end(handle, ok=True, size=3)
    assert event.args == {"query": "x", "ok": True, "size": 3}
    assert (event.start, event.end) == (0.0, 0.5)
    with pytest.raises(ValueError, match="not open"):
        trace.end(handle)
    with pytest.raises(ValueError, match="not open"):
        Trace().end(handle)


def test_exception_in_span_is_noted_and_reraised(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    with pytest.raises(KeyError), trace.span("flaky", category="call", lane="tool:flaky#f"):
        raise KeyError("boom")
    assert trace.events[0].args == {"error": "KeyError"}
    assert trace.num_open == 0


def test_nested_and_overlapping_spans_sorted_by_start(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    outer = trace.begin("trap", lane="model")  # 0.0 .. 1.0
    clock.advance(0.1)
    a = trace.begin("a", category="call", lane="tool:a#1")  # 0.1 .. 0.7
    clock.advance(0.1)
    with trace.span("b", category="call", lane="tool:b#2"):  # 0.2 .. 0.4  (nested in a)
        clock.advance(0.2)
    trace.instant("i", category="interrupt")  # 0.4
    clock.advance(0.3)
    trace.end(a)
    clock.advance(0.3)
    trace.end(outer)
    names = [(e.name, e.start, e.end) for e in trace.events]
    assert names == [
        ("trap", 0.0, pytest.approx(1.0)),
        ("a", pytest.approx(0.1), pytest.approx(0.7)),
        ("b", pytest.approx(0.2), pytest.approx(0.4)),
        ("i", pytest.approx(0.4), None),
    ]


def test_ties_keep_recording_order(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    first = trace.begin("first")
    trace.instant("second")
    trace.instant("third")
    clock.advance(0.1)
    trace.end(first)
    assert [e.name for e in trace.events] == ["first", "second", "third"]


def test_unended_spans_are_closed_at_snapshot_and_flagged(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    handle = trace.begin("slow", category="call", lane="tool:slow#1", city="Oslo")
    clock.advance(2.0)
    (event,) = trace.events
    assert event.unended and event.end == 2.0 and event.args == {"city": "Oslo"}
    assert trace.num_open == 1 and len(trace) == 1
    clock.advance(1.0)
    assert trace.events[0].end == 3.0
    trace.end(handle)
    assert not trace.events[0].unended
    assert trace.num_open == 0


def test_instants_and_counters(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    clock.advance(0.3)
    interrupt = trace.instant("w1", category="interrupt", value="sunny")
    counter = trace.counter("pending", calls=2)
    assert interrupt.kind == "instant" and interrupt.end is None
    assert interrupt.start == pytest.approx(0.3)
    assert counter.kind == "counter" and counter.category == "counter"
    assert counter.args == {"calls": 2}
    with pytest.raises(ValueError, match="numbers"):
        trace.counter("pending", calls="two")
    with pytest.raises(ValueError, match="at least one"):
        trace.counter("pending")


def test_bad_events_raise_value_error() -> None:
    with pytest.raises(ValueError, match="end >= start"):
        TraceEvent("x", "call", "model", 1.0, 0.5)
    with pytest.raises(ValueError, match="no end"):
        TraceEvent("x", "counter", "model", 1.0, 2.0, kind="counter")
    with pytest.raises(ValueError, match="non-empty"):
        TraceEvent("", "call", "model", 1.0)
    with pytest.raises(ValueError, match="finite"):
        TraceEvent("x", "call", "model", float("nan"))
    trace = Trace()
    with pytest.raises(ValueError, match="non-empty"):
        trace.begin("x", lane="")
    with pytest.raises(ValueError, match="reserved"):
        trace.instant("x", unended=True)
    with pytest.raises(ValueError, match="TraceEvent"):
        trace.add(("x", 1.0))  # type: ignore[arg-type]


def test_recording_from_many_threads() -> None:
    trace = Trace()
    num_threads, per_thread = 8, 200
    barrier = threading.Barrier(num_threads)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            with trace.span("call", lane=f"tool:t#{k}", i=i):
                trace.instant("tick", lane=f"tool:t#{k}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(num_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = trace.events
    assert len(events) == 2 * num_threads * per_thread
    assert [e.start for e in events] == sorted(e.start for e in events)
    for k in range(num_threads):
        spans = [e for e in events if e.lane == f"tool:t#{k}" and e.is_span]
        assert [s.args["i"] for s in spans] == list(range(per_thread))
        assert all(s.end is not None and s.end >= s.start for s in spans)
    assert trace.num_open == 0


@pytest.mark.anyio
async def test_recording_from_event_loop_and_worker_threads() -> None:
    trace = Trace()

    def blocking_tool() -> None:
        with trace.span("sync_tool", category="call", lane="tool:sync_tool#s"):
            pass

    async def async_tool(i: int) -> None:
        with trace.span("async_tool", category="call", lane=f"tool:async_tool#a{i}"):
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(async_tool, i)
        tg.start_soon(anyio.to_thread.run_sync, blocking_tool)
        with trace.span("decode"):
            await anyio.sleep(0.005)
    assert len(trace.events) == 5 and trace.num_open == 0
    assert trace.lanes[0] == "model"


def test_lane_order_puts_model_lanes_first() -> None:
    events = [
        TraceEvent("c", "call", "tool:b#1", 0.0, 1.0),
        TraceEvent("c", "call", "tool:a#2", 0.5, 1.0),
        TraceEvent("d", "decode", "model", 0.7, 0.8),
        TraceEvent("u", "user", "user", 0.1),
    ]
    assert lane_order(events) == ("model", "tool:b#1", "user", "tool:a#2")


# -- Chrome trace ----------------------------------------------------------------------------------


def test_chrome_json_structure_and_units() -> None:
    trace = synthetic_run()
    data = to_chrome(trace)
    json.dumps(data)  # JSON-ready
    events = data["traceEvents"]
    meta = [e for e in events if e["ph"] == "M"]
    names = {e["args"]["name"]: e["tid"] for e in meta if e["name"] == "thread_name"}
    assert list(names) == list(trace.lanes)
    assert names["model"] == 1
    assert sorted(names.values()) == list(range(1, len(names) + 1))
    assert all(e["pid"] == 1 for e in events)
    complete = [e for e in events if e["ph"] == "X"]
    instants = [e for e in events if e["ph"] == "i"]
    assert len(complete) == sum(1 for e in trace.events if e.is_span)
    assert len(instants) == 8
    for e in complete:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= e.keys()
    prefill = next(e for e in complete if e["name"] == "prefill")
    assert prefill["ts"] == 0.0 and prefill["dur"] == pytest.approx(200_000.0)  # microseconds
    assert prefill["args"] == {"tokens": 48} and prefill["cat"] == "prefill"
    call = next(e for e in complete if e["name"] == "search")
    assert call["tid"] == names["tool:search#w1"]
    assert call["ts"] == pytest.approx(360_000.0) and call["dur"] == pytest.approx(300_000.0)
    assert all(e["s"] == "t" and "dur" not in e for e in instants)


def test_chrome_marks_unended_spans(clock: FakeClock) -> None:
    trace = Trace(clock=clock)
    trace.begin("slow", category="call", lane="tool:slow#1")
    clock.advance(0.5)
    (event,) = [e for e in to_chrome(trace)["traceEvents"] if e["ph"] == "X"]
    assert event["args"] == {"unended": True} and event["dur"] == pytest.approx(500_000.0)


def test_save_load_round_trip(tmp_path: Path, clock: FakeClock) -> None:
    trace = synthetic_run()
    trace.add(TraceEvent("pending", "counter", "model", 0.3, None, {"calls": 2}, "counter"))
    trace.add(
        TraceEvent(
            "odd", "call", "tool:odd#1", 0.1234567, 0.2345678, {"nested": {"a": [1, 2]}, "s": "é"}
        )
    )
    trace.add(TraceEvent("left", "call", "tool:left#1", 0.9, 1.1, unended=True))
    path = trace.save_chrome(tmp_path / "run.trace.json")
    loaded = Trace.load_chrome(path)
    assert loaded.name == "synthetic"
    assert loaded.lanes == trace.lanes
    assert len(loaded.events) == len(trace.events)
    for before, after in zip(trace.events, loaded.events, strict=True):
        assert (after.name, after.category, after.lane, after.kind, after.unended) == (
            before.name,
            before.category,
            before.lane,
            before.kind,
            before.unended,
        )
        assert after.args == before.args
        assert after.start == pytest.approx(before.start, abs=1e-6)
        if before.end is None:
            assert after.end is None
        else:
            assert after.end == pytest.approx(before.end, abs=1e-6)


def test_from_chrome_accepts_a_bare_list_and_unnamed_threads() -> None:
    trace = from_chrome(
        [
            {"name": "x", "ph": "X", "ts": 10, "dur": 5, "pid": 1, "tid": 7},
            {"name": "b", "ph": "B", "ts": 1, "pid": 1, "tid": 7},
        ]
    )
    (event,) = trace.events
    assert event.lane == "tid:7" and event.category == "x"
    assert (event.start, event.end) == (pytest.approx(10e-6), pytest.approx(15e-6))


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        Trace.load_chrome(bad)
    bad.write_text('{"events": []}')
    with pytest.raises(ValueError, match="traceEvents"):
        Trace.load_chrome(bad)
    bad.write_text('{"traceEvents": [{"name": "x", "ph": "X", "ts": 1}]}')
    with pytest.raises(ValueError, match="malformed"):
        Trace.load_chrome(bad)
    with pytest.raises(FileNotFoundError):
        Trace.load_chrome(tmp_path / "missing.json")


def test_save_into_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        synthetic_run().save_chrome(tmp_path / "no" / "such" / "trace.json")


# -- summary ---------------------------------------------------------------------------------------


def test_summarize() -> None:
    summary = summarize(synthetic_run())
    assert summary["makespan_s"] == pytest.approx(0.52 + 0.6)
    assert summary["busy_s"]["prefill"] == pytest.approx(0.2)
    assert summary["busy_s"]["decode"] == pytest.approx(4 * 0.08 + 0.45)
    assert summary["total_s"]["call"] == pytest.approx(0.5 + 0.3 + 0.45 + 0.2)
    assert summary["busy_s"]["call"] == pytest.approx(0.89 - 0.28)  # union of overlapping calls
    assert summary["spans_per_lane"]["model"] == 7
    assert summary["spans_per_lane"]["tool:search#w1"] == 1
    assert summary["instants"] == {"dispatch": 4, "interrupt": 4}
    assert summary["unended"] == 0
    json.dumps(summary)


def test_summarize_empty_trace() -> None:
    summary = summarize(Trace())
    assert summary["makespan_s"] == 0.0 and summary["busy_s"] == {}


# -- Gantt -----------------------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


def test_gantt_png_for_model_and_four_tool_lanes(tmp_path: Path) -> None:
    trace = synthetic_run()
    assert len(trace.lanes) == 5
    path = draw_gantt(trace, tmp_path / "gantt.png", title="synthetic run")
    width, height = png_size(path)
    assert path.stat().st_size > 10_000
    assert width > 800 and 200 < height < 800


def test_gantt_height_is_capped_for_many_lanes(tmp_path: Path) -> None:
    trace = Trace()
    for i in range(150):
        trace.add(
            TraceEvent(
                "call",
                "call",
                f"tool:very_long_tool_name_for_labels#w{i}",
                i * 0.01,
                i * 0.01 + 0.3,
            )
        )
    trace.add(TraceEvent("left", "call", "tool:left#1", 0.5, 0.9, unended=True))
    _, height = png_size(draw_gantt(trace, tmp_path / "many.png"))
    assert height <= 1500


def test_gantt_of_empty_trace(tmp_path: Path) -> None:
    png_size(draw_gantt(Trace(), tmp_path / "empty.png"))


def test_gantt_into_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        draw_gantt(synthetic_run(), tmp_path / "missing" / "gantt.png")


def test_gantt_without_matplotlib_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        draw_gantt(synthetic_run(), tmp_path / "gantt.png")
