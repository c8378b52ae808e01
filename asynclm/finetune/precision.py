"""The training's number format: fp32, or bf16 autocast where this machine runs it faster.

bf16 is not faster everywhere: on a CPU without bf16 instructions (AVX2 only) torch emulates it
and a LoRA step took 15 times longer than in fp32; with AVX-512 BF16 or AMX its matrix products
run several times faster than fp32. So `auto` decides by timing, on this machine, the work that
dominates a training step — a forward and backward through a linear layer of the model's shape
— in both formats, and keeps bf16 only where it wins clearly.

With bf16, the frozen weights of the adapted linear layers are stored in bf16: autocast reads
them in bf16 anyway, so the products are the same, and each forward is spared a cast of every
weight (a tenth of a step, measured on a 2-core CPU). The trained LoRA weights stay fp32.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# bf16 must beat fp32 by this factor to be chosen: a close call is not worth its rounding.
_MARGIN = 0.8


@dataclass(frozen=True, slots=True)
class PrecisionChoice:
    """The format a run trains in, and why.

    Attributes:
        precision: "fp32" or "bf16".
        requested: What the configuration asked for ("auto", "fp32" or "bf16").
        measured: Seconds per timed forward + backward in each format (`auto` on a CPU).
        reason: One line saying how the choice was made.
    """

    precision: str
    requested: str
    measured: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "requested": self.requested,
            "measured_s": self.measured,
            "reason": self.reason,
        }


def choose_precision(requested: str, device: str | None = None) -> PrecisionChoice:
    """Resolves `requested` ("auto", "fp32", "bf16") for `device` ("cpu"/"cuda"; default: CUDA
    when present).

    Raises:
        ValueError: An unknown precision.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return PrecisionChoice(requested, requested, reason="as configured")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        fast = torch.cuda.is_bf16_supported()
        reason = "CUDA device with bf16" if fast else "CUDA device without bf16"
        return PrecisionChoice("bf16" if fast else "fp32", requested, reason=reason)
    measured = {name: _time(functools.partial(_linear_step, bf16)) for name, bf16 in _FORMATS}
    faster = measured["bf16"] < _MARGIN * measured["fp32"]
    ratio = measured["fp32"] / measured["bf16"]
    reason = f"measured: bf16 {ratio:.2f}x fp32's speed ({'>' if faster else '<='} {1 / _MARGIN})"
    return PrecisionChoice("bf16" if faster else "fp32", requested, measured, reason)


_FORMATS = (("fp32", False), ("bf16", True))


def _linear_step(bf16: bool, rows: int = 512, width: int = 576, out: int = 1536) -> None:
    """A forward and backward through one linear layer of SmolLM2's MLP shape."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, width, generator=generator, requires_grad=True)
    weight = torch.randn(out, width, generator=generator)
    if bf16:
        weight = weight.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = x @ weight.T
    y.float().sum().backward()


def _time(work: Callable[[], None], repeats: int = 5) -> float:
    """The median wall time of `work` after one warm-up, in seconds.

    One warm-up takes the first call's costs (kernel selection, allocation); then the median,
    which a burst of other work on a shared CPU moves less than the mean.
    """
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return round(sorted(times)[len(times) // 2], 6)


def store_frozen_in_bf16(model: Any) -> int:
    """Stores the frozen weight of every LoRA-adapted linear layer in bf16; returns how many.

    Only weights that do not train and that autocast would cast to bf16 anyway: products are
    unchanged, and the cast per forward is gone. Norms, embeddings and the adapter stay as
    they are.
    """
    count = 0
    for name, module in model.named_modules():
        if not name.endswith("base_layer") or not isinstance(module, torch.nn.Linear):
            continue
        if module.weight.requires_grad or module.weight.dtype == torch.bfloat16:
            continue
        module.weight.data = module.weight.data.to(torch.bfloat16)
        if module.bias is not None and not module.bias.requires_grad:
            module.bias.data = module.bias.data.to(torch.bfloat16)
        count += 1
    return count
