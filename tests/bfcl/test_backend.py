"""`asynclm bench bfcl --backend openai:URL`: the harness through a real llama.cpp server.

The server (llama-cpp-python, on loopback) serves SmolLM2 with the CML tokens as GGUF. With
`--forced-oracle` the oracle's calls are forced onto the served model by a grammar per request,
so every mode makes the expected calls and the checker must pass them all; async mode on a
server restarts its stream at each interrupt (async-naive), which the records must show.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asynclm.backends.remote.llama_server import (
    SKIP_REASON,
    llama_cpp_server,
    missing_server_modules,
)
from asynclm.cli import main

MISSING = missing_server_modules()
pytestmark = [
    pytest.mark.llama_server,
    pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON + ", ".join(MISSING)),
]


@pytest.fixture(scope="module")
def gguf() -> Path:
    from asynclm.engine.loader import cache_root
    from asynclm.export import export_gguf, merge

    path = cache_root() / "test-exports" / "smollm2-135m-cml-q8_0.gguf"
    if not path.exists():
        export_gguf(merge("smollm2-135m"), path, outtype="q8_0", progress=False)
    return path


@pytest.fixture(scope="module")
def server(gguf: Path):
    with llama_cpp_server(gguf) as spec:
        yield spec


def bench(tmp_path: Path, *extra: str) -> dict:
    argv = ["bench", "bfcl", "--limit", "1", "--latency", "fixed:0.3", "--no-progress"]
    argv += ["--json", str(tmp_path / "bfcl.json"), "--plot", "", *extra]
    assert main(argv) == 0
    return json.loads((tmp_path / "bfcl.json").read_text())


def records(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "bfcl.tasks.jsonl").read_text().splitlines()[1:]]


def test_forced_oracle_through_the_server(server, fixture_data, tmp_path: Path) -> None:
    summary = bench(
        tmp_path, "--backend", server, "--forced-oracle", "--categories", "multistep_parallel"
    )
    assert summary["settings"]["backend"] == server
    modes = summary["categories"]["multistep_parallel"]["modes"]
    for mode in ("sync", "sync-parallel", "async"):
        assert modes[mode]["accuracy"] == 1.0, mode  # the forced calls pass BFCL's checker
    by_mode = {r["mode"]: r for r in records(tmp_path)}
    # 3 chains of 2 calls: each result arrives while async writes on, and aborts its stream
    assert by_mode["async"]["interrupts"] == 6
    assert by_mode["async"]["server"]["interrupt_restarts"] >= 1
    assert by_mode["sync"]["server"]["interrupt_restarts"] == 0
    assert by_mode["sync"]["server"]["restarts"] >= 1  # a new request after each paused call
    for record in by_mode.values():  # the server's prefix cache keeps the prompt
        server_figures = record["server"]
        assert server_figures["reused_tokens_per_restart"] > 0


def test_the_served_model_answers_on_its_own(server, fixture_data, tmp_path: Path) -> None:
    bench(tmp_path, "--backend", server, "--categories", "simple_python", "--modes", "sync")
    (record,) = records(tmp_path)
    assert record["server"]["requests"] >= 1
    assert record["generated_tokens"] > 0
    assert isinstance(record["valid"], bool)  # the base model may be wrong; the checker says


def test_bench_backends_runs_a_bfcl_subset_on_both_sides(
    server, gguf: Path, fixture_data, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "backends.json"
    argv = ["bench", "backends", "--server", server, "--gguf", str(gguf), "--sections", "bfcl"]
    argv += ["--bfcl-category", "multistep_parallel", "--bfcl-limit", "1"]
    assert main([*argv, "--bfcl-latency", "fixed:0.3", "--json", str(out)]) == 0
    assert "server/async" in capsys.readouterr().out
    section = json.loads(out.read_text())["bfcl"]
    assert section["tasks"] == ["multistep_parallel_0"]
    runs = section["runs"]
    assert set(runs) == {
        "engine/sync",
        "engine/async",
        "server/sync",
        "server/sync-parallel",
        "server/async",
    }
    assert all(r["accuracy"] == 1.0 for r in runs.values())  # the same forced calls everywhere
    assert runs["server/async"]["interrupt_restarts_median"] >= 1
    assert "requests_median" not in runs["engine/async"]  # no server on our engine
    assert section["speedup_vs_engine_sync"]["engine/sync"] == 1.0
