"""A LoRA adapter kept apart from its base weight: `y = W x + B (A x)`.

Merging an adapter (`W + B A`) moves every weight off its quantization grid, so a model whose
base weights are exact Q4_1 blocks would fall back to float32 kernels (about 5x the bytes per
decode step). Kept unmerged, the base weight stays on its exact block kernel and the low-rank
product adds `rank * (in + out)` float32 multiply-adds per row: a few percent of the layer.

A fused projection (q/k/v, gate/up) carries one `LowRank` for all its parts: the parts' `A`
matrices stacked along the rank and `B` block-diagonal, so one pair of small products serves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from asynclm.engine.kernels.formats import BlockWeight


@dataclass(frozen=True, slots=True)
class LowRank:
    """The low-rank update of one linear layer, and its base weight in an exact block format.

    Attributes:
        a: `[rank, in]` float32.
        b: `[out, rank]` float32, the adapter's scale (alpha / r) folded in.
        base: The base weight (before the update) in the block format that reproduces it bit
            for bit.
    """

    a: Tensor
    b: Tensor
    base: BlockWeight

    def __post_init__(self) -> None:
        rank, inputs = self.a.shape
        if self.b.shape[1] != rank or self.base.shape != (self.b.shape[0], inputs):
            raise ValueError(
                f"low-rank shapes do not fit: a {tuple(self.a.shape)}, b {tuple(self.b.shape)}, "
                f"base {self.base.shape}"
            )

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes a product with the base and the update reads."""
        return self.base.nbytes + self.a.nbytes + self.b.nbytes

    def delta(self) -> Tensor:
        """`B A`: what merging adds to the base weight."""
        return self.b @ self.a


def stack_parts(parts: Sequence[tuple[Tensor, Tensor, float] | int]) -> tuple[Tensor, Tensor]:
    """`(a, b)` of a fused projection from its parts, in output order.

    Args:
        parts: per part, `(a [r, in], b [out, r], scale)` where the part is adapted, else its
            output width (its rows of `b` stay zero).
    """
    adapted = [p for p in parts if not isinstance(p, int)]
    if not adapted:
        raise ValueError("a fused projection needs at least one adapted part")
    a = torch.cat([p[0].float() for p in adapted])
    widths = [p if isinstance(p, int) else p[1].shape[0] for p in parts]
    b = torch.zeros(sum(widths), a.shape[0])
    row = col = 0
    for part, width in zip(parts, widths, strict=True):
        if not isinstance(part, int):
            _, pb, scale = part
            b[row : row + width, col : col + pb.shape[1]] = pb.float() * scale
            col += pb.shape[1]
        row += width
    return a.contiguous(), b.contiguous()
