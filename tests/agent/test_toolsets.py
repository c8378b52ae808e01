"""Toolsets: tools added or removed between runs are described; MCP servers, stdio and HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asynclm.agent import Agent, CallProgress
from asynclm.backends.scripted import TurnState, scripted_engine
from tests.agent.scripts import FAST, sleeper

pytestmark = pytest.mark.anyio

SERVER = Path(__file__).with_name("mcp_server.py")


def described(state: TurnState) -> str:
    """Calls every tool its system prompt describes (read from the prompt), then answers."""
    names = [n for n in ("alpha", "beta", "gamma") if f"{n}(x: int" in state.prompt]
    if state.chunks < len(names):
        return f"[CALL] c{state.chunks} [HEAD] {names[state.chunks]}() [END]"
    if len(state.interrupts) < len(names):
        return "[TRAP][END]"
    return "" if "saw" in state.written else f"saw {' '.join(names)}"


async def test_tools_added_and_removed_between_runs_are_described() -> None:
    agent = Agent([sleeper("alpha", 0.0)], model=scripted_engine(described, timing=FAST))
    assert (await agent.run("go")).output == "saw alpha"
    agent.add_tool(sleeper("beta", 0.0))
    added = await agent.run("go")
    assert added.output == "saw alpha beta" and [c.ok for c in added.calls] == [True, True]
    agent.remove_tool("alpha")
    assert (await agent.run("go")).output == "saw beta"
    with pytest.raises(ValueError, match="share the name"):
        agent.add_tool(sleeper("beta", 0.0))
    with pytest.raises(KeyError, match="no tool named 'alpha'"):
        agent.remove_tool("alpha")
    with pytest.raises(TypeError):
        agent.tools["gamma"] = sleeper("gamma", 0.0)  # type: ignore[index]


MCP_CALLS = (
    "[CALL] a [HEAD] add(a=2, b=3) [END]",
    '[CALL] e [HEAD] slow_echo(text="hi", seconds=0.4) [END]',
    '[CALL] w [HEAD] get_weather(city="Paris") [END]',
    "[CALL] n [HEAD] count(steps=3) [END]",
    "[CALL] b [HEAD] broken() [END]",
    " writing while they run",
)


def mcp_policy(state: TurnState) -> str:
    if state.chunks < len(MCP_CALLS):
        return MCP_CALLS[state.chunks]
    if len(state.interrupts) < 5:
        return "[TRAP][END]"
    return "" if "done" in state.written else " done"


def mcp_engine():  # type: ignore[no-untyped-def]
    return scripted_engine(mcp_policy, timing=FAST)


def check_mcp_run(agent: Agent, result: object, events: list[object]) -> None:
    calls = {c.id: c for c in result.calls}  # type: ignore[attr-defined]
    assert calls["a"].result == "5" and calls["w"].result == "sunny in Paris"
    assert calls["e"].result == "echo: hi" and calls["n"].result == "counted to 3"
    assert not calls["b"].ok and "broken" in (calls["b"].error or "")
    # the calls ran concurrently while the model wrote: the slow echo overlapped the others
    assert calls["a"].finished_at < calls["e"].finished_at
    assert calls["e"].dispatched_at < calls["n"].finished_at
    progress = [e for e in events if isinstance(e, CallProgress)]
    assert [e.message for e in progress] == ["step 1", "step 2", "step 3"]
    assert result.output == "done"  # type: ignore[attr-defined]


async def test_an_mcp_server_over_stdio(tmp_path: Path) -> None:
    from asynclm.agent.mcp import MCPServer

    with (tmp_path / "server.log").open("w") as log:
        server = MCPServer.stdio(sys.executable, [str(SERVER), "stdio"], errlog=log)
        agent = Agent(model=mcp_engine(), toolsets=[server])
        async with agent:  # the server process stays up for both runs
            for _ in range(2):
                async with agent.run_stream("go") as run:
                    events = [e async for e in run]
                check_mcp_run(agent, run.result, events)
    assert agent.tools == {}  # the server's tools are listed per run, not kept


@pytest.fixture
def http_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the MCP server did not start")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


async def test_an_mcp_server_over_streamable_http(http_server: str) -> None:
    from asynclm.agent.mcp import MCPServer

    agent = Agent(model=mcp_engine(), toolsets=[MCPServer.http(http_server)])
    async with agent.run_stream("go") as run:  # the run opens and closes the connection
        events = [e async for e in run]
    check_mcp_run(agent, run.result, events)
