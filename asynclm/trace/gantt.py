"""Draw a `Trace` as a Gantt chart PNG: one row per lane, time in seconds across.

The model's lanes are on top, then tool lanes in order of first appearance. Spans are bars
coloured by category; instants are markers (interrupt injections as large red triangles). Spans
still open when drawn are hatched. matplotlib is imported only when drawing, through its Agg
canvas, so importing this module costs nothing and no global backend is switched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asynclm.trace.event import TraceEvent
from asynclm.trace.lanes import lane_order
from asynclm.trace.paths import writable_path
from asynclm.trace.recorder import Trace

__all__ = ["CATEGORY_COLOURS", "draw_gantt"]

CATEGORY_COLOURS = {
    "prefill": "#9467bd",
    "decode": "#1f77b4",
    "call": "#ff7f0e",
    "trap": "#7f7f7f",
    "interrupt": "#d62728",
    "dispatch": "#2ca02c",
}
_SPARE_COLOURS = ("#8c564b", "#e377c2", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a")
_WIDTH_IN = 12.0
_ROW_IN = 0.35  # figure height per lane, until the cap
_MAX_HEIGHT_IN = 14.0
_BAR_HEIGHT = 0.6  # in row units
_MIN_BAR_FRACTION = 0.002  # of the time axis, so zero-length spans stay visible
_MAX_LABEL_CHARS = 32


def draw_gantt(trace: Trace, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Write a Gantt chart of the trace's spans and instants as a PNG.

    Counters are not drawn. The figure grows with the number of lanes up to a fixed height;
    beyond that rows get thinner and lane labels smaller (and, if needed, only every k-th).

    Args:
        trace: The recorded run.
        path: Where to write the PNG; its folder must exist.
        title: A title above the chart.

    Returns:
        The path written.

    Raises:
        ImportError: If matplotlib is not installed.
        FileNotFoundError: If the folder of `path` does not exist.
    """
    path = writable_path(path)
    figure_cls, canvas_cls = _load_matplotlib()
    events = [e for e in trace.events if e.kind != "counter"]
    lanes = lane_order(events)
    fig = figure_cls(figsize=(_WIDTH_IN, _figure_height(len(lanes))), dpi=100)
    canvas_cls(fig)
    ax = fig.add_subplot()
    if events:
        _draw_events(ax, events, lanes)
        _style_axes(ax, lanes, fig.get_figheight())
    else:
        ax.text(0.5, 0.5, "no events", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel("time (s)")
    if title:
        ax.set_title(title)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def _load_matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "draw_gantt needs matplotlib: install it with `pip install matplotlib`"
        ) from err
    return Figure, FigureCanvasAgg


def _figure_height(num_lanes: int) -> float:
    return min(_MAX_HEIGHT_IN, 1.6 + _ROW_IN * max(num_lanes, 1))


def _colours(categories: Sequence[str]) -> dict[str, str]:
    """A colour per category: fixed ones for the runtime's categories, spares for the rest."""
    spare = iter(_SPARE_COLOURS * (len(categories) // len(_SPARE_COLOURS) + 1))
    return {cat: CATEGORY_COLOURS.get(cat) or next(spare) for cat in categories}


def _draw_events(ax: Any, events: list[TraceEvent], lanes: Sequence[str]) -> None:
    row = {lane: i for i, lane in enumerate(lanes)}
    categories = list(dict.fromkeys(e.category for e in events))
    colours = _colours(categories)
    span_end = max(e.end if e.end is not None else e.start for e in events)
    min_width = max(span_end, 1e-9) * _MIN_BAR_FRACTION
    for cat in categories:
        spans = [e for e in events if e.is_span and e.category == cat]
        instants = [e for e in events if not e.is_span and e.category == cat]
        if spans:
            spans.sort(key=lambda s: s.unended)  # the legend swatch is the first bar: unhatched
            _draw_spans(ax, spans, row, colours[cat], min_width)
        if instants:
            _draw_instants(ax, instants, row, colours[cat])
    ax.set_xlim(0.0, span_end * 1.02 or 1.0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _draw_spans(
    ax: Any, spans: list[TraceEvent], row: dict[str, int], colour: str, min_width: float
) -> None:
    ax.barh(
        [row[s.lane] for s in spans],
        [max(s.duration, min_width) for s in spans],
        left=[s.start for s in spans],
        height=_BAR_HEIGHT,
        color=colour,
        edgecolor="black",
        linewidth=0.3,
        hatch=["//" if s.unended else "" for s in spans],
        label=spans[0].category,
    )


def _draw_instants(ax: Any, instants: list[TraceEvent], row: dict[str, int], colour: str) -> None:
    is_interrupt = instants[0].category == "interrupt"
    ax.scatter(
        [e.start for e in instants],
        [row[e.lane] - (_BAR_HEIGHT / 2 if is_interrupt else 0.0) for e in instants],
        marker="v" if is_interrupt else "|",
        s=90 if is_interrupt else 200,
        color=colour,
        edgecolors="black" if is_interrupt else None,
        linewidths=0.6 if is_interrupt else 2.0,
        zorder=5,
        label=instants[0].category,
    )


def _style_axes(ax: Any, lanes: Sequence[str], height_in: float) -> None:
    points_per_row = height_in * 72 * 0.8 / len(lanes)
    font_size = max(4.0, min(9.0, 0.7 * points_per_row))
    step = max(1, round(5.0 / points_per_row)) if points_per_row < 5.0 else 1
    ticks = list(range(0, len(lanes), step))
    ax.set_yticks(ticks)
    ax.set_yticklabels([_short(lanes[i]) for i in ticks], fontsize=font_size)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # first lane (the model) on top
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    ax.set_axisbelow(True)


def _short(label: str) -> str:
    if len(label) <= _MAX_LABEL_CHARS:
        return label
    return label[: _MAX_LABEL_CHARS - 1] + "…"
