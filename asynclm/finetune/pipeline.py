"""The whole `asynclm finetune` run: data, training, adapter, held-out evaluation, metrics.

Presets size the run: `default` fits in 30 minutes on a 2-core CPU, `long` (the shipped
adapter) in about 2 hours, `tiny` is the random test model (a few seconds). Everything the run
did is written under its output folder: the dataset and its statistics, checkpoints, the
adapter (half precision, with the tokenizer), `config.json` (the exact configuration) and
`metrics.json`.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from asynclm.finetune.config import TrainConfig
from asynclm.finetune.dataset import DataConfig, build_dataset
from asynclm.finetune.evaluate import EvalConfig, evaluate

ADAPTER_NAME = "smollm2-135m-cml"


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    """A whole run: data, training and evaluation."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


PRESETS: dict[str, FinetuneConfig] = {
    # About 30 minutes on a 2-core CPU: data ~3, training fitted to 18, held-out eval ~6.
    "default": FinetuneConfig(
        DataConfig(bank_tasks=600, live_per_category=80),
        TrainConfig(steps=300, rows_per_step=2, learning_rate=1e-3, max_minutes=18.0),
        EvalConfig(tasks=8),
    ),
    # The shipped adapter: 105 minutes of training on half the parallel tasks restyled as
    # BFCL writes them (harness_share) and 15% repeated-value tasks. The learning rate follows
    # the clock (`TimeBudget`: flat, then down to zero over the last quarter), so the budget,
    # not the step cap, ends the run on a CPU (2 cores: ~290 steps in fp32 on the AVX2 kind,
    # ~790 in bf16 on an AVX-512 BF16 one).
    "long": FinetuneConfig(
        DataConfig(
            bank_tasks=1500,
            live_per_category=250,
            mix={**DataConfig().mix, "repeated": 0.15},
            harness_share=0.5,
        ),
        TrainConfig(steps=1000, rows_per_step=2, learning_rate=8e-4, max_minutes=105.0),
        EvalConfig(tasks=24),
    ),
    "tiny": FinetuneConfig(
        DataConfig(bank_tasks=8, live_per_category=0, max_tokens=1024),
        # fp32 on every machine: the test model's figures do not depend on the CPU's kind
        TrainConfig(
            model="tiny", steps=3, rows_per_step=1, eval_every=2, save_every=2, precision="fp32"
        ),
        EvalConfig(tasks=0),
    ),
}


def configure(preset: str, **overrides: Any) -> FinetuneConfig:
    """A preset with overrides (`steps`, `model`, `lr`, `lora_r`, `init_adapter`, ... for
    training; `bank_tasks`, `live_per_category`, `harness_share`, `mix` (kind -> weight, merged
    onto the preset's), `seed` for data;
    `eval_tasks`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    train = {k: v for k, v in overrides.items() if k in TrainConfig.__dataclass_fields__}
    data_keys = ("bank_tasks", "live_per_category", "harness_share", "mix")
    data = {k: v for k, v in overrides.items() if k in data_keys}
    if "mix" in data:  # weights given are changed, the others kept
        data["mix"] = {**cfg.data.mix, **data["mix"]}
    if "seed" in overrides:
        data["seed"] = overrides["seed"]
    evaluation = {"tasks": overrides["eval_tasks"]} if "eval_tasks" in overrides else {}
    unknown = set(overrides) - set(train) - set(data) - {"seed", "eval_tasks"}
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}")
    return FinetuneConfig(
        replace(cfg.data, **data), replace(cfg.train, **train), replace(cfg.eval, **evaluation)
    )


@dataclass(slots=True)
class Timer:
    """Wall-clock minutes of each stage."""

    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.stages[name] = round((time.perf_counter() - started) / 60, 2)

    def total(self) -> float:
        return round((time.perf_counter() - self.started) / 60, 2)


def run(
    cfg: FinetuneConfig,
    out: Path,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = iter,
) -> dict[str, Any]:
    """Runs the pipeline into `out`; returns the metrics (also in `out/metrics.json`)."""
    from asynclm.finetune import train as T

    timer = Timer()
    out.mkdir(parents=True, exist_ok=True)
    context = {"config": asdict(cfg), "command": sys.argv, "environment": environment()}
    T.write_json(out / "config.json", context)
    with timer.stage("load_model"):
        model, tokenizer, token_ids, threads = _base(cfg.train, log)
    with timer.stage("data"):
        stats = _dataset(cfg, tokenizer, out, resume, log, progress)
    with timer.stage("train"):
        trainer, history = _train(cfg, model, token_ids, out, resume, log)
    adapter = T.save_adapter(trainer.model, tokenizer, out / "adapter")
    log(f"adapter saved to {adapter}")
    metrics: dict[str, Any] = {
        "train": history | threads,
        "data": _data_summary(stats),
        "trainable": T.trainable_summary(trainer.model),
    }
    if cfg.eval.tasks and cfg.train.model != "tiny":
        with timer.stage("evaluate"):
            metrics["held_out"] = _evaluate(cfg, adapter, out, log, progress)
    timer.stages["total"] = timer.total()
    metrics |= headline(metrics) | {"minutes": timer.stages, "train_minutes": timer.stages["train"]}
    T.write_json(out / "metrics.json", metrics)
    shutil.copy(out / "metrics.json", adapter / "metrics.json")
    shutil.copy(out / "config.json", adapter / "finetune_config.json")
    return metrics


def _base(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[Any, Any, list[int], dict]:
    """The base model with the CML tokens added, its tokenizer, their ids, the threads used."""
    import torch

    from asynclm.finetune import train as T

    torch.manual_seed(cfg.seed)
    model, tokenizer = T.load_base(cfg.model, seed=cfg.seed)
    token_ids = T.add_cml_embeddings(model, tokenizer)
    threads = T.pick_threads(model, cfg.threads)
    log(f"model {cfg.model} loaded; CML tokens {token_ids}; threads {threads}")
    return model, tokenizer, token_ids, threads


def _dataset(cfg, tokenizer, out: Path, resume: bool, log, progress) -> dict:
    from asynclm.finetune.leakage import Fingerprints, evaluation_fingerprints
    from asynclm.finetune.render import Renderer

    stats_file = out / "stats.json"
    if resume and stats_file.exists() and (out / "data").exists():
        log("resuming: the dataset is already built")
        return json.loads(stats_file.read_text())
    try:
        fingerprints = evaluation_fingerprints()
    except (ImportError, FileNotFoundError) as e:
        if cfg.data.live_per_category != 0:
            raise
        log(f"warning: no BFCL evaluation data to check against ({e}); bank tasks only")
        fingerprints = Fingerprints.empty()
    stats = build_dataset(cfg.data, Renderer(tokenizer), out, fingerprints, progress)
    log(
        f"dataset: {stats['tasks']} tasks, {stats['examples']} examples, "
        f"{stats['packed_tokens']} packed tokens ({stats['loss_tokens']} with loss)"
    )
    return stats


def _train(cfg, model, token_ids, out: Path, resume: bool, log) -> tuple[Any, dict]:
    from datasets import load_from_disk

    from asynclm.finetune import train as T
    from asynclm.finetune.precision import choose_precision, store_frozen_in_bf16

    data = load_from_disk(str(out / "data"))
    data["eval"] = data["eval"].select(range(min(cfg.train.eval_rows, len(data["eval"]))))
    peft_model = T.with_lora(model, cfg.train, token_ids)
    choice = choose_precision(cfg.train.precision)
    train_cfg = replace(cfg.train, precision=choice.precision)
    if choice.precision == "bf16":
        store_frozen_in_bf16(peft_model)
    log(f"precision {choice.precision} ({choice.reason})")
    trainer, budget = T.make_trainer(peft_model, train_cfg, data, out, resume)
    has_checkpoint = resume and any((out / "checkpoints").glob("checkpoint-*"))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    seconds = time.perf_counter() - started
    logs = trainer.state.log_history
    evals = [e["eval_loss"] for e in logs if "eval_loss" in e]
    if len(data["eval"]):
        evals.append(trainer.evaluate()["eval_loss"])
    losses = [e["loss"] for e in logs if "loss" in e]
    steps = trainer.state.global_step
    tokens = steps * cfg.train.rows_per_step * _mean_row(data["train"])
    history = {
        "steps": steps,
        "rows_seen": steps * cfg.train.rows_per_step,
        "rows": len(data["train"]),
        "time_budget_minutes": cfg.train.max_minutes,
        "stopped_by_time_budget": bool(budget and budget.hit),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "eval_loss": evals,
        "train_runtime_s": round(result.metrics.get("train_runtime", seconds), 1),
        "packed_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "precision": choice.as_dict(),
    }
    log(f"trained {steps} steps in {seconds / 60:.1f} min; eval loss {evals}")
    return trainer, history


def _mean_row(rows: Any) -> float:
    lengths = [len(ids) for ids in rows["input_ids"]]
    return sum(lengths) / max(len(lengths), 1)


def _evaluate(cfg, adapter: Path, out: Path, log, progress) -> dict:
    from asynclm.engine.engine import Engine

    engine = Engine.load(cfg.train.model, adapter=adapter)
    report = evaluate(engine, cfg.eval, progress=progress)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    log(
        f"held-out: cml_wellformed {report['cml_wellformed']}, call_exact_match "
        f"{report['call_exact_match']}, result_use {report['result_use']}"
    )
    return {k: v for k, v in report.items() if k != "details"}


def _data_summary(stats: dict) -> dict:
    keys = (
        "tasks",
        "tasks_per_kind",
        "tasks_per_source",
        "examples",
        "tokens",
        "loss_tokens",
        "packed_tokens",
        "packing_saving",
        "rows",
    )
    return {k: stats.get(k) for k in keys}


def headline(metrics: dict) -> dict:
    """The top-level figures of `metrics.json`."""
    held = metrics.get("held_out") or {}
    return {
        k: held.get(k)
        for k in ("cml_wellformed", "call_exact_match", "result_use", "trap_discipline")
    }


def shipped_root() -> Path:
    """Where the package keeps its adapters (`asynclm/data/adapters`)."""
    import importlib.resources

    return Path(str(importlib.resources.files("asynclm"))) / "data" / "adapters"


def ship(out: Path, name: str = ADAPTER_NAME) -> Path:
    """Copies a run's adapter into the package (`asynclm/data/adapters/<name>`)."""
    target = shipped_root() / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(out / "adapter", target)
    return target


def environment() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
    }
