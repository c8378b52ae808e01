"""How a ragged batch attends to the paged KV pool.

`BatchMeta` says, per batch, where each new token's K/V goes and which keys each sequence's
queries see: multi-token chunks attend one by one (`SequenceBatch`: the pool's own slots in
place, a few contiguous runs merged exactly, or gathered keys), single-token decode steps of
several sequences together (`DecodeGroup`), through the fused paged kernel when it is built.
Positions only enter through RoPE, so which keys a query sees is decided by storage order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from asynclm.engine.kernels.ops import Ops
from asynclm.engine.kv_cache import KVCache


@dataclass(frozen=True, slots=True)
class SequenceBatch:
    """Where one sequence's new tokens sit in the batch and which KV slots it attends to."""

    start: int  # first row of this sequence in the batch
    length: int  # number of new tokens
    kv_slots: Tensor  # [kv_len] every slot of the sequence, new tokens last
    mask: Tensor | None = None  # [length, keys] bool; None: plain causal (or no mask for 1 token)
    kv_range: tuple[int, int] | None = None  # attend to the pool's slots [lo, hi) in place
    runs: tuple[KeyRun, ...] = ()  # or to a few contiguous runs in place, merged exactly
    ordered: bool = False  # kv_range holds exactly the sequence's slots, in order (causal run)


@dataclass(frozen=True, slots=True)
class KeyRun:
    """Contiguous pool slots [lo, hi) holding consecutive keys of a sequence, read in place; or
    (`slots` given) a few short runs' slots gathered into one, so that each costs no call."""

    lo: int
    hi: int
    bias: Tensor | None = None  # [new tokens, keys] additive mask (0 / -inf); None: all visible
    empty: Tensor | None = None  # [new tokens] bool: queries that see no key of this run
    slots: Tensor | None = None  # [keys] gathered pool slots (then lo, hi are unused)
    visible: Tensor | None = None  # [new tokens] int64: keys each query sees (a prefix); None: all

    @property
    def num_keys(self) -> int:
        return self.hi - self.lo if self.slots is None else self.slots.numel()


@dataclass(frozen=True, slots=True)
class DecodeGroup:
    """Single-token steps of several sequences, attended in one padded call."""

    rows: Tensor  # [B] rows of the batch
    kv_index: Tensor  # [B, L] slots, padded
    kv_mask: Tensor | None  # [B, 1, 1, L] bool (None when no padding)
    lengths: Tensor | None = None  # [B] keys each sequence sees (the fused kernel's form)


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """Metadata of a ragged batch: where to write the new K/V, who attends to what."""

    write_slots: Tensor  # [T] slot of each new token
    sequences: tuple[SequenceBatch, ...]  # multi-token chunks, attended one by one
    logit_rows: Tensor  # [R] rows of the batch whose logits are returned
    decode: DecodeGroup | None = None


def causal_mask(n: int, kv_len: int, device: torch.device | str = "cpu") -> Tensor | None:
    """Query i of n new tokens sees keys [0, kv_len - n + i]; None when plain causal works."""
    if n == 1 or n == kv_len:
        return None
    return torch.ones(n, kv_len, dtype=torch.bool, device=device).tril(kv_len - n)


class PagedAttention:
    """Attention of one layer's queries over the pool, for every kind of batch entry."""

    def __init__(self, layer: int, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        self.layer = layer
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim

    def __call__(self, q: Tensor, batch: BatchMeta, kv: KVCache, ops: Ops) -> Tensor:
        """q: [T, H*D] (RoPE applied) -> the attention output [T, H*D]."""
        if batch.decode is not None and not batch.sequences:
            return self._attend_decode(q, batch.decode, kv, ops)
        if batch.decode is None and len(batch.sequences) == 1:
            return self._attend(q, batch.sequences[0], kv, ops)
        out = q.new_empty(q.shape)
        if batch.decode is not None:
            rows = batch.decode.rows
            out[rows] = self._attend_decode(q[rows], batch.decode, kv, ops)
        for s in batch.sequences:
            span = slice(s.start, s.start + s.length)
            out[span] = self._attend(q[span], s, kv, ops)
        return out

    def _attend(self, q: Tensor, seq: SequenceBatch, kv: KVCache, ops: Ops) -> Tensor:
        n = q.shape[0]
        if seq.ordered and seq.kv_range is not None:  # one run in order: (offset) causal
            lo, hi = seq.kv_range
            return ops.causal_attention(q, kv.data, self.layer, lo, hi, self.num_kv_heads)
        if (
            seq.runs
            and ops.native_causal
            and all(r.bias is None or r.visible is not None for r in seq.runs)
        ):
            return self._attend_runs_native(q, seq.runs, kv, ops)
        q = q.view(n, self.num_heads, self.head_dim)
        if seq.runs:
            return self._attend_runs(q, seq.runs, kv)
        if seq.kv_range is not None:  # no copy: the pool's own slots (mask hides foreign ones)
            keys, values = kv.view(self.layer, *seq.kv_range)  # [R, KVH, D] each
        else:
            keys, values = kv.gather(self.layer, seq.kv_slots)  # [L, KVH, D] each
        q = q.transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
        keys = keys.transpose(0, 1).unsqueeze(0)  # [1, KVH, L, D]
        values = values.transpose(0, 1).unsqueeze(0)
        causal = seq.mask is None and n > 1
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=seq.mask, is_causal=causal, enable_gqa=True
        )
        return out[0].transpose(0, 1).reshape(n, -1)  # [n, H*D]

    def _attend_runs(self, q: Tensor, runs: tuple[KeyRun, ...], kv: KVCache) -> Tensor:
        """Attention over several in-place runs of keys, merged with their log-sum-exps.

        Queries sharing a KV head are stacked ([1, KVH, G*n, D]) so no key is copied per head.
        """
        n, groups = q.shape[0], self.num_heads // self.num_kv_heads
        qg = q.view(n, self.num_kv_heads, groups, self.head_dim).permute(1, 2, 0, 3)
        qg = qg.reshape(1, self.num_kv_heads, groups * n, self.head_dim)  # [1, KVH, G*n, D]
        outs, lses = [], []
        for run in runs:
            if run.slots is None:
                keys, values = kv.view(self.layer, run.lo, run.hi)  # [R, KVH, D] views
            else:
                keys, values = kv.gather(self.layer, run.slots)  # short runs: a small copy
            bias = None if run.bias is None else run.bias.repeat(groups, 1)  # [G*n, R]
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                qg,
                keys.transpose(0, 1).unsqueeze(0),
                values.transpose(0, 1).unsqueeze(0),
                attn_mask=bias,
            )
            if run.empty is not None:  # the kernel reports 0 for rows it saw nothing of
                lse = lse.masked_fill(run.empty.repeat(groups), float("-inf"))
            outs.append(out)
            lses.append(lse)
        if len(runs) == 2:  # the usual case (a module + the rest): fewest small ops
            share = torch.sigmoid(lses[0] - lses[1]).unsqueeze(-1)  # the first run's share
            out = torch.lerp(outs[1], outs[0], share)
        else:
            lse = torch.stack(lses)  # [runs, 1, KVH, G*n]
            weights = torch.softmax(lse, dim=0).unsqueeze(-1)  # each run's share of the total
            out = (torch.stack(outs) * weights).sum(0)  # [1, KVH, G*n, D]
        out = out.view(self.num_kv_heads, groups, n, self.head_dim).permute(2, 0, 1, 3)
        return out.reshape(n, -1)  # [n, H*D] (head = kv_head * G + g)

    def _attend_runs_native(
        self, q: Tensor, runs: tuple[KeyRun, ...], kv: KVCache, ops: Ops
    ) -> Tensor:
        """`_attend_runs` on the native prefix attention: each run read in place (gathered
        short runs from a small copy), merged with the log-sum-exps. q: [n, H*D]."""
        outs, lses = [], []
        for run in runs:
            if run.slots is None:
                pool, layer, lo, hi = kv.data, self.layer, run.lo, run.hi
            else:
                keys, values = kv.gather(self.layer, run.slots)  # [R, KVH, D] each
                pool, layer, lo, hi = torch.stack((keys, values))[None], 0, 0, run.num_keys
            out, lse = ops.prefix_attention(q, pool, layer, lo, hi, self.num_kv_heads, run.visible)
            outs.append(out)
            lses.append(lse)
        if len(runs) == 1:
            return outs[0]
        n = q.shape[0]
        if len(runs) == 2:  # the first run's share of each query head's total
            share = torch.sigmoid(lses[0] - lses[1]).repeat_interleave(self.head_dim, 1)
            return torch.lerp(outs[1], outs[0], share)
        weights = torch.softmax(torch.stack(lses), dim=0).repeat_interleave(self.head_dim, 2)
        return (torch.stack(outs) * weights).sum(0).view(n, -1)

    def _attend_decode(self, q: Tensor, group: DecodeGroup, kv: KVCache, ops: Ops) -> Tensor:
        lengths = group.lengths
        if lengths is None:
            lengths = torch.full((group.kv_index.shape[0],), group.kv_index.shape[1])
        return ops.decode_attention(
            q.contiguous(),
            kv.data,
            self.layer,
            group.kv_index,
            lengths,
            self.num_kv_heads,
            mask=group.kv_mask,
        )
