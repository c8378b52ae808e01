"""Observability: logging records, lifecycle hooks, OpenTelemetry spans (GenAI conventions)."""

from __future__ import annotations

import logging

import anyio
import pytest

from asynclm.agent import (
    Agent,
    CallFinished,
    CallStarted,
    InterruptInjected,
    RunHooks,
    RunInfo,
    RunResult,
    TrapStarted,
    tool,
)
from tests.agent.scripts import engine_for, sleeper

pytestmark = pytest.mark.anyio

SCRIPT = (
    "[CALL] a [HEAD] slow(x=1) [END]",
    "[CALL] b [HEAD] nosuch() [END]",
    "[TRAP][END]",
    "[TRAP][END]",
    "done",
)


class Recorder(RunHooks):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_run_start(self, run: RunInfo) -> None:
        self.seen.append(f"start {run.mode} {','.join(run.tools)}")

    def on_run_end(self, run: RunInfo, result: RunResult) -> None:
        self.seen.append(f"end {result.finish_reason}")

    def on_call_start(self, run: RunInfo, event: CallStarted) -> None:
        self.seen.append(f"call {event.call_id}")

    def on_call_end(self, run: RunInfo, event: CallFinished) -> None:
        self.seen.append(f"done {event.call_id} {event.ok}")

    def on_interrupt(self, run: RunInfo, event: InterruptInjected) -> None:
        self.seen.append(f"interrupt {event.call_id}")

    def on_trap_start(self, run: RunInfo, event: TrapStarted) -> None:
        self.seen.append("trap")


class TrapGate(RunHooks):
    """Opens when the model traps: a tool held by it is pending at the trap on any load."""

    def __init__(self) -> None:
        self.trapped = anyio.Event()

    def on_trap_start(self, run: RunInfo, event: TrapStarted) -> None:
        self.trapped.set()


def held_until_trap(gate: TrapGate):
    @tool
    async def slow(x: int = 0) -> str:
        """Returns once the model has trapped."""
        with anyio.fail_after(10):
            await gate.trapped.wait()
        return "ok"

    return slow


class Broken(RunHooks):
    def on_run_start(self, run: RunInfo) -> None:
        raise RuntimeError("a hook that fails")


async def test_hooks_see_the_lifecycle_in_order_and_a_failing_hook_is_ignored(caplog) -> None:
    recorder, gate = Recorder(), TrapGate()
    agent = Agent(
        [held_until_trap(gate)], model=engine_for(*SCRIPT), hooks=[Broken(), recorder, gate]
    )
    with caplog.at_level(logging.ERROR, logger="asynclm.agent"):
        result = await agent.run("go")
    assert result.output == "done"
    seen = recorder.seen
    assert seen[0] == "start async slow" and seen[-1] == "end eos"
    assert seen.index("call a") < seen.index("done a True") < seen.index("interrupt a")
    assert "interrupt b" in seen and "trap" in seen
    assert "hook Broken.on_run_start failed" in caplog.text


async def test_logging_records(caplog) -> None:
    agent = Agent([sleeper("slow", 0.0)], model=engine_for(*SCRIPT))
    with caplog.at_level(logging.DEBUG, logger="asynclm.agent"):
        await agent.run("go")
    messages = [r.getMessage() for r in caplog.records]
    run_id = caplog.records[0].run_id
    assert any(m.startswith(f"{run_id} started: async mode") for m in messages)
    assert any("call a dispatched: slow({'x': 1})" in m for m in messages)
    assert any("call a slow returned" in m for m in messages)
    assert any(
        m.startswith(f"{run_id} finished (eos)") and "2 calls (1 failed)" in m for m in messages
    )
    levels = {r.levelno for r in caplog.records}
    assert levels <= {logging.DEBUG, logging.INFO, logging.WARNING}
    assert all(r.run_id == run_id for r in caplog.records if hasattr(r, "run_id"))


async def test_opentelemetry_spans_follow_the_genai_conventions() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from asynclm.agent import OtelHooks

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OtelHooks(provider.get_tracer("test"), max_tokens=512)

    @__import__("asynclm").tool
    def broken(x: int = 0) -> str:
        """Fails."""
        raise ValueError("bad")

    script = ("[CALL] a [HEAD] slow(x=1) [END]", "[CALL] b [HEAD] broken() [END]", *SCRIPT[2:])
    gate = TrapGate()
    agent = Agent(
        [held_until_trap(gate), broken],
        model=engine_for(*script),
        hooks=[otel, gate],
        instrument=False,
        name="weather-bot",
    )
    result = await agent.run("go")
    spans = {span.name: span for span in exporter.get_finished_spans()}
    run = spans["invoke_agent weather-bot"]
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.agent.name"] == "weather-bot"
    assert run.attributes["gen_ai.request.model"] == "scripted"
    assert run.attributes["gen_ai.usage.output_tokens"] == result.usage.generated_tokens
    assert tuple(run.attributes["gen_ai.response.finish_reasons"]) == ("eos",)
    assert {e.name for e in run.events} >= {"asynclm.interrupt", "asynclm.trap.start"}
    slow, failed = spans["execute_tool slow"], spans["execute_tool broken"]
    for span, call_id in ((slow, "a"), (failed, "b")):
        assert span.parent.span_id == run.context.span_id
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["gen_ai.tool.call.id"] == call_id
    assert failed.status.status_code.name == "ERROR" and slow.status.status_code.name == "UNSET"
