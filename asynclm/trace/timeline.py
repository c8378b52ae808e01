"""A run's trace drawn as text: one row per lane, for terminals."""

from __future__ import annotations

from asynclm.trace.lanes import lane_order
from asynclm.trace.recorder import Trace

_GLYPHS = {"decode": "=", "prefill": "=", "call": "#", "trap": ".", "interrupt": "!"}
_INSTANTS = {"dispatch": ">", "interrupt": "!", "trap": "|"}


def render_timeline(trace: Trace, *, width: int = 64, end: float | None = None) -> str:
    """Lanes as rows of `width` characters over [0, end]: `=` model writing, `.` waiting for a
    result, `#` a tool running, `>` a call dispatched, `!` an interrupt injected."""
    events = trace.events
    if not events:
        return "(empty trace)"
    end = end or max((e.end if e.end is not None else e.start) for e in events) or 1e-9
    lanes = lane_order(events)
    label = max(len(lane) for lane in lanes)
    rows = []
    for lane in lanes:
        cells = [" "] * width
        for e in (e for e in events if e.lane == lane):
            glyph = _INSTANTS.get(e.name, "-") if e.end is None else _GLYPHS.get(e.category, "-")
            lo = min(width - 1, int(e.start / end * width))
            hi = lo + 1 if e.end is None else max(lo + 1, min(width, round(e.end / end * width)))
            for i in range(lo, hi):
                if e.end is None or cells[i] in " .":
                    cells[i] = glyph
        rows.append(f"{lane.rjust(label)} |{''.join(cells)}|")
    rows.append(f"{''.rjust(label)}  0 s{f'{end:.2f} s'.rjust(width - 3)}")
    return "\n".join(rows)
