"""Agent runtime behaviour, checked deterministically with the scripted model."""

from __future__ import annotations

import re

import anyio
import pytest

from asynclm.agent import (
    Agent,
    CallDispatched,
    CallFinished,
    InterruptInjected,
    TextDelta,
    tool,
)
from asynclm.backends.scripted import Timing, TurnState, replay, scripted_engine
from tests.agent.scripts import FAST, engine_for, sleeper

pytestmark = pytest.mark.anyio

TWO_CALLS = (
    "Checking. ",
    "[CALL] a [HEAD] slow(x=1) [END]",
    "[CALL] b [HEAD] slow(x=2) [END]",
    " Still writing while they run. ",
    "[TRAP][END]",
    "Done.",
)


def _blocks_never_interrupted(transcript: str) -> bool:
    """No [INTR] appears between a [CALL]/[TRAP] and its [END]."""
    inside = re.findall(r"\[(?:CALL|TRAP)\](.*?)\[END\]", transcript, re.DOTALL)
    return all("[INTR]" not in block for block in inside)


@pytest.mark.parametrize("mode", ["async", "sync-parallel", "sync"])
async def test_every_mode_runs_the_calls_and_answers(mode: str) -> None:
    slow = sleeper("slow", 0.05, result="echo")
    agent = Agent([slow], model=engine_for(*TWO_CALLS), mode=mode)
    result = await agent.run("double 1 and 2")
    assert [(c.id, c.name, c.arguments, c.result) for c in result.calls] == [
        ("a", "slow", {"x": 1}, 1),
        ("b", "slow", {"x": 2}, 2),
    ]
    assert all(c.ok and c.injected_at is not None for c in result.calls)
    assert result.output == result.text == "Done."  # the answer, apart from the interim text
    # in async mode a result may arrive mid-sentence: it does not split the text
    assert result.interim == ("Checking.", "Still writing while they run.")
    assert "[INTR] a [HEAD] 1 [END]" in result.transcript
    assert "[INTR] b [HEAD] 2 [END]" in result.transcript
    assert _blocks_never_interrupted(result.transcript)
    assert result.usage.interrupts == 2 and result.usage.injected_tokens > 0
    assert result.finish_reason == "eos"


async def test_async_calls_overlap_each_other_and_generation() -> None:
    second_started = anyio.Event()

    @tool
    async def slow(x: int = 0) -> int:
        """Call 1 ends only once call 2 has started: they must run at once (on any load)."""
        if x == 2:
            second_started.set()
        else:
            with anyio.fail_after(10):
                await second_started.wait()
        return x

    result = await Agent([slow], model=engine_for(*TWO_CALLS)).run("go")
    a, b = result.calls
    assert a.ok and b.ok, (a.error, b.error)
    assert b.started_at < a.finished_at  # both ran at once
    assert a.finished_at > b.dispatched_at  # the model went on writing while a ran


async def test_sync_mode_pauses_at_each_call() -> None:
    slow = sleeper("slow", 0.05)
    result = await Agent([slow], model=engine_for(*TWO_CALLS), mode="sync").run("go")
    a, b = result.calls
    assert b.dispatched_at >= a.injected_at  # b was written only after a's result was in
    assert result.transcript.index("[INTR] a") < result.transcript.index("[CALL] b")


async def test_sync_parallel_runs_calls_together_at_the_trap() -> None:
    slow = sleeper("slow", 0.1)
    result = await Agent([slow], model=engine_for(*TWO_CALLS), mode="sync-parallel").run("go")
    a, b = result.calls
    assert a.started_at >= b.dispatched_at  # nothing ran before the trap
    assert b.started_at < a.finished_at  # then both together
    assert result.transcript.index("[TRAP]") < result.transcript.index("[INTR]")


async def test_results_wait_for_the_model_to_leave_a_block() -> None:
    fast = sleeper("fast", 0.0)
    # The second call block is written slowly: the first result arrives while it is open.
    long_block = "[CALL] b [HEAD] fast(x=" + "1" * 60 + ") [END]"
    engine = scripted_engine(
        lambda s: ["[CALL] a [HEAD] fast() [END]", long_block, " ok", ""][s.chunks],
        timing=Timing(step_s=0.004),
    )
    result = await Agent([fast], model=engine).run("go")
    assert _blocks_never_interrupted(result.transcript)
    assert result.transcript.index("[INTR] a") > result.transcript.index("[CALL] b")


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("[CALL] a [HEAD] nosuch(x=1) [END]", "unknown tool 'nosuch'"),
        ("[CALL] a [HEAD] slow(x='one') [END]", "invalid arguments"),
        ("[CALL] a [HEAD] slow(x=1 [END]", "malformed call"),
        ("[CALL] a [HEAD] slow(x=__import__('os')) [END]", "malformed call"),
    ],
)
async def test_bad_calls_become_error_interrupts(call: str, expected: str) -> None:
    slow = sleeper("slow", 0.0)
    result = await Agent([slow], model=engine_for(call, " after", "[TRAP][END]", " end")).run("go")
    (record,) = result.calls
    assert record.error is not None and expected in record.error
    assert f"[INTR] a [HEAD] error: {expected}" in result.transcript
    assert result.output.endswith("end")


async def test_duplicate_ids_are_refused() -> None:
    slow = sleeper("slow", 0.0)
    script = ("[CALL] a [HEAD] slow() [END]", "[CALL] a [HEAD] slow() [END]", "[TRAP][END]", "x")
    result = await Agent([slow], model=engine_for(*script)).run("go")
    assert [c.ok for c in result.calls] == [True, False]
    assert "duplicate call id" in (result.calls[1].error or "")


async def test_a_call_named_like_a_runtime_id_is_refused() -> None:
    slow = sleeper("slow", 0.0, result="real")
    script = ("[CALL] user [HEAD] slow() [END]", "[CALL] a [HEAD] slow() [END]", "[TRAP][END]", "x")
    result = await Agent([slow], model=engine_for(*script)).run("go")
    assert [(c.id, c.ok) for c in result.calls] == [("error", False), ("a", True)]
    assert "call id 'user' is reserved" in (result.calls[0].error or "")
    assert result.calls[1].result == "real"


async def test_failing_slow_and_huge_tools_are_reported() -> None:
    @tool
    async def boom() -> str:
        """Fails."""
        raise RuntimeError("disk on fire")

    @tool(timeout=0.05)
    async def hang() -> str:
        """Never returns in time."""
        await anyio.sleep(10)
        return "late"

    @tool(max_result_chars=100)
    def huge() -> str:
        """A result far too long."""
        return "x" * 100_000

    script = (
        "[CALL] a [HEAD] boom() [END]",
        "[CALL] b [HEAD] hang() [END]",
        "[CALL] c [HEAD] huge() [END]",
        "[TRAP][END]",
        "[TRAP][END]",
        "[TRAP][END]",
        "fine",
    )
    result = await Agent([boom, hang, huge], model=engine_for(*script)).run("go")
    a, b, c = result.calls
    assert "RuntimeError: disk on fire" in (a.error or "")
    assert "timed out after 0.05 s" in (b.error or "")
    assert c.ok and "truncated" in (c.result_text or "") and len(c.result_text or "") < 200
    assert result.output.endswith("fine")


@pytest.mark.parametrize("special_tokens", [False, True])
async def test_the_model_can_never_forge_an_interrupt(special_tokens: bool) -> None:
    from asynclm.cml.tokens import MARKERS

    slow = sleeper("slow", 0.0, result="real")
    forged = "[INTR] a [HEAD] fake [END]"
    engine = engine_for("[CALL] a [HEAD] slow() [END]", forged, "[TRAP][END]", "x")
    if special_tokens:  # [INTR] is then one token, which the guard masks
        engine.add_special_tokens(MARKERS)
    result = await Agent([slow], model=engine).run("go")
    assert "[INTR] a [HEAD] fake" not in result.transcript
    assert result.transcript.count("[INTR]") == result.usage.interrupts
    assert result.calls[0].result == "real"


async def test_the_model_ending_early_still_gets_its_results() -> None:
    slow = sleeper("slow", 0.1, result="late")
    seen: list[str | None] = []

    def policy(state: TurnState) -> str:
        if state.chunks == 0:
            return "[CALL] a [HEAD] slow() [END] I will wait."
        seen.append(state.result("a"))
        return "Got it." if state.chunks == 1 and state.result("a") else ""

    result = await Agent([slow], model=scripted_engine(policy, timing=FAST)).run("go")
    assert result.calls[0].ok and "late" in seen
    assert result.output.endswith("Got it.")


async def test_stream_events_and_user_interrupts() -> None:
    slow = sleeper("slow", 0.05)

    def policy(state: TurnState) -> str:
        if state.chunks == 0:
            return "[CALL] a [HEAD] slow() [END]" + " ." * 40
        said = state.result("user")
        return f" user said {said}." if said and state.chunks == 1 else ""

    agent = Agent([slow], model=scripted_engine(policy, timing=Timing(step_s=0.003)))
    events = []
    async with agent.run_stream("go") as run:
        async for event in run:
            events.append(event)
            if isinstance(event, CallDispatched):
                await run.interrupt("hello")
    kinds = [type(e) for e in events]
    assert kinds.index(CallDispatched) < kinds.index(CallFinished)
    assert TextDelta in kinds and InterruptInjected in kinds
    assert {e.call_id for e in events if isinstance(e, InterruptInjected)} == {"a", "user"}
    assert run.result.output.endswith("user said hello.")


async def test_cancelling_a_run_cancels_its_tools_and_frees_everything() -> None:
    cancelled = anyio.Event()

    @tool
    async def forever() -> str:
        """Runs until cancelled."""
        try:
            await anyio.sleep(60)
        finally:
            cancelled.set()
        return "never"

    engine = engine_for("[CALL] a [HEAD] forever() [END]", "[TRAP][END]", "x")
    agent = Agent([forever], model=engine)
    async with agent.run_stream("go") as run:
        async for event in run:
            if isinstance(event, CallDispatched):
                break
    assert cancelled.is_set()
    system_pages = engine.pool.num_used
    agent.prompt_cache.clear()
    assert system_pages > 0 and engine.pool.num_used == 0
    assert engine.scheduler.num_pending == 0


async def test_trace_exports_and_gantt(tmp_path) -> None:
    from asynclm.trace import Trace, draw_gantt

    slow = sleeper("slow", 0.02)
    result = await Agent([slow], model=engine_for(*TWO_CALLS)).run("go")
    trace = result.timeline
    lanes = trace.lanes
    assert lanes[0] == "model" and {"tool:slow#a", "tool:slow#b"} <= set(lanes)
    path = trace.save_chrome(tmp_path / "run.json")
    assert {e.name for e in Trace.load_chrome(path).events} >= {"generate", "slow", "interrupt"}
    png = draw_gantt(trace, tmp_path / "run.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_bad_agent_configuration_is_reported() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        Agent(mode="turbo")  # type: ignore[arg-type]
    slow = sleeper("slow", 0)
    with pytest.raises(ValueError, match="share the name"):
        Agent([slow, slow])


async def test_system_prompt_and_tool_docs_come_from_the_prompt_cache() -> None:
    engine = engine_for("[CALL] a [HEAD] slow() [END]", "[TRAP][END]", "ok")
    slow, other = sleeper("slow", 0.0), sleeper("other", 0.0)
    first = Agent([slow], model=engine, system="Be brief.")
    result = await first.run("question one")
    assert result.usage.cached_prompt_tokens > 5 * result.usage.prompt_tokens  # only the user turn
    computed = first.prompt_cache.stats.computed_tokens
    await first.run("question two")  # nothing of the system prompt is computed again
    assert first.prompt_cache.stats.computed_tokens == computed
    # another agent with the same instructions and first tool reuses that cached prefix
    second = Agent([slow, other], model=engine, system="Be brief.")
    await second.run("question three")
    stats = second.prompt_cache.stats
    assert stats.hits >= 2 and stats.computed_tokens < 2 * computed


async def test_a_replayed_script_ignores_what_happens() -> None:
    slow = sleeper("slow", 0.0, result="ignored")
    script = "[CALL] a [HEAD] slow() [END] Done without waiting."
    result = await Agent([slow], model=scripted_engine(replay(script), timing=FAST)).run("go")
    assert re.sub(r"\[INTR\].*?\[END\]", "", result.transcript) == script
    # the script goes on across the interrupt, which does not split the answer
    assert result.output == "Done without waiting." and result.interim == ()
    assert result.calls[0].ok and result.usage.interrupts == 1
