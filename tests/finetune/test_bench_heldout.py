"""`asynclm bench heldout`: adapters side by side on the held-out tasks, through the real Agent."""

import json

import pytest

from asynclm.cli import main

BASE = ["bench", "heldout", "--model", "tiny", "--tasks", "1", "--max-tokens", "12"]


def test_two_adapters_on_the_same_tasks_and_every_run_kept(tmp_path, capsys):
    out = tmp_path / "heldout.json"
    args = [*BASE, "--adapters", "none,none", "--modes", "async,sync", "--no-progress"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cml_wellformed" in printed and "trap_discipline" in printed
    data = json.loads(out.read_text())
    assert data["config"]["constrained"] == "off" and data["config"]["modes"] == ["async", "sync"]
    report = data["adapters"]["none"]
    assert report["runs"] == 2 and report["adapter_path"] is None
    assert {d["mode"] for d in report["details"]} == {"async", "sync"}
    assert report["modes"]["async"]["runs"] == 1
    wellformed = report["cml_wellformed"]
    assert wellformed is None or 0.0 <= wellformed <= 1.0


def test_the_chosen_grammar_holds_every_agent_run(tmp_path, monkeypatch):
    import asynclm.agent

    seen = []

    class Recording(asynclm.agent.Agent):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("constrained"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(asynclm.agent, "Agent", Recording)
    out = tmp_path / "heldout.json"
    args = [*BASE, "--adapters", "none", "--modes", "async", "--constrained", "calls"]
    assert main([*args, "--tasks", "3", "--no-progress", "--json", str(out)]) == 0
    assert seen == ["calls"] * 3
    data = json.loads(out.read_text())
    assert data["config"]["constrained"] == "calls" and data["adapters"]["none"]["runs"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--modes", "fast"], "unknown ['fast']"),
        (["--adapters", "no/such/adapter"], "no such folder"),
        (["--tasks", "0"], "at least 1"),
    ],
)
def test_bad_options_are_refused_clearly(extra, message, capsys):
    assert main([*BASE, "--no-progress", *extra]) == 1
    assert message in capsys.readouterr().err
