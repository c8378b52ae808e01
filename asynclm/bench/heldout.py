"""Protocol skill on tools never seen in training: adapters side by side on the held-out tasks.

The fine-tuning evaluation (`asynclm.finetune.evaluate`) as a benchmark of its own, for any
adapters at once — the shipped one, a new run, the plain model — on the same tasks, in the
same run, optionally under one of the agent's grammars:

    asynclm bench heldout --adapters auto,runs/finetune/adapter,none --tasks 24 \\
        --constrained off --json runs/bench_heldout.json

Prints `cml_wellformed`, `call_exact_match`, `result_use` and `trap_discipline` (overall and
per mode) for each adapter beside the others; the JSON has every run's output and transcript.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asynclm.bench.common import machine, table, write_json
from asynclm.finetune.simulate import MODES

MEASURES = ("cml_wellformed", "call_exact_match", "result_use", "trap_discipline")
GRAMMARS = {"off": None, "calls": "calls", "turn": "turn"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--adapters",
        default="auto,none",
        help="comma-separated: auto (the shipped adapter), none (the plain model) or adapter "
        "folders; each is measured on the same tasks (default: auto,none)",
    )
    parser.add_argument("--model", default="smollm2-135m", help="base model (preset or folder)")
    parser.add_argument("--tasks", type=int, default=24, help="held-out tasks (each in every mode)")
    parser.add_argument("--modes", default=",".join(MODES), help="calling modes, comma-separated")
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the held-out tasks")
    parser.add_argument("--max-tokens", type=int, default=200, help="most tokens per run")
    parser.add_argument(
        "--constrained",
        choices=sorted(GRAMMARS),
        default="off",
        help="off: the model writes freely (what the fine-tuning targets are measured on); "
        "calls: the call grammar inside call blocks; turn: the whole-turn grammar",
    )
    parser.add_argument("--json", help="write the figures and every run here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from asynclm.finetune.evaluate import EvalConfig

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise ValueError(f"--modes: unknown {unknown or 'none given'}; choose from {MODES}")
    adapters = [a.strip() for a in args.adapters.split(",") if a.strip()]
    if not adapters:
        raise ValueError("--adapters: give at least one (auto, none or a folder)")
    if args.tasks < 1:
        raise ValueError(f"--tasks must be at least 1, got {args.tasks}")
    cfg = EvalConfig(
        tasks=args.tasks,
        modes=modes,  # type: ignore[arg-type]  # checked against MODES above
        seed=args.seed,
        max_tokens=args.max_tokens,
        constrained=GRAMMARS[args.constrained],  # type: ignore[arg-type]
    )
    results = {a: measure(args.model, a, cfg, args.no_progress) for a in adapters}
    print(report(results, cfg, args.constrained))
    write_json(
        args.json,
        {
            "machine": machine(),
            "model": args.model,
            "config": {
                "tasks": cfg.tasks,
                "modes": list(modes),
                "seed": cfg.seed,
                "max_tokens": cfg.max_tokens,
                "constrained": args.constrained,
            },
            "adapters": results,
        },
    )
    return 0


def measure(model: str, adapter: str, cfg: Any, quiet: bool) -> dict[str, Any]:
    """The held-out report of one adapter ("auto", "none" or a folder) on `model`."""
    from pathlib import Path

    from tqdm import tqdm

    from asynclm.engine.engine import Engine
    from asynclm.engine.loader import resolve_adapter
    from asynclm.finetune.evaluate import evaluate

    resolved = resolve_adapter(model, adapter)
    if resolved is not None and not Path(resolved).is_dir():
        raise ValueError(f"--adapters: {adapter}: no such folder")
    engine = Engine.load(model, adapter=resolved)

    def progress(items: Any) -> Any:
        label = f"held-out {adapter}"
        return tqdm(list(items), desc=label, unit="run", disable=quiet, file=sys.stderr)

    result = evaluate(engine, cfg, progress=progress)
    result["adapter_path"] = None if resolved is None else str(resolved)
    return result


def report(results: dict[str, dict[str, Any]], cfg: Any, grammar: str) -> str:
    """The measures of every adapter side by side, overall and per mode."""
    names = list(results)
    rows = []
    for measure_name in MEASURES:
        rows.append((measure_name, *(_fmt(results[n].get(measure_name)) for n in names)))
        for mode in cfg.modes:
            per_mode = (results[n]["modes"][mode].get(measure_name) for n in names)
            rows.append((f"  {mode}", *map(_fmt, per_mode)))
    runs = len(cfg.modes) * cfg.tasks
    head = (
        f"held-out tasks (tools never seen in training): {cfg.tasks} tasks x {len(cfg.modes)} "
        f"modes = {runs} runs per adapter, grammar: {grammar}"
    )
    return head + "\n\n" + table(rows, ("measure", *names))


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"
