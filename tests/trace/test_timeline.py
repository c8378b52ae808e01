"""The text timeline: one row per lane, for terminals."""

from asynclm.trace import Trace, TraceEvent, render_timeline


def test_rows_show_writing_waiting_calls_and_interrupts() -> None:
    trace = Trace("run")
    for event in (
        TraceEvent("generate", "decode", "model", 0.0, 0.5),
        TraceEvent("dispatch", "call", "model", 0.25),
        TraceEvent("slow", "call", "tool:slow#a", 0.25, 0.75),
        TraceEvent("trap", "trap", "model", 0.5, 0.75),
        TraceEvent("interrupt", "interrupt", "model", 0.75),
        TraceEvent("generate", "decode", "model", 0.75, 1.0),
    ):
        trace.add(event)
    assert render_timeline(trace, width=8).splitlines() == [
        "      model |==>=..!=|",
        "tool:slow#a |  ####  |",
        "             0 s1.00 s",
    ]


def test_an_empty_trace_says_so() -> None:
    assert render_timeline(Trace()) == "(empty trace)"
