"""Decode speed of a LoRA adapter kept unmerged (exact Q4_1 base + low-rank) vs merged (fp32).

One loaded model, one engine; the weight policy is switched between `auto` (the tuner may pick
the `q4_1_lora` kernels) and `fp32` (merged weights only), rounds interleaved so the machine's
drift hits both alike. Also reports the plain model (no adapter) for scale, the max logit
difference and the greedy agreement between the two adapted paths.

    python -m asynclm.bench.lora --adapter DIR [--tokens 64] [--reps 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import anyio
import torch

from asynclm.bench.common import machine, write_json
from asynclm.bench.engine import REAL_TEXT, engine_generate
from asynclm.engine.engine import Engine


async def _decode_logits(engine: Engine, tokens: list[int]) -> torch.Tensor:
    async with engine.context() as ctx:
        ctx.append(tokens[:-8])
        await ctx.flush()
        return torch.cat([await ctx.forward([t]) for t in tokens[-8:]])


async def _tok_s(engine: Engine, prompt: list[int], new: int) -> tuple[float, list[int]]:
    seconds, outputs = await engine_generate(engine, [prompt], new)
    return new / seconds, outputs[0]


async def run(adapter: str, new: int, reps: int) -> dict[str, Any]:
    engine: Any = Engine.load(adapter=adapter)  # its model is the engine's `Transformer`
    plain = Engine.load(adapter=None)
    prompt = engine.tokenizer.encode(REAL_TEXT)[:64]
    unmerged_bytes = engine.model.decode_bytes()
    plans = {s.site: s.plan for s in (engine.kernels.sites if engine.kernels is not None else ())}
    samples: dict[str, list[float]] = {"unmerged": [], "merged": [], "plain": []}
    outs: dict[str, list[int]] = {}
    for _ in range(reps):
        for name, spec in (("unmerged", "auto"), ("merged", "fp32")):
            engine.use_weights(spec)
            tok_s, outs[name] = await _tok_s(engine, prompt, new)
            samples[name].append(tok_s)
        samples["plain"].append((await _tok_s(plain, prompt, new))[0])
    engine.use_weights("fp32")
    merged_bytes = engine.model.decode_bytes()
    merged_logits = await _decode_logits(engine, engine.tokenizer.encode(REAL_TEXT))
    engine.use_weights("auto")
    unmerged_logits = await _decode_logits(engine, engine.tokenizer.encode(REAL_TEXT))
    agree = sum(a == b for a, b in zip(outs["unmerged"], outs["merged"], strict=True)) / new
    med = {name: statistics.median(v) for name, v in samples.items()}
    return {
        "machine": machine(),
        "adapter": adapter,
        "tokens": new,
        "reps": reps,
        "decode_tok_s": med,
        "samples_tok_s": samples,
        "speedup_unmerged_vs_merged": med["unmerged"] / med["merged"],
        "weight_mb_per_token": {"unmerged": unmerged_bytes / 1e6, "merged": merged_bytes / 1e6},
        "max_logit_diff": float((unmerged_logits - merged_logits).abs().max()),
        "greedy_agreement": agree,
        "plans": {site: [list(step) for step in plan] for site, plan in plans.items()},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--adapter", default="auto", help="adapter folder, or auto (the shipped one)"
    )
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default="runs/bench_lora.json")


def main(args: argparse.Namespace) -> int:
    from asynclm.engine.loader import resolve_adapter

    adapter = resolve_adapter("smollm2-135m", args.adapter)
    if adapter is None:
        raise ValueError("--adapter: no adapter (none shipped, or 'none' given); name a folder")
    start = time.perf_counter()
    results = anyio.run(run, str(adapter), args.tokens, args.reps)
    write_json(args.json, results)
    med = results["decode_tok_s"]
    print(
        f"decode batch 1, {args.tokens} tokens, median of {args.reps}: "
        f"unmerged {med['unmerged']:.1f} tok/s, merged {med['merged']:.1f} tok/s "
        f"({results['speedup_unmerged_vs_merged']:.2f}x), plain model {med['plain']:.1f} tok/s; "
        f"max logit diff {results['max_logit_diff']:.2e}, greedy agreement "
        f"{results['greedy_agreement']:.3f}; {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
