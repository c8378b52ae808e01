"""Whether the native kernels may be used: built, loaded, and right on this machine.

The C++ kernels are compiled for the CPU they run on, so code paths for other CPUs (AVX-512
here, AVX2 there) were never run where they were written. Before first use, each op is run
once on small random inputs and compared with its torch version; an op that disagrees (or
fails) turns the native kernels off for this process rather than returning wrong logits.

Whenever the native kernels are not used, `native_ops` logs one line saying why (a warning for a
failure, info when `ASYNCLM_NATIVE=0` asked for it) and the engine runs on torch's kernels.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from asynclm.engine.kernels.formats import dequantize, quantize
from asynclm.engine.kernels.native import ENV_SWITCH, load_native
from asynclm.engine.kernels.ops import CAUSAL_DIM, NATIVE_OPS, Ops

_TOLERANCE = 1e-4  # relative to the largest output value
logger = logging.getLogger("asynclm.engine")


def native_ready() -> bool:
    """True when the native ops are loaded and agree with torch on this machine."""
    return not problems() and load_native().available


@functools.lru_cache(maxsize=1)
def problems() -> tuple[str, ...]:
    """Why the native kernels are not used (empty when they are), checked once per process."""
    status = load_native()
    if not status.available:
        return (status.detail,)
    missing = [n for n in (*NATIVE_OPS, "q4_1_linear", "q8_0_linear") if not _has(n)]
    if missing:
        return (f"the native library lacks {', '.join(missing)}",)
    try:
        found = _compare()
    except Exception as e:  # an op that raises is as unusable as one that disagrees
        found = [f"the self-check raised {type(e).__name__}: {e}"]
    if found:
        return ("they disagree with torch on this machine: " + "; ".join(found),)
    return ()


def native_ops() -> Ops:
    """The fused ops: native when ready, else torch (logged once per process with the reason)."""
    ready = native_ready()
    if not ready:
        _log_fallback(problems()[0])
    return Ops(native=ready)


@functools.lru_cache(maxsize=1)
def _log_fallback(reason: str) -> None:
    level = logging.INFO if ENV_SWITCH in reason else logging.WARNING
    logger.log(level, "asynclm: native kernels off (%s); using torch's kernels", reason)


def _has(name: str) -> bool:
    return hasattr(torch.ops.asynclm, name)


@torch.inference_mode()
def _compare() -> list[str]:
    g = torch.Generator().manual_seed(0)
    native, ref = Ops(native=True), Ops(native=False)
    found = []
    for name, ours, theirs in _cases(g, native, ref):
        err = (ours - theirs).abs().max().item() / max(theirs.abs().max().item(), 1e-6)
        if not err <= _TOLERANCE:
            found.append(f"{name} (relative error {err:.1e})")
    return found


def _cases(
    g: torch.Generator, native: Ops, ref: Ops
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    x, w = rand(3, 96), rand(96)
    cases = [("rms_norm", native.rms_norm(x, w, 1e-5), ref.rms_norm(x, w, 1e-5))]
    r = rand(3, 96)
    cases.append(
        ("add_rms_norm", native.add_rms_norm(x, r, w, 1e-5)[1], ref.add_rms_norm(x, r, w, 1e-5)[1])
    )
    gu = rand(3, 80) * 4
    cases.append(("silu_mul", native.silu_mul(gu), ref.silu_mul(gu)))
    cases += _attention_cases(g, native, ref)
    weight = rand(40, 96)
    xs = rand(5, 96)
    for fmt in ("q4_1", "q8_0"):
        bw = quantize(weight, fmt)
        expect = F.linear(xs, dequantize(bw))
        if fmt == "q4_1":
            got = torch.ops.asynclm.q4_1_linear(xs, bw.qweight, bw.scales, bw.mins, None)
        else:
            got = torch.ops.asynclm.q8_0_linear(xs, bw.qweight, bw.scales, None)
        cases.append((f"{fmt}_linear", got, expect))
    return cases


def _attention_cases(
    g: torch.Generator, native: Ops, ref: Ops
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    heads, kv_heads, dim, slots = 4, 2, 16, 40
    pool = [torch.zeros(2, 2, slots, kv_heads, dim) for _ in range(2)]
    qkv = torch.randn(3, (heads + 2 * kv_heads) * dim, generator=g)
    angles = torch.rand(3, dim // 2, generator=g) * 6
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    where = torch.tensor([7, 3, 21])
    q_native = native.rope_qkv(qkv, cos, sin, pool[0], 1, where, heads, kv_heads)
    q_ref = ref.rope_qkv(qkv, cos, sin, pool[1], 1, where, heads, kv_heads)
    written = (pool[0][1, :, where].clone(), pool[1][1, :, where].clone())
    pool[0][1].normal_(generator=g)
    pool[1][1].copy_(pool[0][1])
    index = torch.randint(0, slots, (2, 9), generator=g)
    lengths = torch.tensor([9, 5])
    q = torch.randn(2, heads * dim, generator=g)
    causal, prefix = _causal_case(g), _prefix_case(g)
    return [
        ("causal_attention", *causal),
        ("prefix_attention", *prefix[0]),
        ("prefix_attention (log-sum-exp)", *prefix[1]),
        ("rope_qkv", q_native, q_ref),
        ("rope_qkv (k/v written)", *written),
        (
            "decode_attention",
            native.decode_attention(q, pool[0], 1, index, lengths, kv_heads),
            ref.decode_attention(q, pool[1], 1, index, lengths, kv_heads),
        ),
    ]


def _causal_case(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk of 19 new tokens after 30 earlier ones (more than one key block, a partial one,
    queries that see part of a block), grouped-query heads, the model's head dim."""
    heads, kv_heads, dim, slots = 6, 2, CAUSAL_DIM, 60
    pool = torch.randn(2, 2, slots, kv_heads, dim, generator=g)
    q = torch.randn(19, heads * dim, generator=g)
    native, ref = Ops(native=True, native_causal=True), Ops(native=False)
    return (
        native.causal_attention(q, pool, 1, 5, 54, kv_heads),
        ref.causal_attention(q, pool, 1, 5, 54, kv_heads),
    )


def _prefix_case(g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """7 queries over a run of 40 keys, each seeing a prefix of it (one sees none)."""
    heads, kv_heads, dim = 4, 2, CAUSAL_DIM
    pool = torch.randn(1, 2, 44, kv_heads, dim, generator=g)
    q = torch.randn(7, heads * dim, generator=g)
    visible = torch.tensor([0, 1, 5, 16, 17, 33, 40])
    native, ref = Ops(native=True, native_causal=True), Ops(native=False)
    ours = native.prefix_attention(q, pool, 0, 2, 42, kv_heads, visible)
    theirs = ref.prefix_attention(q, pool, 0, 2, 42, kv_heads, visible)
    finite = visible > 0  # -inf log-sum-exps compare as NaN
    return [(ours[0], theirs[0]), (ours[1][finite], theirs[1][finite])]
