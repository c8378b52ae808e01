"""The BFCL section of `asynclm bench backends`: a BFCL subset on our engine and on the server.

The same BFCL tasks (the first `--bfcl-limit` of `--bfcl-category`, parallel by default), the
same model file (our exported SmolLM2 GGUF, loaded by our engine and served by llama.cpp), the
same calls: the oracle's calls forced onto the real model (`asynclm.backends.forced`), so
every token is a real forward and every place and mode makes the expected calls (the AST
checker confirms it). Sync and async on our engine (interrupts into the live KV); sync,
sync-parallel and async-naive on the server (an interrupt aborts and resubmits the stream).
Runs interleave task by task, so drifts of a shared machine hit every place and mode alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from asynclm.bench.common import table

RUNS = (
    ("engine", "sync"),
    ("engine", "async"),
    ("server", "sync"),
    ("server", "sync-parallel"),
    ("server", "async"),
)
SERVER_FIGURES = (
    "requests",
    "restarts",
    "interrupt_restarts",
    "recomputed_tokens_per_restart",
    "discarded_tokens_per_restart",
    "restart_first_token_s",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bfcl-category", default="parallel", help="the BFCL category of the subset")
    p.add_argument("--bfcl-limit", type=int, default=8, help="its first N tasks")
    p.add_argument("--bfcl-latency", default="fnv", help="fnv | fixed:S | uniform:LOW,HIGH")


async def bfcl_section(spec: str, gguf: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every task in each place and mode; per place/mode medians over the tasks."""
    from asynclm.bench.bfcl import load_tasks
    from asynclm.bfcl_eval.runner import Runner, Settings
    from asynclm.bfcl_eval.tasks import parse_latency

    latency = parse_latency(args.bfcl_latency)
    tasks = load_tasks([args.bfcl_category], args.bfcl_limit or None)
    runners = {
        "engine": Runner(Settings(model=str(gguf), forced=True, latency=latency)),
        "server": Runner(Settings(model=str(gguf), backend=spec, forced=True, latency=latency)),
    }
    runs: dict[str, list[dict[str, Any]]] = {f"{w}/{m}": [] for w, m in RUNS}
    for task in tasks:
        for where, mode in RUNS:
            record, _ = await runners[where].run(task, mode)
            runs[f"{where}/{mode}"].append(record)
            print(f"{task.id} {where}/{mode}: {record['latency_s']:.2f} s", file=sys.stderr)
    return {
        "category": args.bfcl_category,
        "tasks": [t.id for t in tasks],
        "latency": latency.describe(),
        "runs": {key: summary(records) for key, records in runs.items()},
        "speedup_vs_engine_sync": speedups(runs, "engine/sync"),
    }


def summary(records: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over the tasks; accuracy by BFCL's AST checker."""
    out = {
        "latency_s_median": statistics.median(r["latency_s"] for r in records),
        "accuracy": sum(r["valid"] for r in records) / len(records),
        "calls_median": statistics.median(len(r["calls"]) for r in records),
        "interrupts_median": statistics.median(r["interrupts"] for r in records),
        "generated_tokens_median": statistics.median(r["generated_tokens"] for r in records),
        "ideal_s_median": statistics.median(r["ideal_s"] for r in records),
    }
    for name in SERVER_FIGURES:
        if all("server" in r for r in records):
            out[f"{name}_median"] = statistics.median(r["server"][name] for r in records)
    return out


def speedups(runs: dict[str, list[dict[str, Any]]], reference: str) -> dict[str, float]:
    """Median over the tasks of (reference latency / latency), per place/mode."""
    base = [r["latency_s"] for r in runs[reference]]
    return {
        key: statistics.median(b / r["latency_s"] for b, r in zip(base, records, strict=True))
        for key, records in runs.items()
    }


def bfcl_table(section: dict[str, Any]) -> str:
    rows = []
    for key, r in section["runs"].items():
        rows.append(
            (
                key,
                f"{r['latency_s_median']:.2f}",
                f"{section['speedup_vs_engine_sync'][key]:.2f}x",
                f"{r['ideal_s_median']:.2f}",
                f"{r['accuracy']:.0%}",
                f"{r['interrupts_median']:.0f}",
                f"{r.get('requests_median', 0):.0f}",
                f"{r.get('interrupt_restarts_median', 0):.0f}",
                f"{r.get('recomputed_tokens_per_restart_median', 0):.1f}",
                f"{r.get('discarded_tokens_per_restart_median', 0):.1f}",
                f"{r.get('restart_first_token_s_median', 0) * 1000:.0f}",
            )
        )
    header = (
        "where/mode",
        "latency s",
        "vs engine sync",
        "ideal s",
        "AST acc.",
        "interrupts",
        "requests",
        "intr. restarts",
        "recomputed/restart",
        "discarded/restart",
        "restart TTFT ms",
    )
    title = f"BFCL {section['category']}, {len(section['tasks'])} tasks (medians over tasks)"
    return f"{title}\n{table(rows, header)}"
