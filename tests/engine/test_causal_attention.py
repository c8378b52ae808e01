"""The native causal attention of prefill chunks: agreement with torch, when it is used, and
the measured choice between the two."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from asynclm.engine.attention_choice import LENGTHS, choose_causal
from asynclm.engine.batch_layout import in_order
from asynclm.engine.config import PRESETS
from asynclm.engine.engine import Engine
from asynclm.engine.kernels import check
from asynclm.engine.kernels.ops import Ops
from asynclm.engine.loader import LoadedModel, default_tokenizer
from asynclm.engine.model import Transformer
from asynclm.engine.tuning import TimingStore

NATIVE, TORCH = Ops(native=True, native_causal=True), Ops(native=False)


@pytest.fixture
def needs_native() -> None:
    if not check.native_ready():
        pytest.skip(f"native kernels off here: {check.problems()[0]}")


# ---- which layouts it serves (pure) ----------------------------------------------------------
def test_only_a_run_holding_exactly_the_sequence_in_order_is_served():
    assert in_order(torch.arange(5, 12), (5, 12))
    assert in_order(torch.tensor([9]), (9, 10))
    assert not in_order(torch.tensor([5, 7, 6, 8]), (5, 9))  # a permutation filling the range
    assert not in_order(torch.tensor([5, 6, 8]), (5, 9))  # a foreign slot inside the range
    assert not in_order(torch.arange(5, 12), None)  # runs or gathered keys


# ---- the kernel against torch's ----------------------------------------------------------------
CASES = [  # (new tokens, keys, heads, kv heads, head dim)
    (1, 1, 2, 1, 64),
    (1, 9, 9, 3, 64),  # a single token after others (one partial key block)
    (37, 37, 9, 3, 64),  # a prefill shorter than a key block plus a partial one
    (129, 129, 9, 3, 64),  # one position past whole query and key blocks
    (100, 300, 9, 3, 64),  # a chunk continuing a sequence: offset causal
    (64, 1000, 4, 2, 128),  # a wider head
    (70, 70, 6, 6, 64),  # no grouping
]


@pytest.mark.parametrize(("n", "keys", "heads", "kv_heads", "dim"), CASES)
def test_the_native_kernel_equals_torch_flash_attention(
    needs_native, n, keys, heads, kv_heads, dim
):
    g = torch.Generator().manual_seed(n + keys)
    pool = torch.randn(2, 2, keys + 13, kv_heads, dim, generator=g) * 2
    q = torch.randn(n, heads * dim, generator=g) * 2
    lo = 6
    ours = NATIVE.causal_attention(q, pool, 1, lo, lo + keys, kv_heads)
    theirs = TORCH.causal_attention(q, pool, 1, lo, lo + keys, kv_heads)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_refused_by_the_kernel(needs_native):
    pool = torch.zeros(1, 2, 8, 1, 64)
    with pytest.raises(RuntimeError, match="run"):
        torch.ops.asynclm.causal_attention(torch.zeros(4, 64), pool, 0, 6, 12, 1, 0.125)
    with pytest.raises(RuntimeError, match="head_dim"):
        small = torch.zeros(1, 2, 8, 1, 16)
        torch.ops.asynclm.causal_attention(torch.zeros(4, 16), small, 0, 0, 4, 1, 0.25)


def test_a_head_dim_it_does_not_take_falls_back_to_torch(needs_native):
    pool = torch.randn(1, 2, 10, 1, 16)
    q = torch.randn(10, 32)
    torch.testing.assert_close(
        NATIVE.causal_attention(q, pool, 0, 0, 10, 1), TORCH.causal_attention(q, pool, 0, 0, 10, 1)
    )


# ---- in the engine ---------------------------------------------------------------------------
WIDE = replace(PRESETS["tiny"], hidden_size=128, num_heads=2, num_kv_heads=1, head_dim=64)


def _wide_head_engine(native_causal: bool) -> Engine:
    """A tiny random model with 64-wide heads (the shape the kernel takes), the causal
    attention forced to one side."""
    tokenizer = default_tokenizer()
    model = Transformer(WIDE.with_vocab(tokenizer.vocab_size))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.08 * torch.randn(p.shape, generator=gen))
    loaded = LoadedModel(model.eval(), tokenizer, "tiny-wide", "tiny-wide-3")
    engine = Engine.from_loaded(loaded, num_pages=64, page_size=16, tune=False)
    engine.model.use_ops(Ops(native=True, native_causal=native_causal))
    return engine


async def _logits(engine: Engine, first: list[int], second: list[int]) -> torch.Tensor:
    """Logits of a prefill and of a second chunk continuing it (offset causal)."""
    async with engine.context() as ctx:
        ctx.append(first)
        await ctx.flush()
        logits = await ctx.forward(second)
        slots = torch.tensor(ctx.slots)  # one run in order: the layout the kernel serves
        assert in_order(slots, (int(slots.min()), int(slots.max()) + 1))
        return logits


@pytest.mark.anyio
async def test_the_engine_gives_the_same_logits_with_either_causal_attention(needs_native):
    first, second = list(range(300, 420)), list(range(500, 537))
    native = await _logits(_wide_head_engine(True), first, second)
    torch_ = await _logits(_wide_head_engine(False), first, second)
    torch.testing.assert_close(native, torch_, rtol=1e-4, atol=1e-4)


# ---- the measured choice ---------------------------------------------------------------------
def test_the_choice_times_both_at_every_length_and_is_read_back(needs_native, tmp_path):
    store = TimingStore(tmp_path / "timings.json", enabled=True)
    choice = choose_causal(WIDE, Ops(native=True), 1, store=store)
    assert set(choice.timings) == set(LENGTHS) and not choice.cached
    faster = all(t["native"] < t["torch"] for t in choice.timings.values())
    assert choice.native == faster
    again = choose_causal(WIDE, Ops(native=True), 1, store=TimingStore(store.path, enabled=True))
    assert again.cached and again.timings == choice.timings
    assert "native vs torch" in again.describe()


def test_without_native_kernels_or_with_other_heads_torch_is_kept_unmeasured(tmp_path):
    store = TimingStore(tmp_path / "timings.json", enabled=True)
    off = choose_causal(PRESETS["smollm2-135m"], Ops(native=False), 1, store=store)
    assert not off.native and not off.timings and "no native" in off.reason
    narrow = choose_causal(PRESETS["tiny"], Ops(native=True), 1, store=store)
    assert not narrow.native and "head_dim 16" in narrow.reason
    assert not store.path.exists()


def test_an_engine_reports_its_choice(engine):
    assert engine.attention is not None and not engine.attention.native  # 16-wide heads
    assert not engine.model.ops.native_causal


# ---- runs of keys: the prefix form of their masks ----------------------------------------------
def test_each_runs_visible_counts_are_its_bias_as_prefixes():
    from asynclm.engine.batch_layout import SHORT_RUN, key_runs

    # a short system run, a long module, a short question ending in the 6 new tokens
    slots = torch.cat(
        [torch.arange(0, 12), torch.arange(100, 100 + SHORT_RUN + 8), torch.arange(40, 50)]
    )
    breaks = [11, 11 + SHORT_RUN + 8]
    runs = key_runs(slots, 6, breaks)
    assert len(runs) == 2 and runs[1].slots is not None  # the short ones gathered
    for run in runs:
        if run.bias is None:
            assert run.visible is None
            continue
        prefix = torch.arange(run.num_keys)[None, :] < run.visible[:, None]
        assert torch.equal(prefix, run.bias == 0)


@pytest.mark.parametrize("heads,kv_heads,dim", [(9, 3, 64), (4, 4, 128)])
def test_the_native_prefix_attention_equals_torch_with_its_log_sum_exp(
    needs_native, heads, kv_heads, dim
):
    g = torch.Generator().manual_seed(heads)
    n, keys = 23, 150
    pool = torch.randn(2, 2, keys + 9, kv_heads, dim, generator=g)
    q = torch.randn(n, heads * dim, generator=g)
    visible = torch.randint(0, keys + 1, (n,), generator=g)
    visible[:3] = torch.tensor([0, keys, 1])  # none, all, one
    ours = NATIVE.prefix_attention(q, pool, 1, 4, 4 + keys, kv_heads, visible)
    theirs = TORCH.prefix_attention(q, pool, 1, 4, 4 + keys, kv_heads, visible)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.isinf(ours[1][0]).all() and not ours[0][0].any()  # saw nothing: 0, -inf


async def _forked_logits(engine: Engine) -> torch.Tensor:
    """A continuation attending to several runs in place (a fork's shared pages, then pages
    allocated after another context's)."""
    async with engine.context() as parent:
        parent.append(list(range(300, 500)))
        await parent.flush()
        child = parent.fork()
        async with engine.context() as other:
            other.append(list(range(700, 760)))
            await other.flush()
            try:
                logits = await child.forward(list(range(900, 930)))
                slots = torch.tensor(child.slots)
                assert not in_order(slots, (int(slots.min()), int(slots.max()) + 1))
                return logits
            finally:
                child.release()


@pytest.mark.anyio
async def test_runs_of_keys_give_the_same_logits_with_either_attention(needs_native):
    native = await _forked_logits(_wide_head_engine(True))
    torch_ = await _forked_logits(_wide_head_engine(False))
    torch.testing.assert_close(native, torch_, rtol=1e-4, atol=1e-4)
