"""Our forward against transformers' own forward on the same weights."""

from __future__ import annotations

import pytest
import torch

from asynclm.engine.engine import Engine
from tests.engine.conftest import hf_logits, hf_twin

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def twin(tiny):
    return hf_twin(tiny)


def _tokens(n: int, seed: int = 0) -> list[int]:
    return torch.randint(0, 49000, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


async def test_prefill_logits_match_transformers(engine: Engine, twin) -> None:
    tokens = _tokens(100)
    ctx = engine.context()
    ours = await ctx.forward(tokens)
    ref = hf_logits(twin, tokens)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-4


async def test_chunked_prefill_and_decode_match_transformers(engine: Engine, twin) -> None:
    # max_batch_tokens=64 in the fixture: 150 tokens run as three chunks over a paged cache
    tokens = _tokens(150, seed=1)
    ctx = engine.context()
    first = await ctx.forward(tokens[:130])
    rest = [await ctx.forward([t]) for t in tokens[130:]]
    ours = torch.cat([first, *rest])
    ref = hf_logits(twin, tokens)
    assert (ours - ref).abs().max().item() < 1e-4


async def test_explicit_positions_with_gaps_match_transformers(engine: Engine, twin) -> None:
    tokens = _tokens(40, seed=2)
    positions = [*range(10), *range(50, 70), *range(200, 210)]
    ctx = engine.context()
    ours = await ctx.forward(tokens, positions)
    ref = hf_logits(twin, tokens, positions)
    assert (ours - ref).abs().max().item() < 1e-4


async def test_concurrent_contexts_batch_and_match_alone(engine: Engine, twin) -> None:
    import anyio

    prompts = [_tokens(20 + 7 * i, seed=10 + i) for i in range(5)]
    results: dict[int, torch.Tensor] = {}

    async def run(i: int) -> None:
        results[i] = await engine.context().forward(prompts[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(prompts)):
            tg.start_soon(run, i)
    assert engine.scheduler.stats.max_sequences > 1  # really batched together
    for i, tokens in enumerate(prompts):
        assert (results[i] - hf_logits(twin, tokens)).abs().max().item() < 1e-4


@pytest.mark.real_model
async def test_real_model_matches_transformers_gguf() -> None:
    from transformers import AutoModelForCausalLM

    from asynclm.engine.loader import smollm2_gguf_path

    engine = Engine.load("smollm2-135m", adapter=None, device="cpu")  # the plain GGUF weights
    path = smollm2_gguf_path()
    ref_model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True
    ).eval()
    tokens = engine.tokenizer.encode("The capital of France is Paris. The capital of Japan is")
    ours = await engine.context().forward(tokens)
    ref = hf_logits(ref_model, tokens)
    assert (ours - ref).abs().max().item() < 1e-3
    assert int(ours[-1].argmax()) == int(ref[-1].argmax())


@pytest.mark.parametrize(
    ("chunk", "total", "path"),
    [(20, 120, "runs"), (8, 176, "dense"), (4, 120, "gather")],
)
async def test_fragmented_pages_attend_exactly(
    engine: Engine, twin, chunk: int, total: int, path: str
) -> None:
    """A context's pages interleaved with another's (one page each time): a few runs merged by
    log-sum-exp, a dense range read in place under a mask, or gathered keys all match
    transformers."""
    from asynclm.engine.batch_layout import attention_layout

    tokens = _tokens(total + 20, seed=7)
    ctx, other = engine.context(), engine.context()
    for start in range(0, total, chunk):
        ctx.append(tokens[start : start + chunk])
        await ctx.flush()
        other.append(_tokens(3, seed=start))  # one page of 4
        await other.flush()
    ours = await ctx.forward(tokens[total:])
    kv_range, _, runs = attention_layout(torch.tensor(ctx.slots), 20)
    taken = "runs" if runs else ("dense" if kv_range is not None else "gather")
    assert taken == path
    assert (ours - hf_logits(twin, tokens)[total:]).abs().max().item() < 1e-4


@pytest.mark.parametrize("short_run", [0, None])
async def test_new_tokens_spanning_separate_runs_attend_exactly(
    engine: Engine, twin, monkeypatch, short_run
) -> None:
    """Runs merged by log-sum-exp, with queries that see nothing of a later run (short runs
    not gathered); and the same runs gathered into one (the default for short runs)."""
    from asynclm.engine import batch_layout
    from asynclm.engine.batch_layout import attention_layout

    if short_run is not None:
        monkeypatch.setattr(batch_layout, "SHORT_RUN", short_run)
    tokens = _tokens(16, seed=9)
    ctx, other = engine.context(), engine.context()
    ctx.append(tokens[:10])  # pages of 4: the third page is half full
    await ctx.flush()
    other.append([7, 8])  # takes the next page
    await other.flush()
    ours = await ctx.forward(tokens[10:])  # 2 tokens fill ctx's page, 4 go to a later page
    _, _, runs = attention_layout(torch.tensor(ctx.slots), 6)
    if short_run is not None:
        assert len(runs) == 2 and runs[1].empty is not None
    else:  # one gathered run: the slots of both, in order, the causal part masked
        assert len(runs) == 1 and runs[0].slots is not None
        assert runs[0].slots.tolist() == ctx.slots and runs[0].empty is None
    assert (ours - hf_logits(twin, tokens)[10:]).abs().max().item() < 1e-4


def test_short_key_runs_are_gathered_into_one_and_long_ones_stay_in_place() -> None:
    """A cached module (a long run) + a system prompt, a marker and new tokens (short runs):
    two attention calls, the short runs' slots in order, their causal bias kept."""
    from asynclm.engine.batch_layout import SHORT_RUN, attention_layout

    module = list(range(1000, 1000 + SHORT_RUN + 44))
    slots = [*range(0, 18), *module, *range(300, 305), *range(500, 504)]  # 4 new tokens last
    n = 4
    _, _, runs = attention_layout(torch.tensor(slots), n)
    long, short = runs
    assert (long.lo, long.hi, long.slots) == (1000, 1000 + len(module), None)
    assert short.slots is not None
    assert short.slots.tolist() == [*range(0, 18), *range(300, 305), *range(500, 504)]
    assert short.bias is not None and short.bias.shape == (n, 27)
    visible = short.bias == 0  # query i sees every earlier short key and new tokens <= i
    assert visible[:, :23].all()
    assert visible[:, 23:].tolist() == [[j <= i for j in range(4)] for i in range(4)]
    assert short.empty is None  # each query sees at least itself


def test_one_short_run_is_left_alone() -> None:
    from asynclm.engine.batch_layout import SHORT_RUN, attention_layout

    slots = [*range(1000, 1000 + SHORT_RUN), *range(0, 3)]
    _, _, runs = attention_layout(torch.tensor(slots), 3)
    assert [(r.lo, r.hi, r.slots) for r in runs] == [(1000, 1000 + SHORT_RUN, None), (0, 3, None)]
