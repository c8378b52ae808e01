"""`asynclm bench bfcl` end to end on the oracle (scripted model on the real engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asynclm.cli import main

FAST = ["--model", "oracle", "--token-rate", "400", "--prefill-rate", "50000"]


def run_bench(tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "bench",
            "bfcl",
            "--categories",
            "simple_python,irrelevance,multistep_parallel",
            "--limit",
            "1",
            "--latency",
            "fixed:0.2",
            "--cheat-sheet",
            "--no-progress",
            "--json",
            str(tmp_path / "bfcl.json"),
            "--plot",
            str(tmp_path / "bfcl.png"),
            *FAST,
            *extra,
        ]
    )


def test_oracle_run_resume_and_outputs(fixture_data: Path, tmp_path: Path, capsys) -> None:
    assert run_bench(tmp_path) == 0
    out = capsys.readouterr().out
    assert "| multistep_parallel | async |" in out and "AsyncLM paper" in out
    summary = json.loads((tmp_path / "bfcl.json").read_text())
    categories = summary["categories"]
    assert set(categories) == {"simple_python", "irrelevance", "multistep_parallel"}
    for category in categories.values():
        for mode in ("sync", "sync-parallel", "async"):
            assert category["modes"][mode]["accuracy"] == 1.0  # the oracle is always right
            assert category["modes"][mode]["latency_s_median"] > 0
        assert category["best_possible_speedup"] >= 0.5
        assert category["async_over_ideal"] >= 1.0  # the ideal is a lower bound
    multistep = categories["multistep_parallel"]
    assert multistep["modes"]["async"]["interrupts_mean"] == 6  # 3 chains of 2 calls
    # sync waits for each of 6 calls of 200 ms in turn (1.2 s); async overlaps the chains
    # (about 0.4 s of waiting): a margin no scheduling noise of a loaded machine closes
    assert multistep["speedup_async_vs_sync"] > 1.0
    records = (tmp_path / "bfcl.tasks.jsonl").read_text().splitlines()
    assert len(records) == 1 + 3 * 3  # the settings, then one line per task and mode
    for name in ("bfcl.png", "bfcl.gantt.png", "bfcl.md", "bfcl.example.trace.json"):
        assert (tmp_path / name).stat().st_size > 0, name

    assert run_bench(tmp_path) == 0  # resumed: nothing is run again
    assert (tmp_path / "bfcl.tasks.jsonl").read_text().splitlines() == records


def test_other_settings_do_not_mix_with_earlier_records(
    fixture_data: Path, tmp_path: Path, capsys
) -> None:
    assert run_bench(tmp_path, "--modes", "sync") == 0
    assert run_bench(tmp_path, "--modes", "sync", "--token-rate", "300") == 1
    assert "--fresh" in capsys.readouterr().err
    assert run_bench(tmp_path, "--modes", "sync", "--token-rate", "300", "--fresh") == 0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--modes", "sync,fast"], "--modes"),
        (["--latency", "slow"], "bad latency"),
        (["--categories", "multi_turn_base"], "execution"),
        (["--adapter", "/nonexistent", "--model", "smollm2-135m"], "no such folder"),
        (["--backend", "openai:http://127.0.0.1:9", "--constrained", "on"], "local engine"),
        (["--backend", "openai:http://127.0.0.1:9", "--constrained", "calls"], "local engine"),
        (["--backend", "openai:http://127.0.0.1:9"], "--forced-oracle"),  # with --model oracle
        (["--forced-oracle"], "not 'oracle'"),  # the scripted oracle is not a real model
    ],
)
def test_bad_options_are_reported(fixture_data, tmp_path, capsys, extra, message) -> None:
    assert run_bench(tmp_path, *extra) == 1
    assert message in capsys.readouterr().err


def test_a_record_cut_short_is_dropped_and_run_again(fixture_data: Path, tmp_path: Path) -> None:
    assert run_bench(tmp_path, "--modes", "sync") == 0
    path = tmp_path / "bfcl.tasks.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # killed while writing
    assert run_bench(tmp_path, "--modes", "sync") == 0
    again = path.read_text().splitlines()
    assert len(again) == len(lines) and all(line.endswith("}") for line in again)


def test_accuracies_are_merged_into_a_fine_tuning_runs_metrics(tmp_path: Path) -> None:
    from asynclm.bench.bfcl import add_accuracies

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"cml_wellformed": 1.0, "bfcl": {"stale": 1}}))
    summary = {
        "simple_python": {
            "tasks": 4,
            "modes": {"sync": {"accuracy": 0.5}, "async": {"accuracy": 0.75}},
        },
        "parallel": {"tasks": 2, "modes": {"sync": {"accuracy": 1.0}}},
        "irrelevance": {"tasks": 0, "modes": {}},
    }
    add_accuracies(path, summary, {"adapter": "runs/x/adapter"})
    metrics = json.loads(path.read_text())
    assert metrics["cml_wellformed"] == 1.0  # what was there stays
    assert metrics["bfcl"] == {
        "settings": {"adapter": "runs/x/adapter"},
        "simple_python": {
            "accuracy": 0.75,  # the async mode's, when it ran
            "tasks": 4,
            "sync": {"accuracy": 0.5},
            "async": {"accuracy": 0.75},
        },
        "parallel": {"accuracy": 1.0, "tasks": 2, "sync": {"accuracy": 1.0}},
    }


@pytest.mark.parametrize(
    "choice,untuned,kind",
    [
        ("auto", True, "turn"),
        ("auto", False, None),
        ("on", False, "turn"),
        ("turn", False, "turn"),
        ("calls", False, "calls"),
        ("calls", True, "calls"),
        ("off", True, None),
    ],
)
def test_the_constrained_option_names_a_grammar_kind(choice, untuned, kind) -> None:
    from asynclm.bench.bfcl import grammar_kind

    assert grammar_kind(choice, untuned) == kind
