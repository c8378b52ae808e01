"""The KV pool tensors: one preallocated buffer of slots shared by every context.

Slots are grouped into pages by the (torch-free) page allocator; this module only stores and
gathers. Keys are stored after RoPE, so a slot's content is valid wherever it is reused.
"""

from __future__ import annotations

import torch
from torch import Tensor

from asynclm.engine.config import ModelConfig


class KVCache:
    """`[layers, 2, num_pages * page_size, kv_heads, head_dim]` slots."""

    def __init__(
        self,
        cfg: ModelConfig,
        num_pages: int,
        page_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.page_size = page_size
        self.num_pages = num_pages
        self.data = torch.zeros(
            cfg.num_layers,
            2,
            num_pages * page_size,
            cfg.num_kv_heads,
            cfg.head_dim,
            dtype=dtype,
            device=device,
        )

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def write(self, layer: int, slots: Tensor, k: Tensor, v: Tensor) -> None:
        """k, v: [T, KVH, D] written at `slots` [T]."""
        self.data[layer, 0].index_copy_(0, slots, k.to(self.data.dtype))
        self.data[layer, 1].index_copy_(0, slots, v.to(self.data.dtype))

    def gather(self, layer: int, slots: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values at `slots` [L] → two [L, KVH, D] tensors."""
        kv = self.data[layer].index_select(1, slots)
        return kv[0], kv[1]

    def view(self, layer: int, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """Keys and values of the slot range [lo, hi), without copying."""
        return self.data[layer, 0, lo:hi], self.data[layer, 1, lo:hi]

    def copy_pages(self, pairs: list[tuple[int, int]]) -> None:
        """Copy whole pages (src → dst), for copy-on-write of shared pages."""
        if not pairs:
            return
        ps = self.page_size
        src = torch.cat([torch.arange(s * ps, (s + 1) * ps) for s, _ in pairs]).to(self.data.device)
        dst = torch.cat([torch.arange(d * ps, (d + 1) * ps) for _, d in pairs]).to(self.data.device)
        self.data.index_copy_(2, dst, self.data.index_select(2, src))

    def read_pages(self, pages: list[int]) -> Tensor:
        """A copy of whole pages: `[layers, 2, len(pages) * page_size, KVH, D]`."""
        return self.data.index_select(2, self._page_slots(pages)).clone()

    def write_pages(self, pages: list[int], values: Tensor) -> None:
        self.data.index_copy_(2, self._page_slots(pages), values.to(self.data.dtype))

    def _page_slots(self, pages: list[int]) -> Tensor:
        ps = self.page_size
        return torch.cat([torch.arange(p * ps, (p + 1) * ps) for p in pages]).to(self.data.device)
