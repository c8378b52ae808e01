"""Which causal attention multi-token chunks use: torch's flash attention or the native one.

The native kernel (`kernels/csrc/attention.cpp`) was written for this decoder's shapes and
measured faster than torch's on an AVX-512 machine; on another CPU the balance may differ. So
the engine times both on the model's own head shape, at a short and a long chunk, with the
thread count its prefills use, and keeps the native one only where it is faster at both. The
timings are cached per machine with the kernel timings (`TimingStore`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from asynclm.engine.config import ModelConfig
from asynclm.engine.kernels.ops import CAUSAL_DIM, Ops
from asynclm.engine.tuning import TimingStore

LENGTHS = (256, 1024)  # chunk lengths timed
_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class CausalChoice:
    """The causal attention in use and what it was chosen from.

    Attributes:
        native: Whether the native kernel serves multi-token chunks.
        timings: Chunk length -> "torch" / "native" -> milliseconds per call (best round).
        cached: Read from the machine's cache rather than measured now.
        reason: Why, when the native kernel was not even timed.
    """

    native: bool
    timings: dict[int, dict[str, float]]
    cached: bool = False
    reason: str = ""

    def describe(self) -> str:
        """e.g. `native (256: 3.1 vs 7.4 ms; 1024: 12.0 vs 21.3 ms, native vs torch)`."""
        if not self.timings:
            return f"torch ({self.reason})"
        parts = "; ".join(
            f"{n}: {t['native']:.1f} vs {t['torch']:.1f} ms"
            for n, t in sorted(self.timings.items())
        )
        return f"{'native' if self.native else 'torch'} ({parts}, native vs torch)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "native": self.native,
            "timings_ms": {str(n): t for n, t in self.timings.items()},
            "cached": self.cached,
            "reason": self.reason,
        }


def choose_causal(
    config: ModelConfig, ops: Ops, threads: int, *, store: TimingStore, retune: bool = False
) -> CausalChoice:
    """Time (or read back) both causal attentions for `config`'s heads at `threads` threads."""
    if not ops.native:
        return CausalChoice(False, {}, reason="no native kernels")
    if config.head_dim % CAUSAL_DIM:
        return CausalChoice(False, {}, reason=f"head_dim {config.head_dim} not a multiple of 64")
    shape = f"{config.num_heads}x{config.num_kv_heads}x{config.head_dim}"
    key = f"causal-v1|{shape}|{','.join(map(str, LENGTHS))}|threads={threads}"
    saved = None if retune else store.get(key)
    cached = saved is not None and all(n in saved for n in LENGTHS)
    if saved is None or not cached:
        print(
            "asynclm: measuring the attention kernels on this machine (cached afterwards)...",
            file=sys.stderr,
            flush=True,
        )
        saved = measure(config, threads)
        store.put(key, saved)
        store.save()
    faster = all(saved[n]["native"] < saved[n]["torch"] for n in LENGTHS)
    return CausalChoice(faster, saved, cached)


@torch.inference_mode()
def measure(config: ModelConfig, threads: int) -> dict[int, dict[str, float]]:
    """Milliseconds per call of each causal attention at each length of `LENGTHS` (interleaved
    rounds, the fastest kept), on random data of the model's head shape."""
    g = torch.Generator().manual_seed(0)
    heads, kv_heads, dim = config.num_heads, config.num_kv_heads, config.head_dim
    kinds = {"torch": Ops(native=False), "native": Ops(native=True, native_causal=True)}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best: dict[int, dict[str, float]] = {n: {} for n in LENGTHS}
    try:
        for n in LENGTHS:
            pool = torch.randn(1, 2, n, kv_heads, dim, generator=g)
            q = torch.randn(n, heads * dim, generator=g)
            for ops in kinds.values():  # warm up
                ops.causal_attention(q, pool, 0, 0, n, kv_heads)
            for _ in range(_ROUNDS):
                for name, ops in kinds.items():
                    start = time.perf_counter()
                    ops.causal_attention(q, pool, 0, 0, n, kv_heads)
                    ms = (time.perf_counter() - start) * 1e3
                    best[n][name] = min(ms, best[n].get(name, ms))
    finally:
        torch.set_num_threads(before)
    return best
