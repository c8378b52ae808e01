"""The decoder's fused ops, in torch and (when built) native: the same float32 arithmetic.

`Ops(native=True)` calls `torch.ops.asynclm.*` (`csrc/fused.cpp`): one call per group of
torch ops, which matters when a decode step is thousands of tiny ops. `Ops(native=False)` is
the torch composition each native op is tested against, and what runs without a compiler.
Shapes: `x [T, C]`; `qkv [T, (H + 2 KVH) D]`; the pool `kv [layers, 2, slots, KVH, D]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NATIVE_OPS = (
    "rms_norm",
    "add_rms_norm",
    "rope_qkv",
    "decode_attention",
    "silu_mul",
    "causal_attention",
    "prefix_attention",
)
CAUSAL_DIM = 64  # the native causal attention takes head dims that are multiples of this


@dataclass(frozen=True, slots=True)
class Ops:
    """The fused ops, native or torch.

    Attributes:
        native: Use the native ops where they apply.
        native_causal: Also the native causal attention of multi-token chunks, where this
            machine runs it faster than torch's flash attention (`asynclm.engine.attention_choice`
            measures it at load); torch's otherwise.
    """

    native: bool = False
    native_causal: bool = False

    def rms_norm(self, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        if self.native and _plain(x):
            return torch.ops.asynclm.rms_norm(x, weight, eps)
        return F.rms_norm(x, (x.shape[-1],), weight, eps)

    def add_rms_norm(
        self, x: Tensor, residual: Tensor, weight: Tensor, eps: float
    ) -> tuple[Tensor, Tensor]:
        """`(x + residual, rms_norm(x + residual))`."""
        if self.native and _plain(x) and _plain(residual):
            return torch.ops.asynclm.add_rms_norm(x, residual, weight, eps)
        h = x + residual
        return h, F.rms_norm(h, (h.shape[-1],), weight, eps)

    def rope_qkv(
        self,
        qkv: Tensor,
        cos: Tensor,
        sin: Tensor,
        kv: Tensor,
        layer: int,
        slots: Tensor,
        heads: int,
        kv_heads: int,
    ) -> Tensor:
        """RoPE'd q `[T, H D]`; RoPE'd k and v are written at `slots` of `kv[layer]`."""
        if self.native and _plain(qkv) and _plain(kv):
            return torch.ops.asynclm.rope_qkv(qkv, cos, sin, kv, layer, slots, heads, kv_heads)
        t, dim = qkv.shape[0], cos.shape[-1]
        q, k, v = qkv.split((heads * dim, kv_heads * dim, kv_heads * dim), dim=-1)
        q = apply_rope(q.view(t, heads, dim), cos, sin)
        k = apply_rope(k.reshape(t, kv_heads, dim), cos, sin)
        kv[layer, 0].index_copy_(0, slots, k.to(kv.dtype))
        kv[layer, 1].index_copy_(0, slots, v.reshape(t, kv_heads, dim).to(kv.dtype))
        return q.reshape(t, heads * dim)

    def decode_attention(
        self,
        q: Tensor,
        kv: Tensor,
        layer: int,
        index: Tensor,
        lengths: Tensor,
        kv_heads: int,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Single-token attention of B sequences over the pool: `q [B, H D]`, `index [B, L]`
        their slots (padded), `lengths [B]` how many each sees (or the same as `mask
        [B, 1, 1, L]`; None: all). Native: keys read in place; torch: gathered."""
        dim = kv.shape[-1]
        if self.native and _plain(q) and _plain(kv):
            scale = 1.0 / math.sqrt(dim)
            return torch.ops.asynclm.decode_attention(q, kv, layer, index, lengths, kv_heads, scale)
        b, width = index.shape
        keys = kv[layer, 0].index_select(0, index.view(-1)).view(b, width, kv_heads, dim)
        values = kv[layer, 1].index_select(0, index.view(-1)).view(b, width, kv_heads, dim)
        if mask is None and bool((lengths < width).any()):
            mask = (torch.arange(width, device=q.device)[None, :] < lengths[:, None])[:, None, None]
        out = F.scaled_dot_product_attention(
            q.view(b, 1, -1, dim).transpose(1, 2),  # [B, H, 1, D]
            keys.transpose(1, 2),
            values.transpose(1, 2),
            attn_mask=mask,
            enable_gqa=True,
        )
        return out.reshape(b, -1)

    def causal_attention(
        self, q: Tensor, kv: Tensor, layer: int, lo: int, hi: int, kv_heads: int
    ) -> Tensor:
        """Causal attention of the n new tokens `q [n, H D]`, the last n of the keys in pool
        slots [lo, hi) of `kv[layer]`: query i sees the keys up to its own. -> `[n, H D]`."""
        n, dim = q.shape[0], kv.shape[-1]
        if self.native_causal and self.native and _plain(q) and _plain(kv) and _causal_dim(dim):
            scale = 1.0 / math.sqrt(dim)
            return torch.ops.asynclm.causal_attention(q, kv, layer, lo, hi, kv_heads, scale)
        keys = kv[layer, 0, lo:hi].transpose(0, 1).unsqueeze(0)  # [1, KVH, L, D]
        values = kv[layer, 1, lo:hi].transpose(0, 1).unsqueeze(0)
        length = hi - lo
        mask = None
        if 1 < n < length:  # a chunk continuing a sequence: query i sees keys [0, L - n + i]
            mask = torch.ones(n, length, dtype=torch.bool, device=q.device).tril(length - n)
        out = F.scaled_dot_product_attention(
            q.view(n, -1, dim).transpose(0, 1).unsqueeze(0),  # [1, H, n, D]
            keys,
            values,
            attn_mask=mask,
            is_causal=mask is None and n > 1,
            enable_gqa=True,
        )
        return out[0].transpose(0, 1).reshape(n, -1)

    def prefix_attention(
        self,
        q: Tensor,
        kv: Tensor,
        layer: int,
        lo: int,
        hi: int,
        kv_heads: int,
        visible: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`q [n, H D]` over the keys in pool slots [lo, hi) of `kv[layer]`, query i seeing the
        first `visible[i]` of them (None: all) -> (out `[n, H D]`, log-sum-exp `[n, H]`, -inf
        and 0 for a query that sees none), for merging several runs of keys exactly."""
        n, dim = q.shape[0], kv.shape[-1]
        length = hi - lo
        if self.native_causal and self.native and _plain(q) and _plain(kv) and _causal_dim(dim):
            counts = visible if visible is not None else torch.full((n,), length)
            scale = 1.0 / math.sqrt(dim)
            return torch.ops.asynclm.prefix_attention(
                q, kv, layer, lo, hi, kv_heads, scale, counts.contiguous()
            )
        heads = q.shape[1] // dim
        groups = heads // kv_heads  # queries sharing a kv head stacked: [1, KVH, G n, D]
        qg = q.view(n, kv_heads, groups, dim).permute(1, 2, 0, 3).reshape(1, kv_heads, -1, dim)
        bias = None
        if visible is not None:
            seen = torch.arange(length, device=q.device)[None, :] < visible[:, None]  # [n, R]
            bias = torch.zeros(n, length).masked_fill_(~seen, float("-inf")).repeat(groups, 1)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            qg,
            kv[layer, 0, lo:hi].transpose(0, 1).unsqueeze(0),
            kv[layer, 1, lo:hi].transpose(0, 1).unsqueeze(0),
            attn_mask=bias,
        )
        out = out.view(kv_heads, groups, n, dim).permute(2, 0, 1, 3).reshape(n, heads * dim)
        lse = lse.view(kv_heads, groups, n).permute(2, 0, 1).reshape(n, heads)
        if visible is not None:  # the kernel reports 0 for rows it saw nothing of
            empty = (visible == 0)[:, None]  # [n, 1]
            lse = lse.masked_fill(empty, float("-inf"))
            out = out.masked_fill(empty, 0.0)
        return out, lse

    def silu_mul(self, gate_up: Tensor) -> Tensor:
        """`silu(gate) * up` for `gate_up = [gate | up]`."""
        if self.native and _plain(gate_up):
            return torch.ops.asynclm.silu_mul(gate_up)
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate).mul_(up)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE in the rotate-half convention. x: [T, H, D]; cos/sin: [T, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1).mul_(sin[:, None, :])
    return torch.addcmul(rotated, x, cos[:, None, :])


def _causal_dim(dim: int) -> bool:
    return dim % CAUSAL_DIM == 0


def _plain(t: Tensor) -> bool:
    """What the native ops take: float32, contiguous, on the CPU."""
    return t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
