"""Attention over a packed prefix tree, computed only where tokens see each other.

A packed row (`packing.py`) is a token trie: each run of tokens sees its own run causally and
its ancestors' runs in full, nothing else. A dense 4D mask over the whole row makes the
attention kernel compute every query against every key — the row's length squared, with no
causal skipping — though a row of three modes branching off one prompt needs well under half
of that. Here each run's queries attend to exactly the keys they see: the row's first run
(the prompt) through the causal kernel, every other run through one call over its ancestors'
keys and its own, with a small mask for its own causal part. Same result as the dense mask (up
to summation order); the forward and backward of attention shrink with the mask's density.

The function is registered with transformers as the attention implementation `TREE` and reads
the row layout from the `tree` keyword that `packed_loss` passes through the model; without it
(generation, evaluation by other code) it is transformers' SDPA attention unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from asynclm.finetune.packing import ancestor_ranges

TREE = "asynclm_tree"

# A run of queries `[start, end)` and the ranges of keys it sees before its own run.
Span = tuple[int, int, tuple[tuple[int, int], ...]]
# Per batch row, its spans in order (they cover the row's tokens; padding comes after).
Plan = tuple[tuple[Span, ...], ...]


def plan(rows_segments: Sequence[Sequence[Sequence[int]]]) -> Plan:
    """The spans of each row, from its packed segments `(start, end, hang)`.

    Ranges that follow each other are joined, so a run whose ancestors lie in one piece
    gathers its keys with one slice."""
    return tuple(
        tuple(
            (int(start), int(end), _joined(reversed(ancestor_ranges(segments, i))))
            for i, (start, end, _) in enumerate(segments)
        )
        for segments in rows_segments
    )


def _joined(ranges: Any) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


def tree_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    tree: Plan | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: `query` [B, H, Q, D], `key`/`value`
    [B, Hkv, K, D]; returns [B, Q, H, D]."""
    if tree is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if dropout:
        raise ValueError("tree attention has no dropout (LoRA training here runs without it)")
    length = query.shape[2]
    groups = query.shape[1] // key.shape[1]
    rows = []
    for b, spans in enumerate(tree):
        pieces = [_span(query[b], key[b], value[b], span, groups, scaling) for span in spans]
        covered = spans[-1][1] if spans else 0
        if covered < length:  # padding: its output is never read, zeros keep the shape
            pieces.append(query.new_zeros(query.shape[1], length - covered, value.shape[-1]))
        rows.append(torch.cat(pieces, dim=1))
    return torch.stack(rows).transpose(1, 2).contiguous(), None


def _span(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    span: Span,
    groups: int,
    scaling: float | None,
) -> torch.Tensor:
    start, end, before = span
    q = query[:, start:end]
    if not before:
        k, v, mask, causal = key[:, start:end], value[:, start:end], None, True
    else:
        k = torch.cat([key[:, a:b] for a, b in before] + [key[:, start:end]], dim=1)
        v = torch.cat([value[:, a:b] for a, b in before] + [value[:, start:end]], dim=1)
        seen = sum(b - a for a, b in before)
        n = end - start
        mask = torch.ones(n, seen + n, dtype=torch.bool, device=query.device)
        mask[:, seen:] = torch.ones(n, n, dtype=torch.bool, device=query.device).tril()
        causal = False
    if groups > 1:
        k = k.repeat_interleave(groups, dim=0)
        v = v.repeat_interleave(groups, dim=0)
    return F.scaled_dot_product_attention(
        q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), attn_mask=mask, is_causal=causal,
        scale=scaling,
    )[0]  # fmt: skip


def use_tree_attention(model: Any) -> None:
    """Registers the tree attention with transformers and switches `model` (a transformers
    model, or a PEFT model around one) to it."""
    AttentionInterface.register(TREE, tree_attention)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(TREE)
