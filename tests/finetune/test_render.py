"""The renderer produces exactly what the runtime sees: an agent run on the scripted model,
replaying a simulated turn, holds the same token ids as the rendered training sequence."""

import re

import anyio
import pytest

from asynclm.agent import Agent
from asynclm.agent.prompting import prompt_pieces
from asynclm.backends.scripted import ScriptedModel, actions
from asynclm.engine.engine import Engine
from asynclm.engine.loader import default_tokenizer
from asynclm.finetune.bank import bank_tasks
from asynclm.finetune.metrics import canonical
from asynclm.finetune.render import Renderer, add_cml_tokens, task_prompt, task_tools
from asynclm.finetune.simulate import MODES, simulate
from asynclm.finetune.task import USER, tool_name
from asynclm.tooling import Tool, ToolError


@pytest.fixture(scope="module")
def tokenizer():
    tok = default_tokenizer()
    add_cml_tokens(tok)
    return tok


@pytest.fixture(scope="module")
def renderer(tokenizer):
    return Renderer(tokenizer)


def pick(kinds, seed=11):
    tasks = bank_tasks(60, seed=seed)
    return [next(t for t in tasks if t.kind == kind) for kind in kinds]


def test_loss_falls_on_what_the_model_writes_only(renderer, tokenizer):
    (task,) = pick(["parallel"])
    turn = simulate(task, "async", token_time=0.01, tokenize=renderer.tokenize)
    ex = renderer.render(task, turn)
    assert not any(ex.loss[: ex.num_prompt])
    written = tokenizer.decode([t for t, w in zip(ex.input_ids, ex.loss, strict=True) if w])
    assert written == turn.written() + "<|im_end|>"
    injected = tokenizer.decode(
        [
            t
            for i, (t, w) in enumerate(zip(ex.input_ids, ex.loss, strict=True))
            if not w and i >= ex.num_prompt
        ]
    )
    assert injected.count("[INTR]") == turn.num_interrupts == len(task.calls)
    assert "[INTR]" not in written


def test_the_prompt_is_the_agents_own_with_the_latency_estimates(tokenizer):
    task = next(t for t in bank_tasks(60, seed=11) if t.kind == "parallel" and t.latency_stated)
    agent = Agent(
        task_tools(task), model=_engine(tokenizer), system=task.instructions, example=task.example
    )
    assert task_prompt(tokenizer.chat, task) == prompt_pieces(
        tokenizer.chat, agent.system_parts, task.prompt
    )
    for name, estimate in task.estimates.items():
        assert f"{name}(" in agent.system
        assert f"takes about {estimate:.2g} s" in agent.system


def test_tools_without_a_stated_latency_are_documented_without_one(tokenizer):
    task = next(t for t in bank_tasks(60, seed=11) if not t.latency_stated)
    assert "# takes about" not in "".join(p.text for p in task_prompt(tokenizer.chat, task))


def _engine(tokenizer):
    return Engine(ScriptedModel(tokenizer, actions()), tokenizer, num_pages=64, name="scripted")


class GateTiming:
    """Forwards take no time, except those after which a result must be ready (then long
    enough for the gated tools to deliver)."""

    def __init__(self):
        self.base = 0
        self.slow: set[int] = set()
        self.calls = 0

    def seconds(self, num_tokens, num_rows):
        self.calls += 1
        return 0.25 if self.calls - self.base in self.slow else 0.0


def injection_points(renderer, turn):
    """For each injected call id (or "user"): (written tokens before it, rank in its batch)."""
    points, written = {}, 0
    for chunk in turn.chunks:
        at = dict(chunk.injections)
        for n in range(1, len(renderer.tokenizer.encode(chunk.text, special=True)) + 1):
            if n in at:
                ids = re.findall(r"\[INTR\] (\w+)", at[n])
                points |= {cid: (written + n, rank) for rank, cid in enumerate(ids)}
        written += len(renderer.tokenizer.encode(chunk.text, special=True))
    return points


async def replay(renderer, task, turn):
    """Runs the agent on the scripted model writing the turn token by token; returns the
    context it saw when it ended its turn."""
    tok = renderer.tokenizer
    pieces = [
        renderer.tokenizer.decode([t])
        for c in turn.chunks
        for t in tok.encode(c.text, special=True)
    ]
    timing = GateTiming()
    seen: list[list[int]] = []

    class Recording(ScriptedModel):
        def next_token(self, history):
            seen.append(list(history))
            return super().next_token(history)

    model = Recording(tok, actions(*pieces), timing=timing)
    engine = Engine(model, tok, num_pages=4096, name="scripted")
    points = injection_points(renderer, turn)
    keys = {canonical(c.name, c.arguments): c for c in task.calls}
    ids = turn.ids | {USER: USER}
    released = [0]
    timing.slow = {n for n, _ in points.values()}

    async def gate(cid):
        n, _rank = points[cid]
        while model.forward_calls - timing.base < n or released[0] < _before(points, cid):
            await anyio.sleep(0.002)
        released[0] += 1

    def tool_for(doc):
        name = tool_name(doc)

        async def run(**arguments):
            call = keys[canonical(name, arguments)]
            await gate(ids[call.key])
            if not call.ok:
                raise ToolError(call.result.removeprefix("error: "))
            return call.result

        return Tool.from_schema(doc, run, latency=task.estimates[name])

    agent = Agent(
        [tool_for(d) for d in task.tools],
        model=engine,
        mode=turn.mode,
        system=task.instructions,
        example=task.example,
        max_tokens=2000,
    )
    await agent.warm()
    timing.base = timing.calls
    async with agent.run_stream(task.prompt) as run, anyio.create_task_group() as tg:
        if task.interrupt is not None:

            async def interrupt():
                await gate(USER)
                await run.interrupt(task.interrupt.text)

            tg.start_soon(interrupt)
        async for _ in run:
            pass
    return seen[-1], run.result


def _before(points, cid):
    """How many results are released before `cid` (earlier points, or earlier in its batch)."""
    return sum(1 for p in points.values() if p < points[cid])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["error", "multistep", "user_interrupt"])
def test_an_agent_run_replaying_a_turn_sees_the_rendered_tokens(renderer, kind, mode):
    (task,) = pick([kind])
    turn = simulate(task, mode, token_time=0.02, tokenize=renderer.tokenize)
    example = renderer.render(task, turn)
    context, result = anyio.run(replay, renderer, task, turn)
    assert result.finish_reason == "eos"
    assert context == list(example.input_ids[:-1])  # the run ends by writing <|im_end|>
    assert example.input_ids[-1] == renderer.eos
