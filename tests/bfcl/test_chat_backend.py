"""`asynclm bench bfcl --backend openai-chat:URL`: the harness on a server's own tool calling.

The server is a real HTTP server on loopback whose "model" answers each task with its
ground-truth calls as OpenAI `tool_calls` (every chain's next call per reply), then a text
answer once the results are back. The harness must turn those calls into the checker's input
(so every mode passes BFCL's rules), record them, and refuse the mode a chat server cannot run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asynclm.bfcl_eval.data import load_category
from asynclm.bfcl_eval.tasks import make_task
from asynclm.cli import main
from asynclm.engine.loader import default_tokenizer, smollm2_gguf_path
from tests.backends.fake_server import FakeServer

CATEGORIES = ("simple_python", "irrelevance", "multistep_parallel")


def ground_truth_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Reply `k` of a conversation holds the `k`-th call of every chain; then the answer."""
    question = next(m["content"] for m in messages if m["role"] == "user")
    task = TASKS[question]
    replies = sum(1 for m in messages if m["role"] == "assistant" and m.get("tool_calls"))
    calls = [chain[replies] for chain in task.chains if len(chain) > replies]
    if not calls:
        return {"role": "assistant", "content": "Done: " + str(replies) + " round(s)."}
    tool_calls = [
        {"id": f"call_{replies}_{i}", "type": "function",
         "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for i, c in enumerate(calls)
    ]  # fmt: skip
    return {"role": "assistant", "content": None, "tool_calls": tool_calls}


TASKS: dict[str, Any] = {}


@pytest.fixture
def server(fixture_data: Path):
    entries = [e for c in CATEGORIES for e in load_category(c, limit=1)]
    TASKS.update({t.prompt: t for t in map(make_task, entries)})
    fake = FakeServer(lambda prompt: "", default_tokenizer(), chat_policy=ground_truth_model)
    yield fake
    fake.close()
    TASKS.clear()


def bench(tmp_path: Path, server: FakeServer, *extra: str) -> int:
    spec = server.spec.replace("openai:", "openai-chat:")
    argv = ["bench", "bfcl", "--backend", spec, "--tokenizer", str(smollm2_gguf_path())]
    argv += ["--limit", "1", "--latency", "fixed:0.05", "--no-progress", "--plot", ""]
    return main([*argv, "--json", str(tmp_path / "bfcl.json"), *extra])


def test_a_chat_servers_tool_calls_are_checked_by_bfcls_rules(server, tmp_path: Path) -> None:
    modes = "sync,sync-parallel"
    assert bench(tmp_path, server, "--categories", ",".join(CATEGORIES), "--modes", modes) == 0
    summary = json.loads((tmp_path / "bfcl.json").read_text())
    for category in CATEGORIES:
        for mode in ("sync", "sync-parallel"):
            accuracy = summary["categories"][category]["modes"][mode]["accuracy"]
            assert accuracy == 1.0, (category, mode)
    lines = (tmp_path / "bfcl.tasks.jsonl").read_text().splitlines()[1:]
    records = {(r["category"], r["mode"]): r for r in map(json.loads, lines)}
    multistep = records[("multistep_parallel", "sync-parallel")]
    assert len(multistep["calls"]) == multistep["expected_calls"] > 1
    assert all(c["ok"] for c in multistep["calls"])
    assert records[("irrelevance", "sync")]["calls"] == []


def test_async_mode_on_a_chat_server_is_refused_clearly(server, tmp_path: Path, capsys) -> None:
    assert bench(tmp_path, server, "--categories", "simple_python", "--modes", "async") != 0
    message = capsys.readouterr().err
    assert "async mode needs CML" in message and "sync-parallel" in message
    assert not server.requests  # refused before any task ran
