"""How an out-of-process run starts and ends: values, errors, crashes, cancellation, both modes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import torch

import asynclm.inferlets
from asynclm.engine.engine import Engine
from asynclm.inferlet import (
    InferletError,
    InferletKilledError,
    Runtime,
    run_inferlet,
)

pytestmark = pytest.mark.anyio
INFERLETS = Path(asynclm.inferlets.__file__).parent


class TheirOwnError(Exception):
    pass


async def returns(runtime: Runtime, kind: str) -> Any:
    ctx = runtime.context()
    ctx.append("hello there")
    logits = await ctx.next_logits()
    values = {
        "tensor": logits,
        "nested": {"a": [1, 2.5, None, True], "$weird": "key", "t": (1, 2)},
        "object": object(),
    }
    return values[kind]


async def raises(runtime: Runtime, kind: str) -> None:
    errors = {"value": ValueError("bad input", 7), "own": TheirOwnError("theirs")}
    raise errors[kind]


async def crash(runtime: Runtime) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


async def exit_early(runtime: Runtime) -> None:
    os._exit(3)


async def block(runtime: Runtime) -> None:
    time.sleep(300)


async def stream_steps(runtime: Runtime) -> dict[str, Any]:
    ctx = runtime.context()
    ctx.user("Name a colour.")
    ctx.assistant()
    steps = []
    generation = ctx.generate(max_tokens=6, stop_at_eos=False)
    async for step in generation:
        steps.append(step.token)
        if step.index == 1:
            generation.accept(" <|im_end|>")  # plain text, injected into the live stream
    fork = ctx.fork()
    fork.truncate(3)
    result = {
        "steps": steps,
        "text": generation.text,
        "reason": generation.finish_reason,
        "fork": fork.tokens,
        "seed": ctx.seed,
        "tokens": ctx.tokens,
        "used": runtime.tokens_used,
        "pages": runtime.pages_in_use,
    }
    fork.release()
    ctx.release()
    return result


async def test_values_of_any_data_and_tensors_come_back(engine: Engine) -> None:
    logits = await run_inferlet(engine, returns, {"kind": "tensor"})
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, engine.config.vocab_size)
    local = await run_inferlet(engine, returns, {"kind": "tensor"}, isolation="in-process")
    assert torch.equal(logits, local)
    nested = await run_inferlet(engine, returns, {"kind": "nested"})
    assert nested == {"a": [1, 2.5, None, True], "$weird": "key", "t": [1, 2]}
    with pytest.raises(InferletError, match="cannot leave the inferlet's process"):
        await run_inferlet(engine, returns, {"kind": "object"})
    assert engine.pool.num_used == 0


async def test_errors_arrive_as_themselves_or_named(engine: Engine) -> None:
    with pytest.raises(ValueError, match="bad input") as info:
        await run_inferlet(engine, raises, {"kind": "value"})
    assert "in the inferlet's process" in "".join(getattr(info.value, "__notes__", []))
    with pytest.raises(InferletError, match="TheirOwnError: theirs"):
        await run_inferlet(engine, raises, {"kind": "own"})


@pytest.mark.parametrize(
    ("inferlet", "message"),
    [(crash, "killed by SIGSEGV"), (exit_early, "exited with code 3 without reporting")],
)
async def test_a_process_that_dies_is_a_clear_error(
    engine: Engine, inferlet: Any, message: str
) -> None:
    with pytest.raises(InferletKilledError, match=message):
        await run_inferlet(engine, inferlet)
    assert engine.pool.num_used == 0


async def test_cancelling_the_caller_ends_the_process_at_once(engine: Engine) -> None:
    start = time.monotonic()
    with anyio.move_on_after(2):
        await run_inferlet(engine, block)
    assert time.monotonic() - start < 10
    assert engine.pool.num_used == 0


async def test_a_function_another_process_cannot_find_runs_in_process_only(
    engine: Engine,
) -> None:
    async def local_main(runtime: Runtime) -> int:
        return 7

    with pytest.raises(InferletError, match="cannot be found by another process"):
        await run_inferlet(engine, local_main)
    assert await run_inferlet(engine, local_main, isolation="in-process") == 7
    with pytest.raises(InferletError, match="no inferlet file"):
        await run_inferlet(engine, INFERLETS / "missing.py")
    with pytest.raises(ValueError, match="isolation must be"):
        await run_inferlet(engine, local_main, isolation="thread")  # type: ignore[arg-type]


async def test_the_context_api_behaves_the_same_in_both_modes(engine: Engine) -> None:
    remote = await run_inferlet(engine, stream_steps)
    local = await run_inferlet(engine, stream_steps, isolation="in-process")
    for key in ("steps", "text", "reason", "fork", "used", "pages"):
        assert remote[key] == local[key], key
    injected = engine.tokenizer.encode(" <|im_end|>")  # plain text: no control token
    tokens = remote["tokens"]
    at = next(i for i in range(len(tokens)) if tokens[i : i + len(injected)] == injected)
    assert not set(tokens[at:]) & set(engine.tokenizer.eos_token_ids)
    assert engine.pool.num_used == 0


@pytest.mark.parametrize("name", ["completion", "beam_search", "prefix_reuse"])
async def test_examples_give_the_same_result_in_both_modes(engine: Engine, name: str) -> None:
    args = {"max_tokens": 5}
    remote = await run_inferlet(engine, INFERLETS / f"{name}.py", args)
    local = await run_inferlet(engine, INFERLETS / f"{name}.py", args, isolation="in-process")
    assert_same(remote, local)


def assert_same(a: Any, b: Any) -> None:
    """Equal data; floats to float32 noise (batches may form differently)."""
    if isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


async def drops_contexts(runtime: Runtime) -> list[int]:
    for _ in range(20):
        ctx = runtime.context()
        ctx.append(list(range(10, 30)))  # 5 pages each
        await ctx.flush()
        del ctx  # dropped, not released: its pages come back (a quota of 12 allows 2 alive)
    return [runtime.pages_in_use]


async def test_contexts_dropped_unreleased_give_their_pages_back(engine: Engine) -> None:
    from asynclm.inferlet import Quota

    quota = Quota(max_pages=12)
    assert await run_inferlet(engine, drops_contexts, quota=quota) == [0]
    assert await run_inferlet(engine, drops_contexts, quota=quota, isolation="in-process") == [0]


def test_the_command_runs_an_example_out_of_process(capsys: pytest.CaptureFixture[str]) -> None:
    from asynclm.cli import main

    args = ["inferlet", str(INFERLETS / "completion.py"), "--model", "tiny"]
    assert main([*args, "--arg", "max_tokens=4", "--arg", "prompt=hi <|im_end|>"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_tokens"] == 4 and out["finish_reason"] == "length"
    assert main([*args, "--arg", "max_tokens=4", "--in-process"]) == 0
    assert json.loads(capsys.readouterr().out)["num_tokens"] == 4
