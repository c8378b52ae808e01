"""`asynclm finetune`: teach a model CML with LoRA and write the adapter, config and metrics.

asynclm finetune                      # the default preset: <= 30 minutes on a 2-core CPU
asynclm finetune --preset long --ship # the shipped adapter (about 2 hours)
asynclm finetune --model tiny --steps 3
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from asynclm.finetune.pipeline import PRESETS

    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="run size (default: 'default'; 'tiny' when --model tiny)",
    )
    p.add_argument("--model", default=None, help="smollm2-135m, tiny, or a model folder")
    p.add_argument("--out", default="runs/finetune", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--ship",
        action="store_true",
        help="copy the adapter into asynclm/data/adapters (the default adapter)",
    )
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--lr", type=float, dest="learning_rate", help="peak learning rate")
    p.add_argument("--lora-r", type=int, help="LoRA rank")
    p.add_argument("--lora-alpha", type=int, help="LoRA alpha")
    p.add_argument("--lora-targets", help="comma-separated module names (q_proj,v_proj,...)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="bf16: autocast; auto (default): bf16 where a short measurement finds it faster",
    )
    p.add_argument("--threads", type=int, help="CPU threads (default: measured)")
    p.add_argument("--max-minutes", type=float, help="stop training after this long")
    p.add_argument("--bank-tasks", type=int, help="synthetic tasks from the template bank")
    p.add_argument(
        "--live",
        type=int,
        dest="live_per_category",
        help="BFCL live_* entries per category (0: none)",
    )
    p.add_argument(
        "--harness-share",
        type=float,
        help="share of the bank's independent-call tasks also written in the BFCL harness's "
        "style (default 0: none)",
    )
    p.add_argument(
        "--mix",
        type=_mix,
        help="weights of bank task kinds, e.g. repeated=0.15,parallel=0.2 (others keep the "
        "preset's)",
    )
    p.add_argument(
        "--init-adapter",
        help="start from this trained adapter folder instead of a fresh one (a second stage "
        "of training, e.g. on new data)",
    )
    p.add_argument("--eval-tasks", type=int, help="held-out tasks evaluated after training")
    p.add_argument("--seed", type=int)


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asynclm.finetune.pipeline import configure, run, ship

    shape = [o for o in ("lora_r", "lora_alpha", "lora_targets") if getattr(args, o) is not None]
    if args.init_adapter is not None and shape:
        flags = ", ".join("--" + o.replace("_", "-") for o in shape)
        raise SystemExit(
            f"asynclm finetune: {flags} cannot be combined with --init-adapter: training goes "
            "on with the starting adapter's own LoRA shape"
        )
    preset = args.preset or ("tiny" if args.model == "tiny" else "default")
    names = (
        "model",
        "steps",
        "learning_rate",
        "lora_r",
        "lora_alpha",
        "precision",
        "threads",
        "max_minutes",
        "bank_tasks",
        "live_per_category",
        "harness_share",
        "mix",
        "init_adapter",
        "eval_tasks",
        "seed",
    )
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.lora_targets:
        overrides["lora_targets"] = tuple(t.strip() for t in args.lora_targets.split(",") if t)
    cfg = configure(preset, **overrides)
    out = Path(args.out)
    print(f"asynclm finetune: preset {preset}, model {cfg.train.model}, output {out}")
    metrics = run(cfg, out, resume=args.resume, progress=lambda items: tqdm(list(items)))
    print(f"adapter: {out / 'adapter'}   metrics: {out / 'metrics.json'}")
    for key in ("cml_wellformed", "call_exact_match", "result_use", "trap_discipline"):
        if metrics.get(key) is not None:
            print(f"  {key}: {metrics[key]}")
    print(f"  train minutes: {metrics['train_minutes']}")
    if args.ship:
        print(f"shipped to {ship(out)}")
    return 0


def _mix(text: str) -> dict[str, float]:
    """`kind=weight,...` -> {kind: weight} (kinds are checked when the data are built)."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = part.partition("=")
        try:
            weights[kind.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or weights[kind.strip()] < 0:
            raise argparse.ArgumentTypeError(f"expected kind=weight (weight >= 0), got {part!r}")
    return weights
