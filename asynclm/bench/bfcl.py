"""`asynclm bench bfcl`: accuracy and latency of sync, sync-parallel and async calling on BFCL.

Each BFCL entry's functions become simulated tools; the agent answers the entry's question in
each mode on the same model; the calls it makes are checked by BFCL's AST rules
(`asynclm.bfcl_eval`); every task's latency is set beside the ideal bound of its call graph.
`--model oracle` plays the ground-truth calls with a scripted model on the real engine (the
runtime's latency alone); the default model is SmolLM2-135M. Every finished run is appended to
a JSON-lines file next to `--json`, so an interrupted benchmark resumes where it stopped.
See docs/BFCL.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asynclm.bench.common import machine, write_json

if TYPE_CHECKING:
    from asynclm.agent.constrained import Constrained

MODES = ("sync", "sync-parallel", "async")
DEFAULT_CATEGORIES = "parallel,multistep_parallel"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--categories", default=DEFAULT_CATEGORIES, help="comma-separated")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    p.add_argument("--limit", type=int, default=6, help="tasks per category (0: all)")
    p.add_argument("--model", default="smollm2-135m", help="a model preset/path, or 'oracle'")
    p.add_argument(
        "--adapter",
        default="auto",
        help="LoRA adapter: auto (the shipped fine-tuned one, when there is one), none, or DIR",
    )
    p.add_argument(
        "--backend",
        default=None,
        metavar="openai:URL",
        help="run the model served there (an OpenAI-compatible /v1/completions server, e.g. "
        "llama.cpp's) instead of the local engine; --model and --adapter then do not apply",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="with --backend: the served model's tokenizer (transformers folder or .gguf), "
        "where the model path the server reports is not on this machine",
    )
    p.add_argument(
        "--forced-oracle",
        action="store_true",
        help="force the oracle's calls onto the real model (local or served): real token "
        "costs, the same calls in every mode and place",
    )
    p.add_argument(
        "--constrained",
        choices=("auto", "on", "turn", "calls", "off"),
        default="auto",
        help="hold the model to a grammar (local engine only): turn (or on): the whole turn, "
        "for untuned models; calls: only the call blocks it writes, for tuned ones; auto: turn "
        "for a local model without adapter, else off",
    )
    p.add_argument("--latency", default="fnv", help="fnv | fixed:SECONDS | uniform:LOW,HIGH")
    p.add_argument("--cheat-sheet", action="store_true", help="ground-truth calls in the prompt")
    p.add_argument("--token-rate", type=float, default=50.0, help="oracle: tokens/s written")
    p.add_argument("--prefill-rate", type=float, default=1000.0, help="oracle: prefill tokens/s")
    p.add_argument("--max-tokens", type=int, default=256, help="a real model's tokens per run")
    p.add_argument("--seed", type=int, default=0, help="seed of the uniform latency model")
    p.add_argument("--json", default="runs/bench_bfcl.json", help="summary JSON (records beside)")
    p.add_argument("--plot", default="runs/bench_bfcl.png", help="latency/speedup figure")
    p.add_argument("--fresh", action="store_true", help="discard the records of an earlier run")
    p.add_argument(
        "--metrics",
        default=None,
        metavar="FILE",
        help="also write each category's accuracy into this metrics JSON (a fine-tuning "
        "run's metrics.json: bfcl.<category>.accuracy and bfcl.<category>.<mode>.accuracy)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--bounds",
        default=None,
        metavar="RATES",
        help="print the tasks' best possible speedups at these token rates (e.g. 25,50,200) "
        "for the oracle's calls, and exit without running",
    )


def grammar_kind(choice: str, untuned: bool) -> Constrained | None:
    """`--constrained` read as a grammar kind ("turn", "calls") or None."""
    if choice in ("on", "turn") or (choice == "auto" and untuned):
        return "turn"
    return "calls" if choice == "calls" else None


def settings_from(args: argparse.Namespace) -> Any:
    from asynclm.bfcl_eval.runner import ORACLE, Settings
    from asynclm.bfcl_eval.tasks import parse_latency
    from asynclm.engine.loader import resolve_adapter

    oracle = args.model == ORACLE
    backend = args.backend
    if oracle and backend:
        raise ValueError(
            "--model oracle is the scripted model on the local engine; to play the oracle's "
            "calls on a served model use --backend with --forced-oracle"
        )
    local_model = not oracle and not backend
    adapter = resolve_adapter(args.model, args.adapter) if local_model else None
    if adapter is not None and not Path(adapter).is_dir():
        raise ValueError(f"--adapter {adapter}: no such folder")
    constrained = grammar_kind(
        args.constrained, local_model and adapter is None and not args.forced_oracle
    )
    if args.token_rate <= 0 or args.prefill_rate <= 0 or args.max_tokens < 1:
        raise ValueError("--token-rate, --prefill-rate and --max-tokens must be positive")
    return Settings(
        model="served" if backend else args.model,
        adapter=None if adapter is None else str(adapter),
        backend=backend,
        tokenizer=args.tokenizer,
        forced=args.forced_oracle,
        latency=parse_latency(args.latency),
        cheat_sheet=args.cheat_sheet,
        constrained=constrained,
        max_tokens=args.max_tokens,
        token_rate=args.token_rate,
        prefill_rate=args.prefill_rate,
        seed=args.seed,
    )


def load_tasks(categories: list[str], limit: int | None) -> list[Any]:
    from asynclm.bfcl_eval.checker import category_kind
    from asynclm.bfcl_eval.data import load_category
    from asynclm.bfcl_eval.tasks import make_task

    tasks = []
    for category in categories:
        category_kind(category)  # multi-turn categories are refused here, before any work
        tasks += [make_task(e) for e in load_category(category, limit=limit)]
    return tasks


class RecordFile:
    """The resumable per-run records: a settings line, then one JSON line per finished run."""

    def __init__(self, path: Path, settings: dict[str, Any], *, fresh: bool) -> None:
        self.path = path
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        if path.exists() and not fresh:
            self._load(settings)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"settings": settings}) + "\n")

    def _load(self, settings: dict[str, Any]) -> None:
        lines, broken = [], False
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short when a run was killed
                print(f"{self.path}:{number}: unreadable record dropped", file=sys.stderr)
                broken = True
        if not lines or lines[0].get("settings") != settings:
            raise ValueError(
                f"{self.path} holds runs of other settings ({lines[0] if lines else 'empty'}); "
                "pass --fresh to start over, or another --json"
            )
        if broken:  # rewrite, so that new records start on a line of their own
            self.path.write_text("".join(json.dumps(x, default=repr) + "\n" for x in lines))
        for record in lines[1:]:
            self.records[(record["id"], record["mode"])] = record

    def add(self, record: dict[str, Any]) -> None:
        self.records[(record["id"], record["mode"])] = record
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=repr) + "\n")


async def run_all(args: argparse.Namespace, settings: Any, tasks: list[Any], modes: list[str]):
    from tqdm import tqdm

    from asynclm.bfcl_eval.runner import Runner

    out = Path(args.json)
    records = RecordFile(out.with_suffix(".tasks.jsonl"), settings.describe(), fresh=args.fresh)
    todo = [(t, m) for t in tasks for m in modes if (t.id, m) not in records.records]
    example = tasks[-1] if tasks else None  # its async run is drawn as a Gantt chart
    trace_path = out.with_suffix(".example.trace.json")
    if args.fresh:
        trace_path.unlink(missing_ok=True)
    if todo or (example and not trace_path.exists()):
        runner = Runner(settings)
        bar = tqdm(todo, desc="bench bfcl", unit="run", disable=args.no_progress, file=sys.stderr)
        for task, mode in bar:
            bar.set_postfix_str(f"{task.id} {mode}")
            record, result = await runner.run(task, mode)
            records.add(record)
            if task is example and mode == modes[-1]:
                result.timeline.save_chrome(trace_path)
        if example and not trace_path.exists():  # resumed after the example's run
            _, result = await runner.run(example, modes[-1])
            result.timeline.save_chrome(trace_path)
    wanted = {(t.id, m) for t in tasks for m in modes}
    return [r for key, r in records.records.items() if key in wanted], example, trace_path


def main(args: argparse.Namespace) -> int:
    import anyio

    from asynclm.bfcl_eval.data import installed_version
    from asynclm.bfcl_eval.report import markdown, summarize

    started = time.perf_counter()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"--modes must list some of {', '.join(MODES)}, got {args.modes!r}")
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    settings = settings_from(args)
    tasks = load_tasks(categories, args.limit or None)
    if args.bounds:
        print(_bounds(args, settings, categories, tasks))
        return 0
    records, example, trace_path = anyio.run(run_all, args, settings, tasks, modes)
    summary = summarize(records, modes)
    table = markdown(summary, modes)
    print(_headline(settings, len(tasks)))
    print(table)
    results = {
        "benchmark": "bfcl",
        "arguments": {k: v for k, v in vars(args).items() if k != "handler"},
        "machine": machine(),
        "bfcl_eval_version": installed_version(),
        "settings": settings.describe(),
        "modes": modes,
        "limit": args.limit,
        "categories": summary,
        "records": str(Path(args.json).with_suffix(".tasks.jsonl")),
        "elapsed_s": time.perf_counter() - started,
    }
    write_json(args.json, results)
    if args.metrics:
        add_accuracies(Path(args.metrics), summary, settings.describe())
    Path(args.json).with_suffix(".md").write_text(table + "\n")
    _draw(args, records, summary, modes, example, trace_path, _headline(settings, len(tasks)))
    return 0


def add_accuracies(path: Path, summary: dict[str, Any], settings: dict[str, Any]) -> None:
    """Merges each category's BFCL accuracy into a metrics JSON (created if missing).

    `bfcl.<category>.accuracy` is the async mode's (the first mode's where async did not run);
    `bfcl.<category>.<mode>.accuracy` every mode's; `bfcl.settings` how they were measured.
    """
    metrics = json.loads(path.read_text()) if path.exists() else {}
    bfcl: dict[str, Any] = {"settings": settings}
    for category, entry in summary.items():
        modes = entry["modes"]
        if not modes:
            continue
        headline = modes.get("async") or next(iter(modes.values()))
        bfcl[category] = {"accuracy": headline["accuracy"], "tasks": entry["tasks"]}
        bfcl[category] |= {mode: {"accuracy": m["accuracy"]} for mode, m in modes.items()}
    metrics["bfcl"] = bfcl
    write_json(str(path), metrics)


def _bounds(args: argparse.Namespace, settings: Any, categories: list[str], tasks: list) -> str:
    from asynclm.bfcl_eval.bounds import bounds_table
    from asynclm.cml.tokens import MARKERS
    from asynclm.engine.loader import default_tokenizer

    try:
        rates = [float(r) for r in args.bounds.split(",")]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0:
        raise ValueError(
            f"--bounds takes positive token rates such as 25,50,200, not {args.bounds!r}"
        )
    tokenizer = default_tokenizer()
    tokenizer.add_special_tokens(list(MARKERS))  # as the oracle writes them
    by_category = {c: [t for t in tasks if t.entry.category == c] for c in categories}
    table = bounds_table(
        by_category,
        lambda text: len(tokenizer.encode(text, special=True)),
        rates,
        prefill_rate=args.prefill_rate,
        latency=settings.latency,
    )
    return (
        "best possible speedup over sync (sync / ideal; median, max) of the ground-truth calls, "
        f"prefill {args.prefill_rate:g} tok/s, tools {settings.latency.describe()}\n{table}"
    )


def _headline(settings: Any, num_tasks: int) -> str:
    model = settings.model + (f" + {settings.adapter}" if settings.adapter else "")
    if settings.backend:
        model += f" by {settings.backend}"
    if settings.forced:
        model += ", the oracle's calls forced"
    if settings.model == "oracle":
        model += f" ({settings.token_rate:g} tok/s, prefill {settings.prefill_rate:g} tok/s)"
    extras = [
        "cheat sheet" if settings.cheat_sheet else "",
        f"constrained ({settings.constrained})" if settings.constrained else "",
    ]
    extra = ", ".join(e for e in extras if e)
    return (
        f"BFCL: {num_tasks} tasks, model {model}{', ' + extra if extra else ''}; "
        f"tools simulated ({settings.latency.describe()})"
    )


def _draw(args, records, summary, modes, example, trace_path, headline: str) -> None:
    if not args.plot or not records:
        return
    try:
        from asynclm.bfcl_eval.plot import draw_summary
        from asynclm.trace.gantt import draw_gantt
        from asynclm.trace.recorder import Trace
    except ImportError as e:  # pragma: no cover - matplotlib is a dev dependency
        print(f"no figures: {e}", file=sys.stderr)
        return
    plot = Path(args.plot)
    plot.parent.mkdir(parents=True, exist_ok=True)
    draw_summary(records, summary, modes, plot, title=headline)
    print(f"wrote {plot}", file=sys.stderr)
    if example is not None and trace_path.exists():
        gantt = plot.with_suffix(".gantt.png")
        title = f"{example.id}, {modes[-1]} mode ({headline.split('; ')[0]})"
        draw_gantt(Trace.load_chrome(trace_path), gantt, title=title)
        print(f"wrote {gantt}", file=sys.stderr)
