"""The KV pool tensors: one preallocated buffer of slots shared by every context.

Slots are grouped into pages by the (torch-free) page allocator; this module only stores,
gathers and copies. Keys are stored after RoPE, so a slot's content is valid wherever it is
reused.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        self.bytes_per_token = cfg.kv_bytes_per_token(dtype.itemsize)
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
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the whole pool."""
        return self.num_pages * self.page_bytes

    @property
    def page_bytes(self) -> int:
        """Bytes of one page across all layers."""
        return self.page_size * self.bytes_per_token

    def values_shape(self, n: int) -> tuple[int, ...]:
        """Shape of the K/V of n slots across all layers: `[layers, 2, n, KVH, D]`."""
        layers, _, _, heads, dim = self.data.shape
        return (layers, 2, n, heads, dim)

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

    def read_slots(self, slots: Sequence[int]) -> Tensor:
        """A CPU copy of every layer's K/V at `slots`: `[layers, 2, len(slots), KVH, D]`."""
        return self.data.index_select(2, self._index(slots)).cpu()

    def write_slots(self, slots: Sequence[int], values: Tensor) -> None:
        """Write `[layers, 2, len(slots), KVH, D]` K/V (as `read_slots` returns) at `slots`."""
        values = values.to(device=self.data.device, dtype=self.data.dtype)
        self.data.index_copy_(2, self._index(slots), values)

    def copy_slots(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Copy single slots (src → dst) in every layer."""
        if pairs:
            src, dst = zip(*pairs, strict=True)
            self.data.index_copy_(2, self._index(dst), self.data.index_select(2, self._index(src)))

    def copy_pages(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Copy whole pages (src → dst), for copy-on-write of shared pages."""
        ps = self.page_size
        self.copy_slots([(s * ps + i, d * ps + i) for s, d in pairs for i in range(ps)])

    def _index(self, slots: Sequence[int]) -> Tensor:
        return torch.tensor(slots, dtype=torch.long, device=self.data.device)
