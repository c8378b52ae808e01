"""Block-quantized weight formats (the layouts of llama.cpp's GGUF Q8_0 and Q4_1), in torch.

A weight `[out, in]` is cut into blocks of 32 inputs per output row:

- `q8_0`: `w = d * q`, q int8 in [-127, 127]; one float scale per block (8 bits + 1 per weight).
- `q4_1`: `w = d * q + m`, q in [0, 15], two per byte (byte j of a block holds q[j] in its low
  nibble and q[j + 16] in its high one); a scale and a minimum per block (4 bits + 2).

A weight that came from such a file (the default model is a Q4_1 GGUF: its layer weights lie on
the Q4_1 grid, its embeddings on the Q8_0 grid) is reproduced *exactly* by its format:
`exact_rows` finds it, so the engine can keep the weight in 4-9 bits at no quality cost.
Any other weight is rounded by `quantize` (a measured quality change, opt-in).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

BLOCK = 32
FORMATS = ("q4_1", "q8_0")  # most compact first
_LEVELS = {"q8_0": 127, "q4_1": 15}
_PROBE_ROWS = 64


@dataclass(frozen=True, slots=True)
class BlockWeight:
    """A weight in a block format: what the native linear kernels read.

    Attributes:
        format: `q8_0` or `q4_1`.
        qweight: `[rows, in]` int8 (q8_0) or `[rows, in / 2]` uint8 (q4_1).
        scales: `[rows, in / 32]` float32.
        mins: `[rows, in / 32]` float32 (q4_1), else None.
        tail: `[out - rows, in]` float32 rows after the block rows (e.g. embeddings of tokens
            added to a quantized vocabulary), else None.
    """

    format: str
    qweight: Tensor
    scales: Tensor
    mins: Tensor | None = None
    tail: Tensor | None = None

    @property
    def block_rows(self) -> int:
        return self.scales.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        extra = 0 if self.tail is None else self.tail.shape[0]
        return self.block_rows + extra, self.scales.shape[1] * BLOCK

    @property
    def nbytes(self) -> int:
        """Bytes a product with this weight reads."""
        parts = (self.qweight, self.scales, self.mins, self.tail)
        return sum(t.nbytes for t in parts if t is not None)


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown weight format {name!r}; known: {', '.join(FORMATS)}")
    return name


def can_quantize(weight: Tensor) -> bool:
    """Whether a weight can take a block format (2-D, float, inputs a multiple of 32)."""
    return weight.dim() == 2 and weight.is_floating_point() and weight.shape[1] % BLOCK == 0


def quantize(weight: Tensor, fmt: str) -> BlockWeight:
    """Round a `[out, in]` float weight to a block format (round to nearest)."""
    check_format(fmt)
    if not can_quantize(weight):
        raise ValueError(
            f"block formats need a 2-D float weight with inputs a multiple of {BLOCK}, "
            f"got {tuple(weight.shape)} {weight.dtype}"
        )
    blocks = weight.detach().float().reshape(weight.shape[0], -1, BLOCK)  # [out, nb, 32]
    if fmt == "q8_0":
        scales = blocks.abs().amax(-1) / _LEVELS[fmt]
        q = torch.round(blocks / _safe(scales)[..., None]).clamp_(-127, 127).to(torch.int8)
        return BlockWeight(fmt, q.reshape(weight.shape).contiguous(), scales.contiguous())
    mins = blocks.amin(-1)
    scales = (blocks.amax(-1) - mins) / _LEVELS[fmt]
    q = torch.round((blocks - mins[..., None]) / _safe(scales)[..., None]).clamp_(0, 15)
    q = q.to(torch.uint8)
    packed = (q[..., :16] | (q[..., 16:] << 4)).reshape(weight.shape[0], -1)
    return BlockWeight(fmt, packed.contiguous(), scales.contiguous(), mins.contiguous())


def dequantize(bw: BlockWeight) -> Tensor:
    """The float32 weight a block weight stands for."""
    rows, cols = bw.block_rows, bw.shape[1]
    if bw.format == "q8_0":
        q = bw.qweight.reshape(rows, -1, BLOCK).float()
        head = (q * bw.scales[..., None]).reshape(rows, cols)
    else:
        packed = bw.qweight.reshape(rows, -1, BLOCK // 2)
        q = torch.cat((packed & 15, packed >> 4), dim=-1).float()  # [rows, nb, 32]
        mins = bw.mins if bw.mins is not None else torch.zeros_like(bw.scales)
        head = (q * bw.scales[..., None] + mins[..., None]).reshape(rows, cols)
    return head if bw.tail is None else torch.cat((head, bw.tail))


def exact_rows(weight: Tensor, max_tail: int = 0) -> BlockWeight | None:
    """The most compact block format that reproduces `weight` bit for bit, else None.

    With `max_tail`, up to that many trailing rows that the format does not reproduce (rows
    appended to a quantized matrix, like embeddings of added tokens) are kept in float32.
    """
    if not can_quantize(weight) or weight.dtype != torch.float32:
        return None
    weight = weight.detach()
    for fmt in FORMATS:
        if not torch.equal(_roundtrip(weight[:_PROBE_ROWS], fmt), weight[:_PROBE_ROWS]):
            continue  # most weights fail on their first rows: cheap to rule out
        bw = quantize(weight, fmt)
        same = (dequantize(bw) == weight).all(dim=1)
        rows = int(same.numel() if bool(same.all()) else (~same).nonzero()[0])
        if rows == weight.shape[0]:
            return bw
        if rows > 0 and weight.shape[0] - rows <= max_tail:
            return _head(bw, rows, weight[rows:])
    return None


def _roundtrip(weight: Tensor, fmt: str) -> Tensor:
    return dequantize(quantize(weight, fmt))


def _head(bw: BlockWeight, rows: int, tail: Tensor) -> BlockWeight:
    mins = None if bw.mins is None else bw.mins[:rows].contiguous()
    return BlockWeight(
        bw.format,
        bw.qweight[:rows].contiguous(),
        bw.scales[:rows].contiguous(),
        mins,
        tail.contiguous(),
    )


def _safe(scales: Tensor) -> Tensor:
    """Scales with zeros (constant blocks) replaced by 1, to divide by."""
    return torch.where(scales == 0, torch.ones_like(scales), scales)
