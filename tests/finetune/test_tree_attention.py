"""Tree attention: the packed rows' attention computed per run of tokens, against the dense
4D mask — the same loss and gradients, on branching rows, several roots and padded batches."""

import pytest
import torch

from asynclm.finetune.config import TrainConfig
from asynclm.finetune.packing import pack
from asynclm.finetune.render import Example
from asynclm.finetune.train import add_cml_embeddings, collate, load_base, packed_loss, with_lora
from asynclm.finetune.tree_attention import TREE, plan, use_tree_attention


def ex(ids, written, injected=()):
    loss = tuple(i >= written and i not in injected for i in range(len(ids)))
    return Example(tuple(ids), loss, written)


def rows(seed):
    """Packed rows with branches at several depths, and a second root (another prompt)."""
    g = torch.Generator().manual_seed(seed)

    def draw(n):
        return torch.randint(10, 400, (n,), generator=g).tolist()

    prompt, turn, other = draw(14), draw(11), draw(9)
    p = len(prompt)
    seqs = [
        ex(prompt + turn, written=p),
        ex(prompt + turn[:3] + draw(5), written=p, injected={p + 3}),
        ex(prompt + turn[:3] + [turn[3] + 1] + draw(2), written=p + 4),  # branch on a branch
        ex(prompt + turn[:7] + draw(4), written=p, injected={p + 7}),
        ex(other + draw(6), written=len(other)),
    ]
    packed, _ = pack(seqs, max_tokens=400)
    keys = ("input_ids", "targets", "positions", "segments")
    return [{k: getattr(r, k) for k in keys} for r in packed]


def test_a_plan_joins_adjacent_ancestor_ranges_and_covers_the_row():
    segments = ((0, 5, -1), (5, 8, 4), (8, 10, 6), (10, 12, 2), (12, 15, -1))
    spans = plan([segments])[0]
    assert [s[:2] for s in spans] == [(0, 5), (5, 8), (8, 10), (10, 12), (12, 15)]
    assert spans[0][2] == () and spans[4][2] == ()  # roots see only themselves
    assert spans[1][2] == ((0, 5),)
    assert spans[2][2] == ((0, 7),)  # (0, 5) and (5, 7) joined: one slice
    assert spans[3][2] == ((0, 3),)


@pytest.fixture(scope="module")
def lora_model():
    torch.manual_seed(0)
    model, tokenizer = load_base("tiny")
    ids = add_cml_embeddings(model, tokenizer)
    model = with_lora(model, TrainConfig(model="tiny"), ids)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # a fresh adapter is zero on B: give A's gradient something
            torch.nn.init.normal_(p, std=0.05)
    return model.train()


def loss_and_grads(model, batch):
    model.zero_grad()
    loss, count = packed_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), count, grads


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tree_attention_gives_the_dense_masks_loss_and_gradients(lora_model, seed):
    packed = rows(seed)
    assert any(len(r["segments"]) > 2 for r in packed)
    batches = [collate([r]) for r in packed] + [collate(packed[:2])]  # the last one padded
    base = lora_model.get_base_model()
    for batch in batches:
        base.set_attn_implementation("sdpa")
        dense = loss_and_grads(lora_model, batch)
        use_tree_attention(lora_model)
        assert base.config._attn_implementation == TREE
        tree = loss_and_grads(lora_model, batch)
        assert tree[1] == dense[1] > 0
        assert tree[0] == pytest.approx(dense[0], rel=1e-5)
        assert tree[2].keys() == dense[2].keys() and dense[2]
        for name, grad in dense[2].items():
            torch.testing.assert_close(tree[2][name], grad, rtol=1e-4, atol=1e-6)


def test_without_a_plan_it_is_the_dense_attention(lora_model):
    """Code that calls the model without `tree` (generation, other evaluation) is unchanged."""
    batch = collate(rows(3)[:1])
    use_tree_attention(lora_model)
    with torch.no_grad():
        tree, _ = packed_loss(lora_model, batch)
        batch.pop("tree")
        plain, _ = packed_loss(lora_model, batch)
        lora_model.get_base_model().set_attn_implementation("sdpa")
        dense, _ = packed_loss(lora_model, batch)
    assert plain.item() == pytest.approx(dense.item(), rel=1e-6)
    assert tree.item() == pytest.approx(dense.item(), rel=1e-5)
