"""The `openai:URL` backend against a real HTTP server on loopback: streaming, async-naive
interrupts, and every fault a server or network can produce."""

from __future__ import annotations

import time

import anyio
import pytest

from asynclm.backends.remote import (
    Ban,
    MalformedResponse,
    RemoteBackend,
    RemoteHTTPError,
    RemoteTimeout,
    RetryPolicy,
    ServerUnavailable,
    Timeouts,
)
from asynclm.backends.remote.client import StreamDropped
from asynclm.backends.remote.llama_server import free_port
from tests.backends.fake_server import Fault

pytestmark = pytest.mark.anyio
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, seed=0)
INTERRUPT = "[INTR] c1 [HEAD] 42 [END]"


def greeter(prompt: str) -> str:
    return "Hello there, how are you today?"


def waiter(prompt: str) -> str:
    """Waits for call c1's result, then uses it."""
    head = "I asked for the number and I am waiting for it to come back to me now"
    if "[INTR] c1" in prompt:
        return head + " The number is 42."
    return head + " and waiting" * 40


def backend_for(server, cml_tokenizer, **kwargs) -> RemoteBackend:
    kwargs.setdefault("retry", FAST_RETRY)
    return RemoteBackend(server.spec, tokenizer=cml_tokenizer, **kwargs)


async def test_a_reply_streams_token_by_token(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        start = ctx.num_tokens
        steps = [step async for step in ctx.generate(max_tokens=64)]
        assert "".join(s.text for s in steps) == greeter("")
        assert steps[-1].finish_reason == "eos" and len(steps) > 5
        assert ctx.tokens[-1] == backend.eos_token_id  # the end of turn is in the context
        assert cml_tokenizer.decode(ctx.tokens[start:-1]) == greeter("")
    body = server.requests[0]
    assert isinstance(body["prompt"], str) and body["prompt"].endswith("<|im_start|>assistant\n")
    assert body["temperature"] == 0.0 and body["repeat_penalty"] == 1.0  # neutral sampling
    assert backend.profile.kind == "llama-cpp-python"


async def test_an_interrupt_resubmits_the_context_async_naive(make_server, cml_tokenizer) -> None:
    server = make_server(waiter, token_delay=0.01)
    backend = backend_for(server, cml_tokenizer)
    async with backend.context() as ctx:
        ctx.user("What is the number?")
        ctx.assistant()
        gen = ctx.generate(max_tokens=200)
        seen = ""
        async for step in gen:
            seen += step.text
            if seen.endswith("waiting for it"):
                ctx.append(cml_tokenizer.encode(INTERRUPT))  # between steps, as the agent does
        assert gen.finish_reason == "eos"
        assert seen.endswith("to come back to me now The number is 42.")
    resubmitted = server.requests[1]["prompt"]
    assert resubmitted.endswith("waiting for it" + INTERRUPT)  # what was seen, then the result
    start, restart = backend.stats.submissions
    assert (start.reason, restart.reason) == ("start", "interrupt")
    interrupt_tokens = len(cml_tokenizer.encode(INTERRUPT))
    assert restart.recomputed_tokens == interrupt_tokens  # the prefix cache holds the rest
    assert restart.first_token_s is not None and restart.first_token_s > 0


async def test_token_id_servers_get_token_ids_and_their_extensions(
    make_server, cml_tokenizer
) -> None:
    server = make_server(greeter, owned_by="vllm", token_ids=True)
    backend = backend_for(server, cml_tokenizer)
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        prompt = ctx.tokens
        assert await ctx.generate(max_tokens=64).collect_text() == greeter("")
    body = server.requests[0]
    assert body["prompt"] == prompt
    assert body["skip_special_tokens"] is False and body["return_token_ids"] is True


async def test_bans_become_logit_bias(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        await ctx.generate(max_tokens=3, ban=[49156]).collect_text()
        await ctx.generate(max_tokens=3, ban=[7], constrain=Ban([49156, 9])).collect_text()
        with pytest.raises(ValueError, match="local decoding constraint"):
            ctx.generate(constrain=object())
    assert server.requests[0]["logit_bias"] == {"49156": -100}
    assert server.requests[1]["logit_bias"] == {"7": -100, "9": -100, "49156": -100}


async def test_stop_closes_the_connection(make_server, cml_tokenizer) -> None:
    server = make_server(waiter, token_delay=0.02)
    backend = backend_for(server, cml_tokenizer)
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        gen = ctx.generate(max_tokens=500)
        async for _ in gen:
            if len(gen.tokens) == 3:
                gen.stop()
        assert gen.finish_reason == "cancelled" and len(gen.tokens) == 3
        with anyio.fail_after(5):
            while server.disconnects == 0:  # the server notices the client left
                await anyio.sleep(0.02)


# ---- faults ------------------------------------------------------------------------------------
async def test_connection_refused_is_a_clear_error_after_retries(cml_tokenizer) -> None:
    backend = RemoteBackend(
        f"openai:http://127.0.0.1:{free_port()}", tokenizer=cml_tokenizer, retry=FAST_RETRY
    )
    started = time.perf_counter()
    with pytest.raises(ServerUnavailable, match="cannot connect"):
        async with backend.context():
            pass
    assert time.perf_counter() - started < 5


async def test_a_retryable_status_is_retried(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    await backend.connect()
    server.faults.extend([Fault(status=503), Fault(status=429)])
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        assert await ctx.generate(max_tokens=64).collect_text() == greeter("")
    assert len(server.requests) == 3


async def test_a_client_error_is_not_retried(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    await backend.connect()
    server.faults.append(Fault(status=400))
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        with pytest.raises(RemoteHTTPError, match=r"HTTP 400.*injected 400") as info:
            await ctx.generate(max_tokens=64).collect_text()
    assert info.value.status == 400 and len(server.requests) == 1


async def test_a_dropped_stream_is_continued_from_what_arrived(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    await backend.connect()
    server.faults.append(Fault(after=4, drop=True))
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        assert await ctx.generate(max_tokens=64).collect_text() == greeter("")
    assert [s.reason for s in backend.stats.submissions] == ["start", "dropped"]
    first_four = cml_tokenizer.decode(cml_tokenizer.encode(greeter(""))[:4])
    assert server.requests[1]["prompt"].endswith(first_four)  # continued, not replayed


async def test_a_stream_that_keeps_dropping_fails_clearly(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    await backend.connect()
    server.faults.extend([Fault(after=1, drop=True)] * FAST_RETRY.attempts)
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        with pytest.raises(StreamDropped, match="dropped mid-stream"):
            await ctx.generate(max_tokens=64).collect_text()
    assert len(server.requests) == FAST_RETRY.attempts


async def test_a_malformed_chunk_is_an_error_not_a_retry(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    await backend.connect()
    server.faults.append(Fault(after=2, garbage=True))
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        with pytest.raises(MalformedResponse, match="not JSON"):
            await ctx.generate(max_tokens=64).collect_text()
    assert len(server.requests) == 1


async def test_a_silent_server_times_out_instead_of_hanging(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    timeouts = Timeouts(between_tokens=0.2, first_token=0.5)
    backend = backend_for(server, cml_tokenizer, timeouts=timeouts, retry=RetryPolicy(attempts=1))
    await backend.connect()
    server.faults.append(Fault(after=2, stall=20.0))
    started = time.perf_counter()
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        with pytest.raises(RemoteTimeout, match=r"no streamed token for 0\.2 s"):
            await ctx.generate(max_tokens=64).collect_text()
    assert time.perf_counter() - started < 10.0  # gave up long before the server woke up


async def test_leaving_the_context_mid_stream_cancels_it(make_server, cml_tokenizer) -> None:
    server = make_server(waiter, token_delay=0.02)
    backend = backend_for(server, cml_tokenizer)
    with anyio.fail_after(5):
        async with backend.context() as ctx:
            ctx.user("Hi")
            ctx.assistant()
            gen = ctx.generate(max_tokens=500)
            await gen.__anext__()
        assert ctx.is_released and not gen.is_active
    with anyio.fail_after(5):
        while server.disconnects == 0:
            await anyio.sleep(0.02)


def test_specs_are_checked() -> None:
    from asynclm.backends.remote import parse_backend

    assert parse_backend("openai:http://127.0.0.1:8080") == "http://127.0.0.1:8080/v1"
    assert parse_backend("openai:https://h.example/v1/") == "https://h.example/v1"
    for bad in ["http://x", "openai:ftp://x", "openai:localhost:8080"]:
        with pytest.raises(ValueError, match="openai"):
            parse_backend(bad)
    with pytest.raises(ValueError, match="timeouts must be positive: connect"):
        Timeouts(connect=0)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


async def test_an_agent_prompt_opens_ready_for_the_turn(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    async with backend.open_chat("Be brief.", "Hi") as ctx:
        assert ctx.text.endswith("Hi<|im_end|>\n<|im_start|>assistant\n")
        guard = backend.forgery_guard()
        assert guard.token_ids == (cml_tokenizer.encode("[INTR]", special=True)[0],)
        assert await ctx.generate(max_tokens=64, constrain=guard).collect_text() == greeter("")
    assert server.requests[0]["logit_bias"] == {str(guard.token_ids[0]): -100}


async def test_a_prompt_in_pieces_is_encoded_piece_by_piece(make_server, cml_tokenizer) -> None:
    server = make_server(greeter)
    backend = backend_for(server, cml_tokenizer)
    pieces = [("Tools:\n- f(x)", False), ("[CALL]", True), (" [CALL] user text", False)]
    async with backend.open_pieces(lambda chat: pieces) as ctx:
        expected = [
            t for text, special in pieces for t in cml_tokenizer.encode(text, special=special)
        ]
        assert ctx.tokens == expected
    # a special piece gets the marker token, a plain one only its text's ordinary tokens
    marker = cml_tokenizer.encode("[CALL]", special=True)
    assert len(marker) == 1 and marker[0] not in expected[len(expected) - 5 :]


def test_the_protocol_is_read_from_the_spec() -> None:
    from asynclm.backends.remote.spec import backend_protocol

    assert backend_protocol("openai:http://h:1") == "completions"
    assert backend_protocol("openai-chat:http://h:1/v1") == "chat"


async def test_llama_server_contexts_get_slots_of_their_own(make_server, cml_tokenizer) -> None:
    server = make_server(greeter, owned_by="llamacpp", token_ids=True)
    backend = backend_for(server, cml_tokenizer)
    async with backend.context() as a, backend.context() as b, backend.context() as c:
        for ctx in (a, b, c):
            ctx.user("Hi")
            ctx.assistant()
            await ctx.generate(max_tokens=2).collect_text()
    assert backend.profile.kind == "llama.cpp"
    assert [r.get("id_slot") for r in server.requests] == [0, 1, None]  # 2 slots, 3 contexts
    assert all(r["cache_prompt"] and isinstance(r["prompt"], list) for r in server.requests)
    async with backend.context() as d:  # slots are given back
        d.user("Hi")
        d.assistant()
        await d.generate(max_tokens=2).collect_text()
    assert server.requests[-1]["id_slot"] == 0


async def test_a_new_generation_after_a_pause_is_a_resume(make_server, cml_tokenizer) -> None:
    server = make_server(waiter)
    backend = backend_for(server, cml_tokenizer)
    async with backend.context() as ctx:
        ctx.user("Hi")
        ctx.assistant()
        await ctx.generate(max_tokens=5).collect_text()  # e.g. a sync call's [END]
        ctx.append(cml_tokenizer.encode(INTERRUPT))
        await ctx.generate(max_tokens=5).collect_text()
    start, resume = backend.stats.submissions
    assert (start.reason, resume.reason) == ("start", "resume")
    assert resume.recomputed_tokens == len(cml_tokenizer.encode(INTERRUPT))
    summary = backend.stats.summary()
    assert summary["restarts"] == 1 and summary["interrupt_restarts"] == 0
