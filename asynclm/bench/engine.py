"""`asynclm bench engine`: the inference core beside transformers, same weights, one process.

Measured (medians over --reps runs, both sides on the same threads):
- prefill: time to first token for prompts of 512 and 2048 tokens (transformers:
  `generate(max_new_tokens=1)`; ours: a context, the prompt, one generated token);
- decode at batch 1: greedy tokens/s of one sequence;
- concurrency: aggregate tokens/s of 8 contexts generating concurrently (ours, batched by the
  scheduler) vs transformers' static batch of 8;
- greedy outputs compared token by token.
`--fp16-decode` adds a run with half-precision weight copies for decode steps, with its logit
difference and greedy agreement beside the speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import anyio
import torch

from asynclm.bench.common import machine, table, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--prefill", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--fp16-decode", action="store_true", help="also measure half-precision decode weights"
    )
    p.add_argument("--json", default=None, help="write the figures here")


def _prompts(n: int, count: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 40000, (count, n), generator=g).tolist()


# ---- transformers side -----------------------------------------------------------------------
def hf_generate(model: Any, prompts: list[list[int]], new: int) -> tuple[float, list[list[int]]]:
    ids = torch.tensor(prompts, device=model.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
    return time.perf_counter() - t0, out[:, ids.shape[1] :].tolist()


# ---- engine side -----------------------------------------------------------------------------
async def engine_generate(
    engine: Any, prompts: list[list[int]], new: int
) -> tuple[float, list[list[int]]]:
    outputs: list[list[int]] = [[] for _ in prompts]

    async def one(i: int) -> None:
        async with engine.context() as ctx:
            ctx.append(prompts[i])
            result = await ctx.generate(max_tokens=new, stop_at_eos=False).collect()
            outputs[i] = list(result.tokens)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(len(prompts)):
            tg.start_soon(one, i)
    return time.perf_counter() - t0, outputs


def _median_pair(run_ours, run_ref, reps: int) -> tuple[float, float, Any, Any]:
    ours, ref, out_ours, out_ref = [], [], None, None
    for _ in range(reps):  # interleaved, so drifts of the machine hit both sides alike
        t, out_ours = run_ours()
        ours.append(t)
        t, out_ref = run_ref()
        ref.append(t)
    return statistics.median(ours), statistics.median(ref), out_ours, out_ref


def _agreement(a: list[list[int]], b: list[list[int]]) -> float:
    pairs = [(x, y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=False)]
    return sum(x == y for x, y in pairs) / max(1, len(pairs))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from asynclm.engine.engine import Engine
    from asynclm.engine.loader import to_transformers
    from asynclm.engine.model import Transformer

    engine = Engine.load(args.model)
    if not isinstance(engine.model, Transformer):
        raise ValueError("the engine benchmark needs a transformer model, not a scripted one")
    model = to_transformers(engine.model)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ours = lambda p, n: anyio.run(engine_generate, engine, p, n)  # noqa: E731
    ref = lambda p, n: hf_generate(model, p, n)  # noqa: E731
    ours(_prompts(8, 1), 2), ref(_prompts(8, 1), 2)  # warm up both
    results: dict[str, Any] = {"model": args.model, "machine": machine(), "reps": args.reps}
    rows: list[tuple[str, ...]] = []
    for n in args.prefill:
        p = _prompts(n, 1, seed=n)
        t_ours, t_ref, _, _ = _median_pair(lambda p=p: ours(p, 1), lambda p=p: ref(p, 1), args.reps)
        results[f"prefill_{n}"] = {
            "engine_s": t_ours,
            "transformers_s": t_ref,
            "speedup": t_ref / t_ours,
        }
        rows.append(
            (
                f"prefill {n} tokens (TTFT)",
                f"{t_ours:.3f} s",
                f"{t_ref:.3f} s",
                f"{t_ref / t_ours:.2f}x",
            )
        )
        print(f"prefill {n}: done", file=sys.stderr)
    new = args.decode_tokens
    p1 = _prompts(16, 1, seed=1)
    t_ours, t_ref, g_ours, g_ref = _median_pair(
        lambda: ours(p1, new), lambda: ref(p1, new), args.reps
    )
    tok_ours, tok_ref = new / t_ours, new / t_ref
    results["decode_batch1"] = {
        "engine_tok_s": tok_ours,
        "transformers_tok_s": tok_ref,
        "speedup": tok_ours / tok_ref,
        "engine_gb_s": weight_bytes * tok_ours / 1e9,
    }
    results["engine_decode_tok_s"] = tok_ours
    rows.append(
        (
            "decode batch 1 (tok/s)",
            f"{tok_ours:.1f}",
            f"{tok_ref:.1f}",
            f"{tok_ours / tok_ref:.2f}x",
        )
    )
    pb = _prompts(16, args.batch, seed=2)
    tb_ours, tb_ref, b_ours, b_ref = _median_pair(
        lambda: ours(pb, new), lambda: ref(pb, new), args.reps
    )
    agg_ours, agg_ref = args.batch * new / tb_ours, args.batch * new / tb_ref
    results[f"concurrent{args.batch}"] = {
        "engine_tok_s": agg_ours,
        "transformers_tok_s": agg_ref,
        "speedup": agg_ours / agg_ref,
    }
    if args.batch != 8:
        results["concurrent8"] = results[f"concurrent{args.batch}"]
    rows.append(
        (
            f"{args.batch} concurrent (tok/s)",
            f"{agg_ours:.1f}",
            f"{agg_ref:.1f}",
            f"{agg_ours / agg_ref:.2f}x",
        )
    )
    agreement = _agreement([*g_ours, *b_ours], [*g_ref, *b_ref])
    results["greedy_match"] = agreement == 1.0
    results["greedy_agreement"] = agreement
    if args.fp16_decode:
        rows.append(
            _half_decode(engine, results, p1, pb, new, g_ours, b_ours, tok_ref, agg_ref, args.reps)
        )
    print(table(rows, ("measure", "asynclm", "transformers", "speedup")))
    print(
        f"greedy outputs identical: {results['greedy_match']} (agreement {agreement:.3f}); "
        f"decode reads {weight_bytes / 1e6:.0f} MB of weights per step "
        f"= {results['decode_batch1']['engine_gb_s']:.1f} GB/s"
    )
    return results


def _half_decode(engine, results, p1, pb, new, g32, b32, tok_ref, agg_ref, reps) -> tuple[str, ...]:
    engine.model.set_decode_weights(torch.float16)
    try:
        times, outs = [], None
        for _ in range(reps):
            t, outs = anyio.run(engine_generate, engine, p1, new)
            times.append(t)
        tok = new / statistics.median(times)
        _, bouts = anyio.run(engine_generate, engine, pb, new)
        diff = anyio.run(_logit_diff, engine, p1[0] + g32[0][:8])
    finally:
        engine.model.set_decode_weights(None)
    agree = _agreement([*(outs or []), *bouts], [*g32, *b32])
    results["fp16_decode"] = {
        "engine_tok_s": tok,
        "speedup_vs_transformers": tok / tok_ref,
        "greedy_agreement_vs_fp32": agree,
        "max_logit_diff": diff,
    }
    return (
        "decode b1, fp16 weights (tok/s)",
        f"{tok:.1f}",
        f"{tok_ref:.1f}",
        f"{tok / tok_ref:.2f}x (agree {agree:.2f}, dlogit {diff:.3f})",
    )


async def _logit_diff(engine: Any, tokens: list[int]) -> float:
    """Max |logit| difference of single-token decode steps, half vs fp32 weights."""
    rows = []
    for half in (True, False):
        engine.model.set_decode_weights(torch.float16 if half else None)
        async with engine.context() as ctx:
            ctx.append(tokens[:-4])
            await ctx.flush()
            rows.append(torch.cat([await ctx.forward([t]) for t in tokens[-4:]]))
    return float((rows[0] - rows[1]).abs().max())


def main(args: argparse.Namespace) -> int:
    results = run(args)
    write_json(args.json, results)
    return 0
