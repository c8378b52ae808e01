"""The `Agent` on a remote backend (the loopback server): every mode, faults, chat tools."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest

from asynclm.agent import Agent, UsageLimits
from asynclm.backends.remote import RemoteBackend, RemoteError, RetryPolicy
from asynclm.cml import interrupt_pieces
from asynclm.tooling import tool
from tests.backends.fake_server import TURN_MARKER, Fault

pytestmark = pytest.mark.anyio
CALL = "[CALL] c1 [HEAD] double(x=21) [END]"
FILLER = " While the number is computed I keep writing about numbers" + " and more" * 60
ANSWER = " The answer is 42."


@tool
async def double(x: int) -> int:
    """Doubles a number (slowly)."""
    await anyio.sleep(0.3)
    return 2 * x


def _visible(turn: str) -> str:
    return re.sub(r"\[INTR\].*?\[END\]", "", turn, flags=re.DOTALL)


def async_model(prompt: str) -> str:
    """Calls double, writes on while it runs, answers once the result is in."""
    turn = prompt.split(TURN_MARKER)[-1]
    if "[INTR] c1" in turn:
        visible = _visible(turn)
        return visible if visible.endswith(ANSWER) else visible + ANSWER
    return CALL + FILLER


def sync_model(prompt: str) -> str:
    turn = prompt.split(TURN_MARKER)[-1]
    return CALL + (ANSWER if "[INTR] c1" in turn else "")


def backend(server, tokenizer, **kwargs) -> RemoteBackend:
    kwargs.setdefault("retry", RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    return RemoteBackend(server.spec, tokenizer=tokenizer, **kwargs)


async def test_async_mode_interrupts_the_stream_with_the_result(make_server, cml_tokenizer):
    server = make_server(async_model, token_delay=0.01)
    remote = backend(server, cml_tokenizer)
    agent = Agent([double], mode="async", backend=remote, max_tokens=400)
    result = await agent.run("What is double 21?")
    assert result.output.endswith("The answer is 42.")
    assert result.calls[0].ok and result.calls[0].result == 42
    assert result.usage.interrupts == 1
    reasons = [s.reason for s in remote.stats.submissions]
    assert reasons == ["start", "interrupt"]  # written on while the tool ran, then resubmitted
    assert "[INTR] c1 [HEAD] 42 [END]" in server.requests[1]["prompt"]
    assert server.requests[0]["logit_bias"] == {
        str(cml_tokenizer.encode("[INTR]", special=True)[0]): -100
    }


async def test_sync_mode_pauses_at_the_call_and_resumes(make_server, cml_tokenizer) -> None:
    server = make_server(sync_model)
    remote = backend(server, cml_tokenizer)
    agent = Agent([double], mode="sync", backend=remote, max_tokens=200)
    result = await agent.run("What is double 21?")
    assert result.output.strip() == "The answer is 42."
    assert [s.reason for s in remote.stats.submissions] == ["start", "resume"]
    resume = remote.stats.submissions[1]
    injected = interrupt_pieces("c1", "42")
    assert resume.recomputed_tokens == sum(
        len(cml_tokenizer.encode(t, special=s)) for t, s in injected
    )


async def test_the_prompt_is_the_one_the_local_engine_would_see(make_server, cml_tokenizer):
    from asynclm.agent import prompt_pieces

    server = make_server(sync_model)
    agent = Agent([double], mode="sync", backend=backend(server, cml_tokenizer))
    await agent.run("What is double 21?")
    pieces = prompt_pieces(cml_tokenizer.chat, agent.system_parts, "What is double 21?")
    assert server.requests[0]["prompt"] == "".join(p.text for p in pieces)


async def test_a_server_failing_mid_run_ends_it_and_cancels_its_tools(
    make_server, cml_tokenizer
) -> None:
    cancelled: list[bool] = []

    @tool
    async def forever(x: int) -> int:
        """Never finishes."""
        try:
            await anyio.sleep(60)
        finally:
            cancelled.append(True)
        return x

    def model(prompt: str) -> str:
        return "[CALL] c1 [HEAD] forever(x=1) [END]" + FILLER

    server = make_server(model, token_delay=0.01)
    remote = backend(server, cml_tokenizer)
    await remote.connect()
    server.faults.extend([Fault(after=20, drop=True), Fault(after=2, drop=True)])
    agent = Agent([forever], mode="async", backend=remote, max_tokens=400)
    with anyio.fail_after(20):
        with pytest.raises(RemoteError, match="dropped"):
            await agent.run("Go")
    assert cancelled == [True]  # the tool did not outlive the run


async def test_constrained_agents_need_the_local_engine(make_server, cml_tokenizer) -> None:
    server = make_server(sync_model)
    with pytest.raises(ValueError, match="local engine"):
        Agent([double], backend=backend(server, cml_tokenizer), constrained=True)


async def test_structured_output_needs_the_local_engine(make_server, cml_tokenizer) -> None:
    server = make_server(sync_model)
    with pytest.raises(ValueError, match="output_type needs the local engine"):
        Agent([double], backend=backend(server, cml_tokenizer), output_type=int)


async def test_a_session_on_a_remote_backend_sends_the_history_again(
    make_server, cml_tokenizer
) -> None:
    from asynclm.agent import prompt_pieces

    server = make_server(sync_model)
    agent = Agent([double], mode="sync", backend=backend(server, cml_tokenizer), max_tokens=200)
    assert not agent.keeps_kv
    async with agent.session() as session:
        first = await session.run("What is double 21?")
        second = await session.run("And again?")
        assert not session.keeps_kv
    assert second.output.strip() == "The answer is 42."
    assert second.messages[:2] == first.messages and len(second.messages) == 4
    start = next(
        r["prompt"] for r in server.requests[2:] if r["prompt"].endswith(TURN_MARKER)
    )  # the second turn's first request: the whole conversation, then the new message
    pieces = prompt_pieces(cml_tokenizer.chat, agent.system_parts, "And again?", first.messages)
    assert start == "".join(p.text for p in pieces)
    assert "[INTR] c1 [HEAD] 42 [END]" in start


# ---- OpenAI tool calling ---------------------------------------------------------------------
def chat_model(messages):
    """Asks for double(21) and double(2) in one turn, then answers with the results."""
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if results:
        return {"role": "assistant", "content": "Results: " + ", ".join(results)}
    calls = [
        {"id": f"call_{x}", "type": "function",
         "function": {"name": "double", "arguments": json.dumps({"x": x})}}
        for x in (21, 2)
    ]  # fmt: skip
    return {"role": "assistant", "content": None, "tool_calls": calls}


async def test_chat_tool_calling_runs_calls_together(make_server, cml_tokenizer) -> None:
    server = make_server(lambda p: "", chat_policy=chat_model, owned_by="vllm")
    remote = RemoteBackend(server.spec.replace("openai:", "openai-chat:"), tokenizer=cml_tokenizer)
    agent = Agent([double], mode="sync-parallel", backend=remote, system="Be brief.")
    result = await agent.run("Double 21 and 2")
    assert result.output == "Results: 42, 4"
    assert [c.result for c in result.calls] == [42, 4]
    first, second = result.calls
    assert second.started_at is not None and first.finished_at is not None
    assert second.started_at < first.finished_at  # they ran at the same time
    body = server.requests[0]
    assert body["parallel_tool_calls"] is True and body["tools"][0]["function"]["name"] == "double"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    with pytest.raises(ValueError, match="async mode needs CML"):
        await agent.run("Double 21", mode="async")


def test_the_run_command_takes_a_backend(make_server, cml_tokenizer, tmp_path, capsys) -> None:
    from asynclm.cli import main

    server = make_server(sync_model)
    cml_tokenizer.hf.save_pretrained(tmp_path / "tok")
    args = ["run", "What is double 21?", "--tool", "tests.backends.test_agent_remote:double"]
    remote = ["--backend", server.spec, "--tokenizer", str(tmp_path / "tok"), "--mode", "sync"]
    assert main([*args, *remote]) == 0
    out = capsys.readouterr().out
    assert "-> c1: double({'x': 21})" in out and "The answer is 42." in out
    refused = ["--backend", "openai:http://127.0.0.1:9", "--tokenizer", str(tmp_path / "tok")]
    assert main([*args, *refused]) == 1
    assert "cannot connect" in capsys.readouterr().err


async def test_chat_runs_keep_deps_history_and_limits(make_server, cml_tokenizer) -> None:
    from asynclm.agent import (
        AssistantMessage,
        CallFinished,
        RunHooks,
        RunInfo,
        TextPart,
        UserMessage,
    )
    from asynclm.tooling import RunContext

    @tool
    async def double(ctx: RunContext[int], x: int) -> int:
        """Doubles a number, plus the run's offset."""
        return 2 * x + ctx.deps

    class Seen(RunHooks):
        def __init__(self) -> None:
            self.names: list[str] = []

        def on_run_start(self, run: RunInfo) -> None:
            self.names.append("start")

        def on_call_end(self, run: RunInfo, event: CallFinished) -> None:
            self.names.append(event.name)

        def on_run_end(self, run: RunInfo, result: Any) -> None:
            self.names.append(result.finish_reason)

    seen = Seen()
    server = make_server(lambda p: "", chat_policy=chat_model, owned_by="vllm")
    remote = RemoteBackend(server.spec.replace("openai:", "openai-chat:"), tokenizer=cml_tokenizer)
    agent = Agent([double], mode="sync-parallel", backend=remote, deps_type=int, hooks=[seen])
    history = [UserMessage("Hi"), AssistantMessage((TextPart("Hello!"),))]
    result = await agent.run("Double 21 and 2", deps=100, message_history=history)
    assert result.output == "Results: 142, 104"
    assert server.requests[0]["messages"][:2] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert result.messages[:2] == tuple(history) and result.messages[-1].answer == result.output
    assert seen.names == ["start", "double", "double", "eos"]
    limited = await agent.run("Double 21 and 2", deps=0, limits=UsageLimits(max_calls=1))
    assert limited.finish_reason == "max_calls" and limited.calls == ()


async def test_chat_runs_refuse_tools_that_need_approval(make_server, cml_tokenizer) -> None:
    @tool(requires_approval=True)
    def delete(path: str) -> str:
        """Deletes a file."""
        return path

    server = make_server(lambda p: "", chat_policy=chat_model, owned_by="vllm")
    remote = RemoteBackend(server.spec.replace("openai:", "openai-chat:"), tokenizer=cml_tokenizer)
    agent = Agent([delete], mode="sync", backend=remote)
    with pytest.raises(ValueError, match="approval"):
        await agent.run("Delete x")
