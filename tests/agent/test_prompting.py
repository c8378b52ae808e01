"""The prompt renderer: what it lists is exactly what a run's context holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from asynclm.agent import Agent, AgentRun, PromptPart, RunSpec, prompt_pieces, system_parts
from asynclm.agent.prompt_schema import agent_schema
from asynclm.agent.prompting import EXAMPLE, PROTOCOL, Piece, system_pieces
from asynclm.backends.local import LocalContext
from asynclm.engine.engine import Engine
from asynclm.promptcache.schema import Module, Special
from asynclm.tools import calculator, simulated
from tests.agent.scripts import engine_for

pytestmark = pytest.mark.anyio

# Leading spaces: encoding the pieces one by one differs from encoding their concatenation.
PROMPT = "  What is 17*23, and the weather in Paris?"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather.",
    "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}},
}


class FirstStepTokens:
    """A backend context that notes the context's tokens when generation first starts."""

    def __init__(self, inner: LocalContext, seen: list[list[int]]) -> None:
        self.inner, self.seen = inner, seen
        self.tokenizer = inner.tokenizer

    @property
    def num_tokens(self) -> int:
        return self.inner.num_tokens

    @property
    def num_cached(self) -> int:
        return self.inner.num_cached

    def append(self, content: str | Sequence[int], *, special: bool = False) -> None:
        self.inner.append(content, special=special)

    def generate(self, sampler: Any, **kwargs: Any) -> Any:
        if not self.seen:
            self.seen.append(list(self.inner.context.tokens))
        return self.inner.generate(sampler, **kwargs)

    def truncate(self, n: int) -> None:
        self.inner.truncate(n)

    def release(self) -> None:
        self.inner.release()


def recording(agent: Agent, seen: list[list[int]]) -> RunSpec:
    @asynccontextmanager
    async def open_context(prompt: str) -> AsyncIterator[FirstStepTokens]:
        async with agent.open_context(prompt) as ctx:
            yield FirstStepTokens(ctx, seen)

    return replace(agent.run_spec(), open_context=open_context)


@pytest.mark.parametrize("model", ["tiny", "scripted"])
async def test_prompt_pieces_are_the_tokens_of_the_first_generation_step(model: str) -> None:
    engine = Engine.load("tiny") if model == "tiny" else engine_for("It is 391.")
    tools = [calculator, simulated(WEATHER, latency=0.4)]
    agent = Agent(tools, model=engine, system="Be brief.", max_tokens=2)
    tokenizer = engine.tokenizer
    pieces = prompt_pieces(tokenizer.chat, agent.system_parts, PROMPT)
    expected = [t for p in pieces for t in tokenizer.encode(p.text, special=p.special)]
    assert tokenizer.encode("".join(p.text for p in pieces), special=True) != expected
    for _ in range(2):  # computing the system prompt, then reusing its cached K/V
        seen: list[list[int]] = []
        await AgentRun(recording(agent, seen), PROMPT).execute()
        assert seen == [expected]
    assert "get_weather(city: str = None)  # takes about 0.4 s" in agent.system


async def test_the_prompt_cache_schema_holds_the_system_pieces() -> None:
    engine = engine_for("ok")
    agent = Agent([calculator], model=engine, system="Be brief.")
    schema = agent.prompt_schema()
    modules = [node for node in schema.children if isinstance(node, Module)]
    pieces = system_pieces(engine.tokenizer.chat, agent.system_parts)
    assert [child for m in modules for child in m.children] == [
        Special(p.text) if p.special else p.text for p in pieces
    ]
    assert schema == agent_schema(engine.tokenizer.chat, system_parts([calculator], "Be brief."))


def test_system_parts() -> None:
    parts = system_parts([calculator], "Be brief.")
    assert [p.name for p in parts] == ["instructions", "protocol", "tool.0.calculator", "example"]
    assert parts[0] == PromptPart("instructions", "Be brief.\n\n")
    assert parts[1] == PromptPart("protocol", f"{PROTOCOL}\n\nTools:\n", special=True)
    assert parts[2].text.startswith("calculator(expression: str)\n  Evaluates")
    assert not parts[2].special  # a tool's document is plain text, whatever it says
    assert parts[3] == PromptPart("example", "\n" + EXAMPLE, special=True)
    assert system_parts([calculator])[0].name == "protocol"
    assert [p.name for p in system_parts([calculator], example=False)][-1] == "tool.0.calculator"
    assert system_parts([]) == [PromptPart("instructions", "You are a helpful assistant.")]


def test_prompt_pieces_layout() -> None:
    class Chat:
        begin = "<s>"
        generation_prompt = "<a>"

        def role_prefix(self, role: str) -> str:
            return f"<{role}>"

        def role_suffix(self, role: str) -> str:
            return f"</{role}>"

    parts = [PromptPart("a", "A"), PromptPart("b", "B")]
    assert prompt_pieces(Chat(), parts, "hi") == [
        Piece("<s><system>", True), Piece("A"), Piece("B"), Piece("</system>", True),
        Piece("<user>", True), Piece("hi"), Piece("</user>", True), Piece("<a>", True),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="at least one part"):
        prompt_pieces(Chat(), [], "hi")
