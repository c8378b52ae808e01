"""`asynclm bench engine`: the inference core beside transformers, same weights, one process.

Measured (medians over --reps runs, both sides on the same threads):
- prefill: time to first token for prompts of 512 and 2048 tokens (transformers:
  `generate(max_new_tokens=1)`; ours: a context, the prompt, one generated token);
- decode at batch 1: greedy tokens/s of one sequence;
- concurrency: aggregate tokens/s of 8 contexts generating concurrently (ours, batched by the
  scheduler) vs transformers' static batch of 8;
- greedy outputs compared token by token;
- llama.cpp (`llama-cpp-python`, when importable) on the same GGUF file (Q4_1) and on a Q8_0 copy
  of it, same threads, same run: prefill and decode at batch 1;
- the share of a decode step spent outside the model's forward (`step_overhead_fraction`:
  scheduling, sampling, the hand-over to the forward thread);
- the CPU (`cpu.model`, `cpu.flags`) and the kernels chosen on it at load.
- transformers in bf16 (prefill and decode), where bf16 matrix products beat fp32 on this CPU
  (measured at start: AMX / AVX-512 BF16 machines), or with `--transformers-bf16 on`;
`--weights int8,bf16` adds, per approximate weight format, its decode and prefill speed beside
its quality change on real text (max logit difference, greedy agreement with the exact weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import anyio
import torch

from asynclm.bench import llamacpp
from asynclm.bench.common import machine, table, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--prefill", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--weights",
        default="",
        help="approximate weight formats to measure too, comma-separated (int8, bf16, fp16)",
    )
    p.add_argument(
        "--no-llamacpp", action="store_true", help="skip the llama.cpp columns even if importable"
    )
    p.add_argument(
        "--transformers-bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="also time transformers in bf16; auto: where bf16 products beat fp32 here",
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


def bf16_is_fast(rows: int = 256, reps: int = 5) -> bool:
    """Whether a bf16 matrix product beats fp32 on this CPU (a short measurement, the default
    model's MLP shape): true on machines with AMX or AVX-512 BF16, false where bf16 is emulated."""
    x, w = torch.randn(rows, 576), torch.randn(1536, 576)

    def best(dtype: torch.dtype) -> float:
        a, b = x.to(dtype), w.to(dtype)
        torch.nn.functional.linear(a, b)  # warm up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.nn.functional.linear(a, b)
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(torch.bfloat16) < best(torch.float32)


def _bf16_peer(args: argparse.Namespace, model: Any) -> Any:
    """transformers in bf16 (a copy of the fp32 model), when asked or where bf16 is fast."""
    if args.transformers_bf16 == "off" or (args.transformers_bf16 == "auto" and not bf16_is_fast()):
        return None
    import copy

    return copy.deepcopy(model).to(torch.bfloat16)


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


# A passage of plain English for the quality measures (real text, not random token ids).
REAL_TEXT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. From the gallery he "
    "could see the fishing boats returning to the harbour, their lamps swaying with the swell. "
    "He wrote the weather in a small notebook: the direction of the wind, the height of the "
    "waves, the colour of the sky before the storm. Years later, his daughter found the "
    "notebooks in a trunk and read them one winter, page by page, until she knew"
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from asynclm.engine.cpu import cpu_info
    from asynclm.engine.engine import Engine
    from asynclm.engine.loader import to_transformers
    from asynclm.engine.model import Transformer

    # the inference core on the model's own weights, as transformers gets them (no adapter)
    engine = Engine.load(args.model, adapter=None)
    if not isinstance(engine.model, Transformer):
        raise ValueError("the engine benchmark needs a transformer model, not a scripted one")
    model = to_transformers(engine.model)
    ours = lambda p, n: anyio.run(engine_generate, engine, p, n)  # noqa: E731
    ref = lambda p, n: hf_generate(model, p, n)  # noqa: E731
    ours(_prompts(8, 1), 2), ref(_prompts(8, 1), 2)  # warm up both
    cpu = cpu_info()
    results: dict[str, Any] = {
        "model": args.model,
        "machine": machine(),
        "cpu": {"model": cpu.model, "flags": list(cpu.notable_flags), "key": cpu.key},
        "reps": args.reps,
        "kernels": None if engine.kernels is None else engine.kernels.as_dict(),
        "threads": None if engine.runner.threads is None else engine.runner.threads.as_dict(),
        "attention": None if engine.attention is None else engine.attention.as_dict(),
        "native_ops": engine.model.ops.native,
    }
    peers = _llamacpp_peers(args)
    bf16 = _bf16_peer(args, model)
    results["transformers_bf16"] = bf16 is not None
    if bf16 is not None:
        hf_generate(bf16, _prompts(8, 1), 2)  # warm up
    rows: list[tuple[str, ...]] = []
    for n in args.prefill:
        p = _prompts(n, 1, seed=n)
        t_ours, t_ref, _, _ = _median_pair(lambda p=p: ours(p, 1), lambda p=p: ref(p, 1), args.reps)
        entry = {"engine_s": t_ours, "transformers_s": t_ref, "speedup": t_ref / t_ours}
        cells = []
        if bf16 is not None:
            t_bf = statistics.median(hf_generate(bf16, p, 1)[0] for _ in range(args.reps))
            entry["transformers_bf16_s"] = t_bf
            entry["speedup_vs_transformers_bf16"] = t_bf / t_ours
            cells.append(f"{t_bf:.3f} s ({t_bf / t_ours:.2f}x)")
        for fmt, peer in peers.items():
            t_cpp = statistics.median(peer.prefill(p[0]) for _ in range(args.reps))
            entry[f"llamacpp_{fmt}_s"] = t_cpp
            entry[f"speedup_vs_llamacpp_{fmt}"] = t_cpp / t_ours
            cells.append(f"{t_cpp:.3f} s ({t_cpp / t_ours:.2f}x)")
        results[f"prefill_{n}"] = entry
        rows.append(
            (
                f"prefill {n} tokens (TTFT)",
                f"{t_ours:.3f} s",
                f"{t_ref:.3f} s",
                f"{t_ref / t_ours:.2f}x",
                *cells,
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
        "engine_gb_s": engine.model.decode_bytes() * tok_ours / 1e9,
        "engine_weight_mb_per_token": engine.model.decode_bytes() / 1e6,
    }
    cells = []
    if bf16 is not None:
        t_bf = statistics.median(hf_generate(bf16, p1, new)[0] for _ in range(args.reps))
        results["decode_batch1"]["transformers_bf16_tok_s"] = new / t_bf
        results["decode_batch1"]["speedup_vs_transformers_bf16"] = t_bf / t_ours
        cells.append(f"{new / t_bf:.1f} ({t_bf / t_ours:.2f}x)")
    for fmt, peer in peers.items():
        t_cpp = statistics.median(peer.decode(p1[0], new)[0] for _ in range(args.reps))
        results["decode_batch1"][f"llamacpp_{fmt}_tok_s"] = new / t_cpp
        results["decode_batch1"][f"speedup_vs_llamacpp_{fmt}"] = t_cpp / t_ours
        cells.append(f"{new / t_cpp:.1f} ({t_cpp / t_ours:.2f}x)")
    results["engine_decode_tok_s"] = tok_ours
    rows.append(
        (
            "decode batch 1 (tok/s)",
            f"{tok_ours:.1f}",
            f"{tok_ref:.1f}",
            f"{tok_ours / tok_ref:.2f}x",
            *cells,
        )
    )
    results["step_overhead_fraction"] = _step_overhead(engine, p1, new, args.reps)
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
            *("–" for _ in range(len(peers) + (bf16 is not None))),
        )
    )
    agreement = _agreement([*g_ours, *b_ours], [*g_ref, *b_ref])
    results["greedy_match"] = agreement == 1.0
    results["greedy_agreement"] = agreement
    results["exact_vs_fp32"] = anyio.run(_quality, engine, "fp32")
    for spec in [w.strip() for w in args.weights.split(",") if w.strip()]:
        rows.append(_rounded(engine, spec, results, args, p1, new, tok_ref))
    for peer in peers.values():
        peer.close()
    header: tuple[str, ...] = ("measure", "asynclm", "transformers", "speedup")
    header += ("transformers bf16 (ours/theirs)",) if bf16 is not None else ()
    header += tuple(f"llama.cpp {fmt} (ours/theirs)" for fmt in peers)
    print(table([r + ("",) * (len(header) - len(r)) for r in rows], header))
    _print_notes(results, agreement)
    return results


def _llamacpp_peers(args: argparse.Namespace) -> dict[str, llamacpp.LlamaCppPeer]:
    """llama.cpp on the model's own GGUF (Q4_1) and a Q8_0 copy, when it can be had."""
    if args.no_llamacpp or args.model != "smollm2-135m" or not llamacpp.available():
        return {}
    from asynclm.engine.loader import smollm2_gguf_path

    gguf, threads = smollm2_gguf_path(), torch.get_num_threads()
    return {
        "q4_1": llamacpp.LlamaCppPeer.open(gguf, threads),
        "q8": llamacpp.LlamaCppPeer.open(llamacpp.requantized(gguf, "q8_0"), threads),
    }


def _step_overhead(engine: Any, prompts: list[list[int]], new: int, reps: int) -> float:
    """Median share of a decode run's time spent outside the model's forward."""
    shares = []
    for _ in range(reps):
        before = engine.scheduler.stats.model_seconds
        wall, _ = anyio.run(engine_generate, engine, prompts, new)
        shares.append(1.0 - (engine.scheduler.stats.model_seconds - before) / wall)
    return statistics.median(shares)


async def _greedy(engine: Any, tokens: list[int], new: int) -> list[int]:
    async with engine.context() as ctx:
        ctx.append(tokens)
        result = await ctx.generate(max_tokens=new, stop_at_eos=False).collect()
    return list(result.tokens)


async def _logits(engine: Any, tokens: list[int]) -> torch.Tensor:
    """The logits after each of the last 8 tokens, decoded one by one after the rest."""
    async with engine.context() as ctx:
        ctx.append(tokens[:-8])
        await ctx.flush()
        return torch.cat([await ctx.forward([t]) for t in tokens[-8:]])


async def _quality(engine: Any, spec: str, new: int = 64) -> dict[str, float]:
    """How the weight formats `spec` change the output vs the engine's current ones, on
    REAL_TEXT: max |logit| difference over decode steps, greedy agreement over `new` tokens."""
    tokens = engine.tokenizer.encode(REAL_TEXT)
    before = engine.weights.spec
    base_logits, base_out = await _logits(engine, tokens), await _greedy(engine, tokens, new)
    engine.use_weights(spec)
    try:
        logits, out = await _logits(engine, tokens), await _greedy(engine, tokens, new)
    finally:
        engine.use_weights(before)
    first_diff = next(
        (i for i, (a, b) in enumerate(zip(out, base_out, strict=False)) if a != b), len(out)
    )
    return {
        "max_logit_diff": float((logits - base_logits).abs().max()),
        "greedy_agreement": _agreement([out], [base_out]),
        "identical_prefix_tokens": first_diff,
        "tokens": new,
    }


def _rounded(engine, spec, results, args, p1, new, tok_ref) -> tuple[str, ...]:
    """Decode and prefill speed with approximate formats allowed, and their quality change."""
    quality = anyio.run(_quality, engine, spec)
    engine.use_weights(spec)
    try:
        times = [anyio.run(engine_generate, engine, p1, new)[0] for _ in range(args.reps)]
        n = max(args.prefill)
        pre = [
            anyio.run(engine_generate, engine, _prompts(n, 1, seed=n), 1)[0]
            for _ in range(args.reps)
        ]
    finally:
        engine.use_weights("auto")
    tok = new / statistics.median(times)
    results[f"weights_{spec}"] = {
        "decode_batch1_tok_s": tok,
        "decode_speedup_vs_exact": tok / results["decode_batch1"]["engine_tok_s"],
        f"prefill_{n}_s": statistics.median(pre),
        **quality,
    }
    return (
        f"decode b1, weights={spec} (tok/s)",
        f"{tok:.1f}",
        f"{tok_ref:.1f}",
        f"{tok / tok_ref:.2f}x (dlogit {quality['max_logit_diff']:.3f}, "
        f"greedy agree {quality['greedy_agreement']:.2f})",
    )


def _print_notes(results: dict[str, Any], agreement: float) -> None:
    d = results["decode_batch1"]
    exact = results["exact_vs_fp32"]
    print(
        f"cpu: {results['cpu']['model']} ({' '.join(results['cpu']['flags'])}); "
        f"native ops: {results['native_ops']}\n"
        f"greedy outputs identical to transformers: {results['greedy_match']} "
        f"(agreement {agreement:.3f}); exact kernels vs plain fp32 on real text: max logit diff "
        f"{exact['max_logit_diff']:.2e}, greedy agreement {exact['greedy_agreement']:.3f}\n"
        f"decode reads {d['engine_weight_mb_per_token']:.0f} MB of weights per step "
        f"= {d['engine_gb_s']:.1f} GB/s; step overhead (outside the forward): "
        f"{results['step_overhead_fraction']:.1%}"
    )
    attention = results.get("attention")
    if attention:
        times = "; ".join(
            f"{n}: {t['native']:.1f} vs {t['torch']:.1f} ms"
            for n, t in attention["timings_ms"].items()
        )
        chosen = "native" if attention["native"] else "torch's"
        print(f"causal attention of prefill chunks: {chosen} ({times or attention['reason']})")


def main(args: argparse.Namespace) -> int:
    results = run(args)
    write_json(args.json, results)
    return 0
