"""Many agents on one engine with failing and slow tools: everything finishes, nothing leaks."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import anyio
import pytest

from asynclm.agent import Agent, tool
from asynclm.backends.scripted import Timing, TurnState, scripted_engine

pytestmark = pytest.mark.anyio

CALLS_PER_AGENT = 5
_active_sync_calls = 0
_lock = threading.Lock()


def _numbers(prompt: str) -> list[int]:
    agent_id = int(re.search(r"agent (\d+)", prompt).group(1))  # type: ignore[union-attr]
    return [agent_id * CALLS_PER_AGENT + j for j in range(CALLS_PER_AGENT)]


def policy(state: TurnState) -> str:
    numbers = _numbers(state.prompt)
    written = state.written.count("[CALL]")
    if written < len(numbers):
        name = "work" if numbers[written] % 2 else "sync_work"
        return f"[CALL] c{written} [HEAD] {name}(n={numbers[written]}) [END] "
    if len(state.interrupts) < len(numbers):
        return "[TRAP][END]"
    return "" if "done" in state.written else " done"


def _outcome(n: int) -> str:
    """20% of calls fail: n % 10 == 0 raises, n % 10 == 5 is too slow (timeout)."""
    return {0: "fail", 5: "slow"}.get(n % 10, "ok")


@tool(timeout=1.0)
async def work(n: int) -> str:
    """Async work."""
    if _outcome(n) == "fail":
        raise ValueError(f"bad input {n}")
    await anyio.sleep(5 if _outcome(n) == "slow" else 0.01 * (n % 7))
    return f"ok {n}"


@tool(timeout=1.0)
def sync_work(n: int) -> str:
    """Sync work (runs in a worker thread)."""
    global _active_sync_calls
    with _lock:
        _active_sync_calls += 1
    try:
        if _outcome(n) == "fail":
            raise ValueError(f"bad input {n}")
        time.sleep(1.5 if _outcome(n) == "slow" else 0.002 * (n % 7))
        return f"ok {n}"
    finally:
        with _lock:
            _active_sync_calls -= 1


async def test_hundred_agents_with_failing_and_slow_tools() -> None:
    engine = scripted_engine(
        policy, timing=Timing(step_s=0.002, prefill_token_s=0.00005), num_pages=8192
    )
    agents = [
        Agent([work, sync_work], model=engine, max_tokens=400, max_tool_threads=8)
        for _ in range(100)
    ]
    results = {}

    async def run(i: int) -> None:
        results[i] = await agents[i].run(f"This is agent {i}. Do the work.")

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(run, i)

    assert len(results) == 100
    assert engine.scheduler.stats.max_sequences > 10  # the agents really shared batches
    failures = 0
    for i, result in results.items():
        assert result.output.endswith("done"), (i, result.output)
        by_n = {int(c.arguments["n"]): c for c in result.calls}
        assert sorted(by_n) == _numbers(f"agent {i}")
        for n, call in by_n.items():
            expected = _outcome(n)
            if expected == "ok":
                assert call.ok and call.result == f"ok {n}"
            else:
                failures += 1
                assert call.error is not None and call.injected_at is not None
                assert (
                    ("bad input" in call.error)
                    if expected == "fail"
                    else ("timed out" in call.error)
                )
                assert f"[INTR] {call.id} [HEAD] error:" in result.transcript
    assert failures == 100 * CALLS_PER_AGENT // 5  # every failure reported, 20% of all calls
    # nothing leaks: KV pages, scheduler queue, tasks
    agents[0].prompt_cache.clear()
    assert engine.pool.num_used == 0
    assert engine.scheduler.num_pending == 0
    others = [
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and "TestRunner" not in repr(t.get_coro())
    ]
    assert others == []  # no tool task or run task is left behind
    deadline = time.monotonic() + 5
    while _active_sync_calls and time.monotonic() < deadline:  # slow sync calls finish on their own
        await anyio.sleep(0.05)
    assert _active_sync_calls == 0


async def test_agents_on_the_real_tiny_transformer(tiny) -> None:
    """The tiny random transformer, forced by a grammar to write a script, run concurrently."""
    from asynclm.engine.engine import Engine

    engine = Engine.from_loaded(tiny, num_pages=2048, page_size=16)
    script = "[CALL] c0 [HEAD] work(n=1) [END] [CALL] c1 [HEAD] work(n=10) [END] [TRAP][END] done"
    grammar = engine.grammar(regex=re.escape(script))
    agents = [
        Agent([work], model=engine, max_tokens=200, constraint=lambda _a: grammar.matcher())
        for _ in range(12)
    ]
    async with anyio.create_task_group() as tg:
        results = []
        for agent in agents:
            tg.start_soon(lambda a=agent: _collect(a, results))
    assert len(results) == 12
    for result in results:
        assert [c.ok for c in result.calls] == [True, False]
        assert "bad input 10" in (result.calls[1].error or "")
        assert result.output.strip() == "done"
    agents[0].prompt_cache.clear()
    assert engine.pool.num_used == 0


async def _collect(agent: Agent, results: list) -> None:
    results.append(await agent.run("go"))


async def test_a_grammar_that_took_the_turns_end_runs_on_after_the_results(tiny) -> None:
    """The model ends its turn with a call in flight: the runtime removes the end token, waits,
    injects the result and generates on under the same grammar. The grammar had accepted the
    end token (it had terminated), so the run must roll it back instead of asking a finished
    matcher for the next token."""
    from asynclm.engine.engine import Engine
    from asynclm.engine.grammar import GrammarConstraint

    engine = Engine.from_loaded(tiny, num_pages=512, page_size=16)
    # the model's call waits 10-60 ms; it writes nothing else, so its turn ends before the result
    grammar = engine.grammar(regex=re.escape("[CALL] c0 [HEAD] work(n=6) [END]"))
    matchers: list[GrammarConstraint] = []

    def constraint(_agent: Agent) -> GrammarConstraint:
        matchers.append(grammar.matcher())
        return matchers[-1]

    result = await Agent([work], model=engine, max_tokens=60, constraint=constraint).run("go")
    assert result.errors == ()
    assert [(c.name, c.ok) for c in result.calls] == [("work", True)]
    assert "[INTR] c0 [HEAD]" in result.transcript  # the result came in, then the turn ended
    assert len(matchers) == 1 and matchers[0].is_finished()
