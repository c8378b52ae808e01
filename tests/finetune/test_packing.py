"""Prefix-tree packing: structure, targets, and a forward that equals per-sequence forwards."""

import pytest
import torch
from torch.nn import functional as F

from asynclm.finetune.packing import IGNORE, pack
from asynclm.finetune.render import Example


def ex(ids, written, injected=()):
    """A sequence whose tokens from `written` on are written, but those at `injected`."""
    loss = tuple(i >= written and i not in injected for i in range(len(ids)))
    return Example(tuple(ids), loss, written)


def test_shared_prefixes_are_stored_once():
    a = ex([1, 2, 3, 4, 5], written=3)
    b = ex([1, 2, 3, 6, 7], written=3, injected={3})
    c = ex([1, 9, 8], written=2)
    (row,), dropped = pack([a, b, c], max_tokens=100)
    assert dropped == 0
    assert row.num_examples == 3
    assert len(row.input_ids) == 5 + 2 + 2  # shared 1,2,3; branches 4,5 / 6,7 / 9,8
    assert sorted(row.positions) == sorted([0, 1, 2, 3, 4, 3, 4, 1, 2])


def test_each_token_targets_the_token_written_after_it():
    a = ex([1, 2, 3, 4, 5], written=3)
    b = ex([1, 2, 3, 6, 7], written=3, injected={3})
    (row,), _ = pack([a, b], max_tokens=100)
    targets = dict(zip(row.input_ids, row.targets, strict=True))
    assert targets[1] == IGNORE  # 2 is prompt
    assert targets[3] == 4  # the injected 6 is no target
    assert targets[4] == 5 and targets[6] == 7
    assert targets[5] == IGNORE and targets[7] == IGNORE  # ends of sequences


def test_sequences_writing_different_tokens_after_one_prefix_get_separate_rows():
    rows, _ = pack([ex([1, 2, 3], written=1), ex([1, 2, 4], written=1)], max_tokens=100)
    assert [r.num_examples for r in rows] == [1, 1]
    assert [r.targets[1] for r in rows] == [3, 4]


def test_rows_respect_the_limit_and_too_long_sequences_are_dropped():
    seqs = [ex([k, 1, 2, 3], written=1) for k in range(10, 16)] + [ex(list(range(50)), written=1)]
    rows, dropped = pack(seqs, max_tokens=9)
    assert dropped == 1
    assert all(len(r.input_ids) <= 9 for r in rows)
    assert sum(r.num_examples for r in rows) == 6


def test_visible_ranges_follow_the_ancestors():
    a = ex([1, 2, 3, 4], written=2)
    b = ex([1, 2, 5, 6], written=2, injected={2})
    (row,), _ = pack([a, b], max_tokens=100)
    assert row.segments == ((0, 4, -1), (4, 6, 1))
    assert row.visible(1) == [(0, 2)]


def test_packed_forward_equals_separate_forwards(tiny):
    """Every token sees exactly its own sequence's context: same losses as one by one."""
    from asynclm.engine.loader import to_transformers
    from asynclm.finetune.train import collate, packed_loss

    model = to_transformers(tiny.model).float().eval()
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(10, 400, (12,), generator=g).tolist()
    turn = torch.randint(10, 400, (9,), generator=g).tolist()
    seqs = [  # branches after 3 and 5 turn tokens, each starting with an injected token
        ex(prompt + turn, written=len(prompt)),
        ex(prompt + turn[:3] + [7, 8, 9, 10], written=len(prompt), injected={len(prompt) + 3}),
        ex(prompt + turn[:5] + [11, 12], written=len(prompt), injected={len(prompt) + 5}),
    ]
    (row,), _ = pack(seqs, max_tokens=200)
    batch = collate(
        [
            {
                "input_ids": row.input_ids,
                "targets": row.targets,
                "positions": row.positions,
                "segments": row.segments,
            }
        ]
    )
    with torch.no_grad():
        packed, count = packed_loss(model, batch)
        losses = {}  # a shared prefix is one context: its target counts once
        for s in seqs:
            logits = model(input_ids=torch.tensor([s.input_ids])).logits[0]
            for i in range(len(s.input_ids) - 1):
                if s.loss[i + 1]:
                    target = torch.tensor([s.input_ids[i + 1]])
                    losses[s.input_ids[: i + 2]] = F.cross_entropy(logits[i : i + 1], target)
    assert count == len(losses) == 13
    expected = sum(v.item() for v in losses.values()) / len(losses)
    assert packed.item() == pytest.approx(expected, rel=1e-4)
