"""The scheduler on the tiny model: batching, chunked prefill, cancellation, failures."""

from __future__ import annotations

import anyio
import pytest

from asynclm.engine.engine import Engine
from asynclm.engine.pages import PoolExhaustedError
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


# ---- a pool short of pages -------------------------------------------------------------------
async def test_work_that_would_fit_waits_until_another_context_releases_pages(tiny) -> None:
    engine = Engine.from_loaded(tiny, num_pages=8, page_size=4)
    holder, waiter = engine.context(), engine.context()
    holder.append(list(range(100, 124)))  # 6 pages
    await holder.flush()
    waiter.append(list(range(200, 216)))  # 4 pages: only 2 are free
    released_at: list[float] = []

    async def release_later() -> None:
        await anyio.sleep(0.3)
        released_at.append(anyio.current_time())
        holder.release()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_later)
            await waiter.flush()
            done_at = anyio.current_time()
    assert waiter.num_cached == 16 and done_at >= released_at[0]
    waiter.release()
    assert engine.pool.num_used == 0 and engine.scheduler.num_pending == 0


async def test_waiting_for_pages_is_bounded_by_a_clear_error(tiny) -> None:
    engine = Engine.from_loaded(tiny, num_pages=8, page_size=4)
    engine.scheduler.policy = BatchPolicy(pool_wait_seconds=0.3)
    holder, waiter = engine.context(), engine.context()
    holder.append(list(range(100, 124)))
    await holder.flush()
    waiter.append(list(range(200, 216)))
    start = anyio.current_time()
    with (
        anyio.fail_after(20),
        pytest.raises(PoolExhaustedError, match=r"waited (0\.[3-9]|[1-9]\d*\.\d) s"),
    ):
        await waiter.flush()
    assert anyio.current_time() - start >= 0.3
    assert waiter.num_cached == 0 and waiter.num_tokens == 16  # nothing lost
    holder.release()
    await waiter.flush()  # and it fits now
    waiter.release()
    assert engine.pool.num_used == 0 and engine.scheduler.num_pending == 0


async def test_work_the_pool_can_never_hold_fails_at_once(tiny) -> None:
    engine = Engine.from_loaded(tiny, num_pages=8, page_size=4)
    engine.scheduler.policy = BatchPolicy(pool_wait_seconds=60)
    async with engine.context() as ctx:
        ctx.append(list(range(100, 140)))  # 10 pages of a pool of 8
        with anyio.fail_after(5), pytest.raises(PoolExhaustedError, match="could not hold it"):
            await ctx.flush()


async def test_a_waiter_cancelled_while_waiting_for_pages_leaves_nothing(tiny) -> None:
    engine = Engine.from_loaded(tiny, num_pages=8, page_size=4)
    holder, waiter = engine.context(), engine.context()
    holder.append(list(range(100, 124)))
    await holder.flush()
    waiter.append(list(range(200, 216)))
    with anyio.move_on_after(0.2):
        await waiter.flush()
    assert engine.scheduler.num_pending == 0 and waiter.num_tokens == 16
    assert engine.pool.num_used == 6  # the waiter took nothing
    holder.release()
    waiter.release()
    assert engine.pool.num_used == 0


async def test_others_keep_running_while_one_waits_for_pages(tiny) -> None:
    engine = Engine.from_loaded(tiny, num_pages=8, page_size=4)
    holder, waiter = engine.context(), engine.context()
    holder.append([1, 2, 3])
    await holder.flush()  # 1 page; the rest of the pool goes to `filler`
    filler = engine.context()
    filler.append(list(range(100, 120)))  # 5 pages
    await filler.flush()
    waiter.append(list(range(200, 212)))  # 3 pages: 2 free
    steps: list[int] = []

    async def decode_then_free() -> None:
        async for step in holder.generate(max_tokens=3, stop_at_eos=False):
            steps.append(step.index)
        filler.release()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(decode_then_free)
            await waiter.flush()
    assert steps == [0, 1, 2] and waiter.num_cached == 12
    holder.release()
    waiter.release()
    assert engine.pool.num_used == 0
