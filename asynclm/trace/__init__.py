"""Traces of runs: events with monotonic times, Chrome trace files, summaries and charts.

Generic (nothing here knows about agents or tools) and free of torch; matplotlib is imported
only when a Gantt chart is drawn.

- `Trace` (`recorder.py`): records spans, instants and counters on lanes; thread-safe.
- `TraceEvent`, `SpanHandle` (`event.py`); lanes and their display order (`lanes.py`).
- Chrome Trace Event Format export and import (`chrome.py`): `to_chrome`, `from_chrome`.
- `summarize` (`summary.py`): JSON-ready figures for benchmarks.
- `render_timeline` (`timeline.py`): the trace as text rows for terminals.
- `draw_gantt` (`gantt.py`): the trace as a Gantt chart PNG.
- `ideal_makespan` (`schedule.py`): the shortest time a single writer can finish chains of
  calls in, the lower bound a run's trace is compared with.
"""

from asynclm.trace.chrome import ChromeTrace, parse_chrome, to_chrome
from asynclm.trace.event import UNENDED_ARG, EventKind, SpanHandle, TraceEvent
from asynclm.trace.gantt import CATEGORY_COLOURS, draw_gantt
from asynclm.trace.lanes import MODEL_LANE, is_model_lane, lane_order
from asynclm.trace.paths import writable_path
from asynclm.trace.recorder import Trace, from_chrome
from asynclm.trace.schedule import Step, ideal_makespan
from asynclm.trace.summary import summarize
from asynclm.trace.timeline import render_timeline

__all__ = [
    "CATEGORY_COLOURS",
    "MODEL_LANE",
    "UNENDED_ARG",
    "ChromeTrace",
    "EventKind",
    "SpanHandle",
    "Step",
    "Trace",
    "TraceEvent",
    "draw_gantt",
    "from_chrome",
    "ideal_makespan",
    "is_model_lane",
    "lane_order",
    "parse_chrome",
    "render_timeline",
    "summarize",
    "to_chrome",
    "writable_path",
]
