"""Scripted-model helpers shared by the agent tests."""

from __future__ import annotations

import anyio

from asynclm.agent import Tool, tool
from asynclm.backends.scripted import Timing, actions, scripted_engine
from asynclm.engine.engine import Engine

FAST = Timing(step_s=0.002, prefill_token_s=0.0)


def engine_for(*chunks: str, timing: Timing = FAST) -> Engine:
    return scripted_engine(actions(*chunks), timing=timing)


def sleeper(name: str, seconds: float, result: object = "ok") -> Tool:
    async def run(x: int = 0) -> object:
        await anyio.sleep(seconds)
        return result if result != "echo" else x

    run.__name__ = name
    run.__doc__ = f"Sleeps {seconds} s."
    return tool(run)
