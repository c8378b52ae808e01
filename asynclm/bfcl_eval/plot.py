"""The benchmark's figure: latency per mode and the async/sync speedup distribution (PNG).

matplotlib is imported only here, through its Agg canvas (no global backend is switched).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["draw_summary"]

MODE_COLOURS = {"sync": "#7f7f7f", "sync-parallel": "#ff7f0e", "async": "#1f77b4"}


def draw_summary(
    records: Sequence[dict[str, Any]],
    categories: dict[str, Any],
    modes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Left: each category's task latencies per mode (box plots). Right: per task, async/sync
    speedup beside the best possible (sync/ideal).

    Raises:
        ImportError: matplotlib is not installed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(categories)
    fig = Figure(figsize=(12, 4.5 + 0.2 * len(names)), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _latency_panel(left, records, names, modes)
    _speedup_panel(right, categories, names)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out


def _latency_panel(
    ax: Any, records: Sequence[dict[str, Any]], names: list[str], modes: Sequence[str]
) -> None:
    width = 0.8 / max(1, len(modes))
    for j, mode in enumerate(modes):
        data = [
            [r["latency_s"] for r in records if r["category"] == c and r["mode"] == mode] or [0.0]
            for c in names
        ]
        positions = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(names))]
        box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True)
        for patch in box["boxes"]:
            patch.set_facecolor(MODE_COLOURS.get(mode, "#2ca02c"))
        ax.plot([], [], "s", color=MODE_COLOURS.get(mode, "#2ca02c"), label=mode)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("task latency (s)")
    ax.set_title("latency per task")
    ax.legend()


def _speedup_panel(ax: Any, categories: dict[str, Any], names: list[str]) -> None:
    for i, name in enumerate(names):
        entry = categories[name]
        for offset, key, colour, label in (
            (-0.15, "speedups_async_vs_sync", "#1f77b4", "async / sync"),
            (0.15, "best_possible_speedups", "#2ca02c", "best possible (sync / ideal)"),
        ):
            values = entry.get(key) or []
            if values:
                box = ax.boxplot([values], positions=[i + offset], widths=0.25, patch_artist=True)
                box["boxes"][0].set_facecolor(colour)
            if i == 0:
                ax.plot([], [], "s", color=colour, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("speedup over sync (per task)")
    ax.set_title("async speedup and its bound")
    ax.legend()
