"""Ways to multiply by one linear weight; the tuner measures them and picks one per batch size.

- `plain`: `F.linear` on the weight as stored (MKL / oneDNN GEMM).
- `packed`: the weight reordered once into oneDNN's blocked layout (fast for few rows).
- `q4_1`, `q8_0`: the native block-quantized kernels (`csrc/quant.cpp`).
- `bf16`, `fp16`, `bf16_packed`: half-precision copies (AMX / AVX-512 BF16 machines).
- `q4_1_lora`, `q8_0_lora`: a LoRA adapter kept unmerged (`kernels.lowrank`): the base weight
  on its exact block kernel plus the low-rank product in float32. Same W as the merged one.

Every kernel computes `x @ W.T + b` for the same W (a half-precision or block copy *is* W when
the weights were rounded to that format, see `asynclm.engine.weights`). A kernel this machine
cannot run is simply not offered (`make_kernel` returns None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from asynclm.engine.kernels.check import native_ready
from asynclm.engine.kernels.formats import BlockWeight
from asynclm.engine.kernels.lowrank import LowRank

FP32_KERNELS = ("plain", "packed")
BLOCK_KERNELS = ("q4_1", "q8_0")
HALF_KERNELS = ("bf16", "bf16_packed", "fp16")
LOWRANK_KERNELS = ("q4_1_lora", "q8_0_lora")
_HALF_DTYPES = {"bf16": torch.bfloat16, "bf16_packed": torch.bfloat16, "fp16": torch.float16}
_PACK_ROWS_HINT = 8  # oneDNN picks its blocking for about this many rows; any count works


class LinearKernel(Protocol):
    """`x [rows, in] -> x @ W.T + b [rows, out]`."""

    @property
    def name(self) -> str: ...

    @property
    def nbytes(self) -> int:
        """Bytes of weight one product reads."""
        ...

    def __call__(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True, slots=True, eq=False)
class Plain:
    weight: Tensor
    bias: Tensor | None
    name: str = "plain"

    @property
    def nbytes(self) -> int:
        return _nbytes(self.weight)

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


@dataclass(frozen=True, slots=True, eq=False)
class Packed:
    packed: Tensor
    bias: Tensor | None
    name: str = "packed"

    @property
    def nbytes(self) -> int:
        return _nbytes(self.packed)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), self.packed, self.bias, "none", [], ""
        )


@dataclass(frozen=True, slots=True, eq=False)
class Block:
    weight: BlockWeight
    bias: Tensor | None
    name: str = "q8_0"

    @property
    def nbytes(self) -> int:
        return self.weight.nbytes

    def __call__(self, x: Tensor) -> Tensor:
        w, x = self.weight, x.contiguous()
        rows = w.block_rows
        bias = None if self.bias is None else self.bias[:rows]
        if w.mins is None:
            out = torch.ops.asynclm.q8_0_linear(x, w.qweight, w.scales, bias)
        else:
            out = torch.ops.asynclm.q4_1_linear(x, w.qweight, w.scales, w.mins, bias)
        if w.tail is None:
            return out
        tail_bias = None if self.bias is None else self.bias[rows:]
        return torch.cat((out, F.linear(x, w.tail, tail_bias)), dim=-1)


@dataclass(frozen=True, slots=True, eq=False)
class BlockLowRank:
    """The base weight on its block kernel plus an unmerged low-rank update: `W x + B (A x)`."""

    base: Block
    a: Tensor
    b: Tensor
    name: str = "q4_1_lora"

    @property
    def nbytes(self) -> int:
        return self.base.nbytes + _nbytes(self.a) + _nbytes(self.b)

    def __call__(self, x: Tensor) -> Tensor:
        return self.base(x).addmm_(F.linear(x, self.a), self.b.t())


@dataclass(frozen=True, slots=True, eq=False)
class Half:
    """A bf16/fp16 copy; inputs are rounded to it and outputs come back as float32."""

    weight: Tensor  # plain, or oneDNN-packed when `packed`
    bias: Tensor | None
    name: str = "bf16"
    packed: bool = False

    @property
    def nbytes(self) -> int:
        return _nbytes(self.weight)

    def __call__(self, x: Tensor) -> Tensor:
        h = x.to(self.weight.dtype if not self.packed else torch.bfloat16)
        bias = None if self.bias is None else self.bias.to(h.dtype)
        if self.packed:
            out = torch.ops.mkldnn._linear_pointwise(
                h.contiguous(), self.weight, bias, "none", [], ""
            )
        else:
            out = F.linear(h, self.weight, bias)
        return out.to(x.dtype)


def make_kernel(
    name: str,
    weight: Tensor,
    bias: Tensor | None,
    block: BlockWeight | None = None,
    lowrank: LowRank | None = None,
) -> LinearKernel | None:
    """The kernel `name` for this weight, or None where this machine (or weight) has none.

    `weight` is the layer's full weight (an adapter merged in); `lowrank`, when the layer has
    one, the same weight as an exact block base plus its unmerged update.
    """
    weight = weight.detach()
    if name == "plain":
        return Plain(weight, bias)
    if name == "packed":
        packed = _pack(weight)
        return None if packed is None else Packed(packed, bias)
    if name in BLOCK_KERNELS:
        ok = block is not None and block.format == name and native_ready()
        return Block(block, bias, name) if ok and block is not None else None
    if name in HALF_KERNELS:
        return _half(name, weight, bias)
    if name in LOWRANK_KERNELS:
        return _lowrank(name, bias, lowrank)
    raise ValueError(f"unknown linear kernel {name!r}")


def _pack(weight: Tensor) -> Tensor | None:
    """The weight in oneDNN's blocked layout, or None where oneDNN cannot (not CPU, no ISA)."""
    if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.bfloat16):
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, _PACK_ROWS_HINT)
        probe = torch.zeros(1, weight.shape[1], dtype=weight.dtype)
        torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
    except (RuntimeError, AttributeError, NotImplementedError):
        return None
    return packed


def _lowrank(name: str, bias: Tensor | None, lowrank: LowRank | None) -> LinearKernel | None:
    fmt = name.removesuffix("_lora")
    if lowrank is None or lowrank.base.format != fmt or not native_ready():
        return None
    return BlockLowRank(Block(lowrank.base, bias, fmt), lowrank.a, lowrank.b, name)


def _half(name: str, weight: Tensor, bias: Tensor | None) -> LinearKernel | None:
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return None
    half = weight.to(_HALF_DTYPES[name]).contiguous()
    if name != "bf16_packed":
        return Half(half, bias, name)
    packed = _pack(half)
    return None if packed is None else Half(packed, bias, name, packed=True)


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()  # oneDNN's packed layout has no `nbytes`
