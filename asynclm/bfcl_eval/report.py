"""From per-task records to the summary: medians, accuracy, speedups, markdown tables. Pure.

Per category and mode: median and p90 latency, AST accuracy, median tokens written, mean
interrupts. Per category, over the tasks every mode ran: the median of the per-task
async/sync speedup (and sync-parallel/sync), the median best possible speedup (sync / ideal:
no mode can do better) and the median async / ideal.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["PAPER", "markdown", "summarize", "task_ratios"]

PAPER = {  # AsyncLM (Gim, Lee, Zhong, arXiv 2412.07017), latency speedup over sync calling
    "parallel": {"async": 1.6, "sync-parallel": 1.3},
    "multistep_parallel": {"async": 5.4, "sync-parallel": 3.2},
}


def _p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _median(values: Iterable[float]) -> float | None:
    data = list(values)
    return statistics.median(data) if data else None


def summarize(records: Sequence[dict[str, Any]], modes: Sequence[str]) -> dict[str, Any]:
    """The summary's `categories` part: `{category: {"modes": {...}, speedups...}}`."""
    categories: dict[str, Any] = {}
    for category in dict.fromkeys(r["category"] for r in records):
        rows = [r for r in records if r["category"] == category]
        entry: dict[str, Any] = {"tasks": len({r["id"] for r in rows}), "modes": {}}
        for mode in modes:
            mine = [r for r in rows if r["mode"] == mode]
            if mine:
                entry["modes"][mode] = _mode_summary(mine)
        entry.update(_speedups(task_ratios(rows)))
        if category in PAPER:
            entry["paper_speedup"] = PAPER[category]
        categories[category] = entry
    return categories


def _mode_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    latency = [r["latency_s"] for r in rows]
    return {
        "tasks": len(rows),
        "latency_s_median": statistics.median(latency),
        "latency_s_p90": _p90(latency),
        "accuracy": sum(bool(r["valid"]) for r in rows) / len(rows),
        "generated_tokens_median": statistics.median(r["generated_tokens"] for r in rows),
        "injected_tokens_median": statistics.median(r["injected_tokens"] for r in rows),
        "interrupts_mean": statistics.fmean(r["interrupts"] for r in rows),
        "ideal_s_median": _median(r["ideal_s"] for r in rows if r.get("ideal_s")),
    }


def task_ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task run in sync: its speedups and bounds (`sync / mode`, `sync / ideal`, ...)."""
    by_task: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_task.setdefault(r["id"], {})[r["mode"]] = r
    out = []
    for task_id, runs in by_task.items():
        sync = runs.get("sync")
        if sync is None:
            continue
        ideal = sync.get("ideal_s")  # None where a run's speeds could not be measured
        item: dict[str, Any] = {"id": task_id}
        if ideal:
            item["best_possible"] = sync["latency_s"] / ideal
        for mode, run in runs.items():
            item[f"speedup_{mode}"] = sync["latency_s"] / run["latency_s"]
            if ideal:
                item[f"over_ideal_{mode}"] = run["latency_s"] / ideal
            if run.get("ideal_at_measured_s"):
                item[f"over_measured_ideal_{mode}"] = run["latency_s"] / run["ideal_at_measured_s"]
        out.append(item)
    return out


def _speedups(ratios: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def values(key: str) -> list[float]:
        return [r[key] for r in ratios if key in r]

    return {
        "speedup_async_vs_sync": _median(values("speedup_async")),
        "speedup_sync_parallel_vs_sync": _median(values("speedup_sync-parallel")),
        "best_possible_speedup": _median(values("best_possible")),
        "async_over_ideal": _median(values("over_ideal_async")),
        # the same, with the ideal at the speeds measured in the async run (per-step work in)
        "async_over_ideal_at_measured_speed": _median(values("over_measured_ideal_async")),
        "speedups_async_vs_sync": values("speedup_async"),
        "best_possible_speedups": values("best_possible"),
    }


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}{unit}"


def markdown(categories: dict[str, Any], modes: Sequence[str]) -> str:
    """A table per category and mode, and one of the speedups per category."""
    lines = [
        "| category | mode | tasks | median latency | p90 latency | AST accuracy "
        "| tokens (median) | interrupts (mean) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for category, entry in categories.items():
        for mode in modes:
            m = entry["modes"].get(mode)
            if m is None:
                continue
            lines.append(
                f"| {category} | {mode} | {m['tasks']} | {_fmt(m['latency_s_median'], ' s')} "
                f"| {_fmt(m['latency_s_p90'], ' s')} | {100 * m['accuracy']:.1f}% "
                f"| {m['generated_tokens_median']:g} | {m['interrupts_mean']:.1f} |"
            )
    lines += [
        "",
        "| category | async vs sync | sync-parallel vs sync | best possible (sync / ideal) "
        "| async / ideal | AsyncLM paper (async; sync-parallel) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for category, entry in categories.items():
        paper = entry.get("paper_speedup")
        cited = f"{paper['async']}x; {paper['sync-parallel']}x" if paper else "–"
        lines.append(
            f"| {category} | {_fmt(entry['speedup_async_vs_sync'], 'x', 2)} "
            f"| {_fmt(entry['speedup_sync_parallel_vs_sync'], 'x', 2)} "
            f"| {_fmt(entry['best_possible_speedup'], 'x', 2)} "
            f"| {_fmt(entry['async_over_ideal'])} | {cited} |"
        )
    return "\n".join(lines)
