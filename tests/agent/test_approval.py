"""Human approval: only the call that needs it waits; generation and other calls go on."""

from __future__ import annotations

import pytest

from asynclm.agent import (
    Agent,
    ApprovalRequested,
    CallRecord,
    RunStateError,
    TextDelta,
    tool,
)
from asynclm.backends.scripted import Timing, TurnState, scripted_engine
from tests.agent.scripts import sleeper

pytestmark = pytest.mark.anyio


@tool(requires_approval=True)
async def transfer(amount: int) -> str:
    """Moves money."""
    return f"moved {amount}"


def policy(state: TurnState) -> str:
    if state.chunks == 0:
        return "[CALL] t [HEAD] transfer(amount=5) [END][CALL] q [HEAD] quick() [END]"
    if state.chunks == 1:
        return " Waiting for approval" + " ." * 20  # the model goes on writing meanwhile
    if len(state.interrupts) < 2:
        return "[TRAP][END]"
    return "" if "moved" in state.written else f" {state.result('t')}"


def engine():  # type: ignore[no-untyped-def]
    return scripted_engine(policy, timing=Timing(step_s=0.003, prefill_token_s=0.0))


async def test_only_the_call_waits_for_approval() -> None:
    agent = Agent([transfer, sleeper("quick", 0.0, result="fast")], model=engine())
    text_while_waiting = 0
    async with agent.run_stream("pay") as run:
        async for event in run:
            if isinstance(event, ApprovalRequested):
                requested = event
            elif isinstance(event, TextDelta) and not run.calls[0].started_at:
                text_while_waiting += 1
                if text_while_waiting == 10:  # approve later, while the model writes
                    run.approve("t")
    result = run.result
    assert (requested.call_id, requested.name, requested.arguments) == (
        "t",
        "transfer",
        {"amount": 5},
    )
    t, q = result.calls
    assert q.finished_at is not None and t.started_at is not None
    assert q.finished_at < t.started_at  # the other call did not wait
    assert text_while_waiting >= 10  # generation went on
    assert result.output.endswith("moved 5")


async def test_a_denied_call_is_an_error_the_model_reads() -> None:
    agent = Agent([transfer, sleeper("quick", 0.0)], model=engine())
    async with agent.run_stream("pay") as run:
        async for event in run:
            if isinstance(event, ApprovalRequested):
                run.deny(event.call_id, "over the limit")
    call = run.result.calls[0]
    assert call.error == "denied: over the limit" and call.started_at == call.finished_at
    assert "[INTR] t [HEAD] error: denied: over the limit [END]" in run.result.transcript
    with pytest.raises(RunStateError, match="no call 'q' waits for approval"):
        run.approve("q")


async def test_an_approver_decides_and_run_without_one_denies() -> None:
    seen: list[CallRecord] = []

    async def approver(record: CallRecord) -> bool | str:
        seen.append(record)
        return record.arguments["amount"] < 10 or "too much"

    agent = Agent([transfer, sleeper("quick", 0.0)], model=engine())
    approved = await agent.run("pay", approver=approver)
    assert approved.calls[0].result == "moved 5" and seen[0].id == "t"
    denied = await agent.run("pay")  # nobody to ask: denied, the run goes on
    assert "nobody can approve" in (denied.calls[0].error or "")
    assert denied.calls[1].ok
