"""Our exported GGUF on a real `llama_cpp.server` (loopback): it loads, streams, renders the
CML markers as text, and an interrupt resubmits the stream (async-naive)."""

from __future__ import annotations

import pytest

from asynclm.backends.remote import ForcedText, RemoteBackend
from asynclm.backends.remote.llama_server import (
    SKIP_REASON,
    llama_cpp_server,
    missing_server_modules,
)
from asynclm.cml.tokens import MARKERS

MISSING = missing_server_modules()
pytestmark = [
    pytest.mark.llama_server,
    pytest.mark.anyio,
    pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON + ", ".join(MISSING)),
]
CALL = '[CALL] w1 [HEAD] get_weather(city="Paris") [END]'
INTERRUPT = "[INTR] w1 [HEAD] sunny, 21 C [END]"
WAITING = " I will tell you about Paris while the weather comes in. Paris is a city"


@pytest.fixture(scope="module")
def exported_gguf():
    """SmolLM2 with the CML markers, exported as Q8_0 GGUF (cached: the export takes a while)."""
    from asynclm.engine.paths import cache_root
    from asynclm.export import export_gguf, merge

    path = cache_root() / "test-exports" / "smollm2-135m-cml-q8_0.gguf"
    if not path.exists():
        export_gguf(merge("smollm2-135m"), path, outtype="q8_0", progress=False)
    return path


@pytest.fixture(scope="module")
def server(exported_gguf):
    with llama_cpp_server(exported_gguf) as spec:
        yield spec


@pytest.fixture(scope="module")
def backend(server):
    import anyio

    backend = RemoteBackend(server)  # the tokenizer comes from the model path the server gives
    anyio.run(backend.connect)
    return backend


def _script(prompt: str) -> str:
    """The turn: a call, then text until the result arrives, then the answer."""
    turn = prompt[prompt.rfind("<|im_start|>assistant\n") + len("<|im_start|>assistant\n") :]
    if INTERRUPT in turn:
        return " It is sunny, 21 C."
    written = turn.removeprefix(CALL)
    if not turn.startswith(CALL):
        return CALL[len(turn) :] + WAITING + " of light" * 20
    return (WAITING + " of light" * 20)[len(written) :]


async def test_the_server_is_recognised_and_its_tokenizer_has_the_markers(backend) -> None:
    assert backend.profile.kind == "llama-cpp-python"
    ids = [backend.tokenizer.encode(m, special=True) for m in MARKERS]
    assert all(len(i) == 1 for i in ids)


async def test_greedy_text_matches_our_engine_on_the_same_file(backend, exported_gguf) -> None:
    from asynclm.engine.engine import Engine
    from asynclm.engine.sampling import Sampler

    engine = Engine.load(str(exported_gguf), device="cpu", num_pages=256)
    prompt = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"
    async with engine.context() as local:
        local.append(prompt, special=True)  # the template's markers are its special tokens
        ours = await local.generate(Sampler(), max_tokens=12).collect_text()
    async with backend.context() as ctx:
        ctx.append(prompt, special=True)
        theirs = await ctx.generate(max_tokens=12).collect_text()
    # the same weights, dequantised here and Q8_0 there: the same greedy words
    assert theirs.split()[:4] == ours.split()[:4]


async def test_markers_come_back_as_text(backend) -> None:
    async with backend.context() as ctx:
        ctx.user("Weather in Paris?")
        ctx.assistant()
        start = ctx.num_tokens
        forced = ForcedText(lambda prompt: CALL)
        text = await ctx.generate(max_tokens=40, constrain=forced).collect_text()
        assert text == CALL
        assert backend.tokenizer.decode(ctx.tokens[start:]).startswith(CALL)


async def test_an_interrupt_restarts_the_stream_on_the_servers_cache(backend) -> None:
    interrupt = backend.tokenizer.encode(INTERRUPT)
    before = len(backend.stats.submissions)
    async with backend.context() as ctx:
        ctx.user("Weather in Paris?")
        ctx.assistant()
        gen = ctx.generate(max_tokens=120, constrain=ForcedText(_script))
        seen = ""
        async for step in gen:
            seen += step.text
            if seen.endswith("Paris is a city"):
                ctx.append(interrupt)
        assert seen.startswith(CALL + WAITING) and seen.endswith("It is sunny, 21 C.")
    first, restart = backend.stats.submissions[before:]
    assert first.reason == "start"
    assert restart.reason == "interrupt" and restart.first_token_s is not None
    assert restart.recomputed_tokens <= len(interrupt) + 2  # the rest came from the KV cache


ANSWER = " The answer is 42."
AGENT_CALL = "[CALL] c1 [HEAD] double(x=21) [END]"


def _agent_script(prompt: str) -> str:
    """The async agent's turn: the call, text while it runs, the answer once it is in."""
    marker = "<|im_start|>assistant\n"
    turn = prompt[prompt.rfind(marker) + len(marker) :]
    if "[INTR] c1" in turn:
        return "" if turn.endswith(ANSWER) else ANSWER
    target = AGENT_CALL + WAITING + " of light" * 40
    return target[len(turn) :] if target.startswith(turn) else ""


async def test_an_async_agent_runs_end_to_end_on_llama_cpp(backend) -> None:
    import anyio

    from asynclm.agent import Agent
    from asynclm.tooling import tool

    @tool
    async def double(x: int) -> int:
        """Doubles a number (slowly)."""
        await anyio.sleep(0.5)
        return 2 * x

    before = len(backend.stats.submissions)
    agent = Agent(
        [double],
        mode="async",
        backend=backend,
        max_tokens=300,
        constraint=lambda agent: ForcedText(_agent_script),  # the model is untuned
    )
    result = await agent.run("What is double 21?")
    assert result.calls[0].ok and result.calls[0].result == 42
    assert result.output.endswith(ANSWER.strip()) and result.usage.interrupts == 1
    reasons = [s.reason for s in backend.stats.submissions[before:]]
    assert reasons == ["start", "interrupt"]  # written on while the tool ran, then resubmitted
    restart = backend.stats.submissions[-1]
    assert (
        restart.recomputed_tokens
        <= len(backend.tokenizer.encode("[INTR] c1 [HEAD] 42 [END]", special=True)) + 2
    )
