"""Context API semantics on the tiny model: exactness of fork/open/accept, errors, cleanup."""

from __future__ import annotations

import anyio
import pytest
import torch

from asynclm.engine.context import ContextClosedError
from asynclm.engine.engine import Engine
from asynclm.engine.pages import PoolExhaustedError
from asynclm.engine.sampling import Sampler

pytestmark = pytest.mark.anyio


def _prompt(engine: Engine, text: str = "Tell me a story about a cat.") -> list[int]:
    ctx = engine.context()
    ctx.system("You are a helpful assistant.")
    ctx.user(text)
    ctx.assistant()
    tokens = ctx.tokens
    ctx.release()
    return tokens


async def _greedy_from_scratch(engine: Engine, tokens: list[int], n: int) -> tuple[int, ...]:
    async with engine.context() as ctx:
        ctx.append(tokens)
        return (await ctx.generate(max_tokens=n, stop_at_eos=False).collect()).tokens


async def test_generation_is_deterministic_and_counts(engine: Engine) -> None:
    tokens = _prompt(engine)
    a = await _greedy_from_scratch(engine, tokens, 12)
    b = await _greedy_from_scratch(engine, tokens, 12)
    assert a == b and len(a) == 12
    assert engine.pool.num_used == 0


async def test_fork_continues_exactly_like_a_fresh_prefill(engine: Engine) -> None:
    tokens = _prompt(engine)
    async with engine.context() as ctx:
        ctx.append(tokens)
        head = (await ctx.generate(max_tokens=5, stop_at_eos=False).collect()).tokens
        child = ctx.fork()
        forked = (await child.generate(max_tokens=8, stop_at_eos=False).collect()).tokens
        original = (await ctx.generate(max_tokens=8, stop_at_eos=False).collect()).tokens
        child.release()
    fresh = await _greedy_from_scratch(engine, tokens + list(head), 8)
    assert forked == original == fresh


async def test_save_and_open_continue_exactly(engine: Engine) -> None:
    tokens = _prompt(engine)
    async with engine.context() as ctx:
        ctx.append(tokens)
        await ctx.flush()
        ctx.save("prefix")
    assert engine.pool.num_used > 0  # the export keeps its pages alive
    opened = type(ctx).open(engine, "prefix")
    assert opened.num_cached == len(tokens)
    opened.append([tokens[-1]])  # something pending to generate from
    reopened = (await opened.generate(max_tokens=6, stop_at_eos=False).collect()).tokens
    opened.release()
    engine.drop_export("prefix")
    assert engine.pool.num_used == 0
    assert reopened == await _greedy_from_scratch(engine, [*tokens, tokens[-1]], 6)


async def test_accept_mid_generation_matches_full_prefill(engine: Engine) -> None:
    tokens = _prompt(engine)
    injected = engine.tokenizer.encode(" [INTR] w1 [HEAD] sunny [END] ")
    async with engine.context() as ctx:
        ctx.append(tokens)
        gen = ctx.generate(max_tokens=10, stop_at_eos=False)
        steps = []
        async for step in gen:
            steps.append(step.token)
            if len(steps) == 3:
                gen.accept(injected)
        sequence = ctx.tokens
    assert sequence[len(tokens) : len(tokens) + 3] == steps[:3]
    assert sequence[len(tokens) + 3 : len(tokens) + 3 + len(injected)] == injected
    # The logits after the injection equal those of one full prefill of the whole sequence.
    cut = len(tokens) + 3 + len(injected)
    async with engine.context() as ref:
        full = await ref.forward(sequence[:cut])
    assert int(full[-1].argmax()) == steps[3]
    async with engine.context() as live:
        live.append(tokens)
        gen = live.generate(max_tokens=4, stop_at_eos=False)
        async for step in gen:
            if step.index == 2:
                gen.accept(injected)
            if step.index == 3:
                break
        assert live.tokens[-1] == sequence[cut]  # the last sampled token is still pending
        live_logits = await live.forward([42])
    async with engine.context() as ref:
        ref_logits = await ref.forward([*sequence[: cut + 1], 42])
    assert (live_logits[-1] - ref_logits[-1]).abs().max().item() < 1e-4


async def test_truncate_then_regenerate(engine: Engine) -> None:
    tokens = _prompt(engine)
    async with engine.context() as ctx:
        ctx.append(tokens)
        first = (await ctx.generate(max_tokens=6, stop_at_eos=False).collect()).tokens
        ctx.truncate(len(tokens))
        await ctx.flush()
        ctx.truncate(len(tokens) - 1)
        ctx.append(tokens[-1:])
        again = (await ctx.generate(max_tokens=6, stop_at_eos=False).collect()).tokens
    assert first == again


async def test_attach_concatenates_exports_at_their_positions(engine: Engine) -> None:
    a = engine.tokenizer.encode("First module text.")
    b = engine.tokenizer.encode("Second module, laid out later.")
    pos_a, pos_b = list(range(len(a))), list(range(100, 100 + len(b)))
    async with engine.context() as ctx:
        ctx.append(a, pos_a)
        await ctx.flush()
        ctx.save("a")
    async with engine.context() as ctx:
        ctx.attach("a")
        ctx.append(b, pos_b)  # b attends to a: the prefix encoding is exact
        await ctx.flush()
        ctx.save("a+b")
    async with engine.context() as ctx:
        ctx.attach("a+b")
        tail = engine.tokenizer.encode(" Question?")
        cached = await ctx.forward(tail)
        assert ctx.next_position == 100 + len(b) + len(tail)
    async with engine.context() as ref:
        full = await ref.forward(
            a + b + tail, pos_a + pos_b + list(range(100 + len(b), 100 + len(b) + len(tail)))
        )
    assert (cached - full[-len(tail) :]).abs().max().item() < 1e-4


async def test_cancelled_generation_leaves_a_consistent_context(engine: Engine) -> None:
    tokens = _prompt(engine)
    async with engine.context() as ctx:
        ctx.append(tokens)
        with anyio.move_on_after(0.05):
            async for _ in ctx.generate(max_tokens=10_000, stop_at_eos=False):
                await anyio.sleep(0.001)
        assert ctx.num_cached + 1 >= ctx.num_tokens - 1  # at most the last sampled token pending
        n = ctx.num_tokens
        more = (await ctx.generate(max_tokens=3, stop_at_eos=False).collect()).tokens
        assert ctx.num_tokens == n + 3 and len(more) == 3
    assert engine.pool.num_used == 0
    assert engine.scheduler.num_pending == 0


async def test_pool_exhaustion_is_a_clear_error_and_others_continue(tiny) -> None:
    engine = Engine.from_loaded(tiny, num_pages=6, page_size=4)
    big, small = engine.context(), engine.context()
    small.append([5, 6, 7])
    big.append(list(range(100, 140)))  # needs 10 pages
    with pytest.raises(PoolExhaustedError):
        await big.flush()
    assert big.num_cached == 0 and big.num_tokens == 40  # nothing lost, nothing computed
    await small.flush()
    assert small.num_cached == 3
    big.release()
    small.release()
    assert engine.pool.num_used == 0


async def test_release_is_idempotent_and_final(engine: Engine) -> None:
    ctx = engine.context()
    ctx.append([1, 2, 3])
    await ctx.flush()
    ctx.release()
    ctx.release()
    with pytest.raises(ContextClosedError):
        ctx.append([4])
    assert engine.pool.num_used == 0


async def test_forgotten_contexts_give_their_pages_back(engine: Engine) -> None:
    import gc

    ctx = engine.context()
    ctx.append([1, 2, 3, 4, 5])
    await ctx.flush()
    del ctx
    gc.collect()
    assert engine.pool.num_used == 0


async def test_stop_strings_max_tokens_and_errors(engine: Engine) -> None:
    tokens = _prompt(engine)
    async with engine.context() as ctx:
        ctx.append(tokens)
        gen = ctx.generate(max_tokens=7, stop_at_eos=False)
        result = await gen.collect()
        assert result.finish_reason == "length" and len(result.tokens) == 7
        word = engine.tokenizer.decode(result.tokens[2:3])
    async with engine.context() as ctx:
        ctx.append(tokens)
        result = await ctx.generate(max_tokens=7, stop=[word], stop_at_eos=False).collect()
        assert result.finish_reason == "stop" and word not in result.text
    async with engine.context() as ctx:
        with pytest.raises(ValueError, match="empty context"):
            ctx.generate()
        ctx.append([1])
        idle = ctx.generate()
        ctx.generate()  # a new generation ends the idle one
        assert idle.finish_reason == "cancelled"
        busy = ctx.generate(max_tokens=50, stop_at_eos=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(busy.collect)
            await anyio.sleep(0)
            with pytest.raises(RuntimeError, match="already has a running generation"):
                ctx.generate()
        with pytest.raises(ValueError, match="out of range"):
            ctx.append([10**9])
        with pytest.raises(ValueError, match="window"):
            ctx.append([1], [10**7])


async def test_seeded_sampling_is_reproducible(engine: Engine) -> None:
    tokens = _prompt(engine)
    sampler = Sampler(temperature=1.0, top_p=0.9, top_k=50, seed=7)

    async def sample() -> tuple[int, ...]:
        async with engine.context() as ctx:
            ctx.append(tokens)
            return (await ctx.generate(sampler, max_tokens=10, stop_at_eos=False).collect()).tokens

    assert await sample() == await sample()


async def test_ban_tokens_are_never_sampled(engine: Engine) -> None:
    tokens = _prompt(engine)
    first = await _greedy_from_scratch(engine, tokens, 5)
    async with engine.context() as ctx:
        ctx.append(tokens)
        result = await ctx.generate(max_tokens=5, ban=list(set(first)), stop_at_eos=False).collect()
    assert not set(result.tokens) & set(first)


async def test_add_special_tokens_grows_the_vocabulary(tiny) -> None:
    from asynclm.engine.loader import load_model

    loaded = load_model("tiny")  # a private copy: the vocabulary changes
    engine = Engine.from_loaded(loaded, num_pages=64)
    ids = engine.add_special_tokens(["[CALL]", "[END]"])
    assert ids == [engine.config.vocab_size - 2, engine.config.vocab_size - 1]
    assert engine.tokenizer.encode("a[CALL]b", special=True)[1] == ids[0]
    assert ids[0] not in engine.tokenizer.encode("a[CALL]b")  # plain text stays plain
    async with engine.context() as ctx:
        logits = await ctx.forward(engine.tokenizer.encode("x [CALL] y [END]", special=True))
    assert logits.shape[-1] == engine.config.vocab_size and torch.isfinite(logits).all()
