"""The scheduler on the tiny model: batching, chunked prefill, cancellation, failures."""

from __future__ import annotations

import anyio
import pytest

from asynclm.engine.engine import Engine
from asynclm.engine.policy import BatchPolicy

pytestmark = pytest.mark.anyio


async def test_decode_steps_interleave_with_a_long_prefill(tiny) -> None:
    engine = Engine.from_loaded(tiny, num_pages=1024, page_size=16, max_batch_tokens=64)
    order: list[str] = []

    async def long_prefill() -> None:
        async with engine.context() as ctx:
            ctx.append(list(range(100, 1100)))  # 1000 tokens: 16 chunks of <= 64 while others wait
            await ctx.flush()
            order.append("prefill done")

    async def decode() -> None:
        async with engine.context() as ctx:
            ctx.append([1, 2, 3])
            async for step in ctx.generate(max_tokens=5, stop_at_eos=False):
                order.append(f"token {step.index}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_prefill)
        tg.start_soon(decode)
    assert order.index("token 4") < order.index("prefill done")  # decode was not held back
    assert engine.scheduler.stats.max_sequences == 2


async def test_a_cancelled_waiter_is_dropped_and_others_go_on(tiny, monkeypatch) -> None:
    engine = Engine.from_loaded(tiny, num_pages=1024, page_size=16)
    engine.scheduler.policy = BatchPolicy(max_batch_tokens=32, max_solo_tokens=32)  # chunk alone
    a, b = engine.context(), engine.context()
    a.append(list(range(100, 900)))
    b.append([5, 6, 7])
    execute = engine.runner.execute
    token = anyio.lowlevel.current_token()  # the forward thread is not one of anyio's
    with anyio.CancelScope() as scope:

        def execute_then_cancel(batch):
            result = execute(batch)
            anyio.from_thread.run_sync(scope.cancel, token=token)  # cancelled during a chunk
            return result

        monkeypatch.setattr(engine.runner, "execute", execute_then_cancel)
        await a.flush()
    monkeypatch.undo()
    assert a.num_cached == 32 and a.num_tokens == 800  # what was not computed stays pending
    assert engine.scheduler.num_pending == 0
    await b.flush()
    await a.flush()  # and it can be finished later
    assert a.num_cached == 800
    a.release()
    b.release()
    assert engine.pool.num_used == 0


async def test_a_failing_forward_fails_its_batch_cleanly(tiny, monkeypatch) -> None:
    engine = Engine.from_loaded(tiny, num_pages=64, page_size=16)

    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    ctx = engine.context()
    ctx.append([1, 2, 3])
    monkeypatch.setattr(engine.runner, "execute", broken)
    with pytest.raises(RuntimeError, match="device lost"):
        await ctx.flush()
    assert ctx.num_cached == 0 and ctx.num_tokens == 3 and engine.pool.num_used == 0
    monkeypatch.undo()
    await ctx.flush()
    assert ctx.num_cached == 3
    ctx.release()
