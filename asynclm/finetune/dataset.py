"""Building the training set: tasks -> simulated turns (every mode) -> token ids -> packed rows.

`build_dataset` writes a `datasets.DatasetDict` (`train`, `eval`) of packed rows to disk, plus
`stats.json` (tasks per kind and source, tokens, calls, interrupts, traps, the simulated
latency of each mode) and `tasks.jsonl` (every task, for inspection).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from random import Random
from typing import Any

from asynclm.finetune.bank import DEFAULT_MIX, bank_tasks
from asynclm.finetune.bfcl_live import LIVE_CATEGORIES, LiveReport, live_tasks
from asynclm.finetune.harness_style import harness_variants
from asynclm.finetune.leakage import Fingerprints, check_no_leakage
from asynclm.finetune.packing import PackedRow, pack
from asynclm.finetune.render import Example, Renderer
from asynclm.finetune.simulate import MODES, Mode, Turn, simulate
from asynclm.finetune.task import Task


@dataclass(frozen=True, slots=True)
class DataConfig:
    """What goes into the training set.

    Attributes:
        bank_tasks: Synthetic tasks from the template bank.
        live_per_category: BFCL live_* entries per category (None: all; 0: none).
        mix: Weight of each task kind in the bank.
        modes: Calling modes each task is rendered in.
        token_time: Range of the simulated seconds per token (drawn per task).
        max_tokens: Longest packed row.
        eval_fraction: Share of tasks held out for the evaluation loss.
        harness_share: Share of the bank's tasks of independent calls that also appear in
            the BFCL harness's style (`harness_style`): its instructions, results, answers.
        seed: Seed of everything drawn.
    """

    bank_tasks: int = 600
    live_per_category: int | None = 120
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    modes: tuple[Mode, ...] = MODES
    token_time: tuple[float, float] = (0.005, 0.030)
    max_tokens: int = 1536
    eval_fraction: float = 0.04
    harness_share: float = 0.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Rendered:
    """One task in one mode, rendered, with what it contains (for the statistics)."""

    task: Task
    turn: Turn
    example: Example


def load_live(cfg: DataConfig, report: LiveReport, fingerprints: Fingerprints) -> list[Task]:
    """BFCL live_* tasks, minus any entry that shares a question with the evaluation data."""
    if cfg.live_per_category == 0:
        return []
    from asynclm.bfcl_eval.data import load_category

    entries = []
    rng = Random(cfg.seed)
    for category in LIVE_CATEGORIES:
        rows = load_category(category)
        if cfg.live_per_category is not None and len(rows) > cfg.live_per_category:
            rows = rng.sample(rows, cfg.live_per_category)
        entries += rows
    tasks = live_tasks(entries, seed=cfg.seed, report=report)
    kept = [t for t in tasks if not fingerprints.overlaps(t)]
    report.skipped["shares a question with an evaluation category"] += len(tasks) - len(kept)
    return kept


def build_tasks(
    cfg: DataConfig, fingerprints: Fingerprints, report: LiveReport | None = None
) -> list[Task]:
    """The training tasks (bank and live_*), checked against the evaluation data."""
    report = report if report is not None else LiveReport()
    tasks = bank_tasks(cfg.bank_tasks, seed=cfg.seed, mix=cfg.mix)
    tasks += harness_variants(tasks, cfg.harness_share, seed=cfg.seed)
    tasks += load_live(cfg, report, fingerprints)
    check_no_leakage(tasks, fingerprints)
    return tasks


def render_tasks(
    tasks: Sequence[Task],
    renderer: Renderer,
    cfg: DataConfig,
    progress: Callable[[Iterable[Task]], Iterable[Task]] = iter,
    skipped: Counter[str] | None = None,
) -> list[Rendered]:
    """Every task simulated and rendered in every mode (one per-token time per task).

    A task that cannot run to its end in some mode (a user message that would arrive after
    the answer) is left out and counted in `skipped`.
    """
    rng = Random(cfg.seed + 1)
    out = []
    for task in progress(tasks):
        token_time = rng.uniform(*cfg.token_time)
        try:
            turns = [
                simulate(task, mode, token_time=token_time, tokenize=renderer.tokenize)
                for mode in cfg.modes
            ]
        except ValueError as e:
            if skipped is None:
                raise
            skipped[str(e).split(": ", 1)[-1]] += 1
            continue
        out += [Rendered(task, turn, renderer.render(task, turn)) for turn in turns]
    return out


def split_tasks(tasks: Sequence[Task], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Task ids for training and for the evaluation loss."""
    ids = sorted({t.id for t in tasks})
    Random(seed + 2).shuffle(ids)
    n_eval = max(1, round(len(ids) * fraction)) if fraction > 0 and len(ids) > 1 else 0
    return set(ids[n_eval:]), set(ids[:n_eval])


def rows_dataset(rows: Sequence[PackedRow]) -> Any:
    """A `datasets.Dataset` of packed rows."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "input_ids": [list(r.input_ids) for r in rows],
            "targets": [list(r.targets) for r in rows],
            "positions": [list(r.positions) for r in rows],
            "segments": [[list(s) for s in r.segments] for r in rows],
            "num_examples": [r.num_examples for r in rows],
        }
    )


def statistics_of(rendered: Sequence[Rendered], rows: dict[str, list[PackedRow]]) -> dict:
    """Counts of what the training set holds."""
    tasks = {r.task.id: r.task for r in rendered}
    by_mode: dict[str, list[Rendered]] = {}
    for r in rendered:
        by_mode.setdefault(r.turn.mode, []).append(r)
    tokens = sum(len(r.example.input_ids) for r in rendered)
    packed = sum(len(row.input_ids) for split in rows.values() for row in split)
    return {
        "tasks": len(tasks),
        "tasks_per_kind": dict(Counter(t.kind for t in tasks.values())),
        "tasks_per_source": dict(Counter(t.source for t in tasks.values())),
        "examples": len(rendered),
        "tokens": tokens,
        "loss_tokens": sum(r.example.num_loss for r in rendered),
        "prompt_tokens": sum(r.example.num_prompt for r in rendered),
        "packed_tokens": packed,
        "packing_saving": round(1 - packed / tokens, 3) if tokens else 0.0,
        "rows": {name: len(split) for name, split in rows.items()},
        "modes": {mode: _mode_stats(items) for mode, items in by_mode.items()},
    }


def _mode_stats(items: Sequence[Rendered]) -> dict:
    return {
        "examples": len(items),
        "calls": sum(r.turn.num_calls for r in items),
        "interrupts": sum(r.turn.num_interrupts for r in items),
        "traps": sum(r.turn.num_traps for r in items),
        "loss_tokens": sum(r.example.num_loss for r in items),
        "simulated_seconds_median": round(statistics.median(r.turn.seconds for r in items), 3),
        "simulated_seconds_total": round(sum(r.turn.seconds for r in items), 2),
    }


def build_dataset(
    cfg: DataConfig,
    renderer: Renderer,
    out: Path,
    fingerprints: Fingerprints,
    progress: Callable[[Iterable[Task]], Iterable[Task]] = iter,
) -> dict:
    """Builds and saves the training set under `out`; returns its statistics.

    Writes `out/data` (a DatasetDict with `train` and `eval`), `out/stats.json` and
    `out/tasks.jsonl`.
    """
    report = LiveReport()
    tasks = build_tasks(cfg, fingerprints, report)
    skipped: Counter[str] = Counter()
    rendered = render_tasks(tasks, renderer, cfg, progress, skipped)
    tasks = list({r.task.id: r.task for r in rendered}.values())
    train_ids, eval_ids = split_tasks(tasks, cfg.eval_fraction, cfg.seed)
    rows, dropped = {}, {}
    for name, ids in (("train", train_ids), ("eval", eval_ids)):
        rows[name], dropped[name] = pack(
            [r.example for r in rendered if r.task.id in ids], cfg.max_tokens
        )
    from datasets import DatasetDict

    out.mkdir(parents=True, exist_ok=True)
    DatasetDict({name: rows_dataset(split) for name, split in rows.items()}).save_to_disk(
        str(out / "data")
    )
    stats = statistics_of(rendered, rows) | {
        "dropped_too_long": dropped,
        "skipped_tasks": dict(skipped),
        "live": {"tasks": dict(report.tasks), "skipped": dict(report.skipped)},
        "leakage_check": {"tasks_checked": len(tasks), "evaluation_ids": len(fingerprints.ids)},
        "config": asdict(cfg),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    with (out / "tasks.jsonl").open("w") as f:
        for task in tasks:
            f.write(json.dumps(asdict(task), default=str) + "\n")
    return stats
