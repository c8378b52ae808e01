"""How each sequence of a ragged batch attends to the KV pool.

A sequence's keys are the slots its page table names, in order. Attention reads the pool in
place when it can: one contiguous run (plain causal), a few runs (attended one by one and merged
exactly, e.g. a cached prompt module plus the question), or a dense slot range with a mask
hiding other sequences' slots; otherwise its keys are gathered. Single-token decode steps of
several sequences are padded into one decode group and attended in one call.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from asynclm.engine.attention import DecodeGroup, KeyRun, causal_mask

DECODE_GROUP_MAX_KEYS = 1024  # without the paged kernel, longer contexts decode alone, in place
_DENSE_RANGE = 1.5  # attend in place when the slot range is at most this much larger
_MAX_RUNS = 16  # at most this many contiguous runs are attended one by one and merged
SHORT_RUN = 256  # runs shorter than this are gathered into one (a call costs ~0.1 ms each)


def attention_layout(
    slots: Tensor, n: int
) -> tuple[tuple[int, int] | None, Tensor | None, tuple[KeyRun, ...]]:
    """How a sequence attends: `(kv_range, mask, runs)`.

    Query i of the n new tokens (the last n of `slots`) sees the keys [0, L - n + i] in the
    sequence's order.
    """
    length = slots.numel()
    lo, hi = int(slots.min()), int(slots.max()) + 1
    breaks = (slots[1:] - slots[:-1] != 1).nonzero().flatten().tolist() if length > 1 else []
    if not breaks:
        return (lo, hi), causal_mask(n, length, slots.device), ()
    if len(breaks) < _MAX_RUNS and slots.device.type == "cpu":
        return None, None, key_runs(slots, n, breaks)
    if hi - lo > _DENSE_RANGE * length:
        return None, causal_mask(n, length, slots.device), ()
    rank = torch.full((hi - lo,), -1, dtype=torch.long, device=slots.device)
    rank[slots - lo] = torch.arange(length, device=slots.device)
    limit = torch.arange(length - n, length, device=slots.device)  # last key each query sees
    return (lo, hi), (rank[None, :] >= 0) & (rank[None, :] <= limit[:, None]), ()


def in_order(slots: Tensor, kv_range: tuple[int, int] | None) -> bool:
    """Whether `kv_range` holds exactly `slots`, in order (one contiguous causal run)."""
    if kv_range is None or kv_range[1] - kv_range[0] != slots.numel():
        return False
    return slots.numel() < 2 or bool((slots[1:] - slots[:-1] == 1).all())


def key_runs(slots: Tensor, n: int, breaks: list[int]) -> tuple[KeyRun, ...]:
    """The contiguous runs of `slots` (split after each index in `breaks`), with the causal
    bias of the n new tokens inside the runs they only partly see."""
    length = slots.numel()
    first_new = length - n
    bounds = [0, *(b + 1 for b in breaks), length]
    runs = []
    for start, end in itertools.pairwise(bounds):
        lo = int(slots[start])
        if end <= first_new + 1:  # only keys every new token sees
            runs.append(KeyRun(lo, lo + end - start))
            continue
        ranks = torch.arange(start, end, device=slots.device)
        limit = torch.arange(first_new, length, device=slots.device)
        visible = ranks[None, :] <= limit[:, None]  # [n, run]: causal inside the run
        bias = torch.zeros(visible.shape).masked_fill_(~visible, float("-inf"))
        empty = ~visible.any(-1)
        counts = visible.sum(-1)  # a prefix of the run: keys are in the sequence's order
        empty_rows = empty if bool(empty.any()) else None
        runs.append(KeyRun(lo, lo + end - start, bias, empty_rows, visible=counts))
    return gather_short(runs, n)


def gather_short(runs: list[KeyRun], n: int) -> tuple[KeyRun, ...]:
    """The runs with those shorter than `SHORT_RUN` keys gathered into one (when there are
    several): a system prompt, a question and the new tokens then cost one attention call, not
    one each, and the long runs (cached modules) are still read in place."""
    short = [r for r in runs if r.hi - r.lo < SHORT_RUN]
    if len(short) < 2:
        return tuple(runs)
    long = [r for r in runs if r.hi - r.lo >= SHORT_RUN]
    slots = torch.cat([torch.arange(r.lo, r.hi) for r in short])  # runs are a CPU layout
    bias = None
    if any(r.bias is not None for r in short):
        bias = torch.cat(
            [r.bias if r.bias is not None else torch.zeros(n, r.hi - r.lo) for r in short], dim=1
        )
    empty = None
    if all(r.empty is not None for r in short):  # seen by no part: by the whole
        empty = torch.stack([r.empty for r in short if r.empty is not None]).all(0)
    visible = None  # runs in the sequence's order: a query sees a prefix of the gathered keys
    if bias is not None:
        visible = sum(
            (r.visible if r.visible is not None else torch.full((n,), r.num_keys) for r in short),
            torch.zeros(n, dtype=torch.long),
        )
    return (*long, KeyRun(0, 0, bias, empty, slots, visible))


def decode_group(single: list[Tensor], rows: Tensor, lengths: Tensor) -> DecodeGroup | None:
    """Single-token steps as one group: their key slots padded into one [B, L] index, with each
    step's key count (and the same as a mask when they differ). `rows`, `lengths`: [B]."""
    if not single:
        return None
    if len(single) == 1:  # no padding: the slots themselves
        return DecodeGroup(rows, single[0].view(1, -1), None, lengths)
    sizes = [slots.numel() for slots in single]
    longest = max(sizes)
    index = torch.zeros(len(single), longest, dtype=torch.long, device=rows.device)
    for i, slots in enumerate(single):
        index[i, : slots.numel()] = slots
    mask = None
    if min(sizes) != longest:
        ar = torch.arange(longest, device=rows.device)
        mask = (ar[None, :] < lengths[:, None])[:, None, None, :]
    return DecodeGroup(rows, index, mask, lengths)
