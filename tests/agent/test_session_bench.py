"""`asynclm bench session` runs end to end (on the tiny model) and writes its figures."""

from __future__ import annotations

import json
from pathlib import Path

from asynclm.cli import main


def test_the_session_benchmark_prints_both_and_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "session.json"
    args = ["bench", "session", "--model", "tiny", "--reps", "1", "--answer-tokens", "4"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "session" in printed and "replay" in printed and "faster to the first token" in printed
    data = json.loads(out.read_text())
    session, replay = data["session"], data["replay"]
    assert session["prefilled_tokens"] < replay["prefilled_tokens"]  # only the new message
    assert session["ttft_s"] > 0 and replay["ttft_s"] > 0 and data["turn"] == 5
