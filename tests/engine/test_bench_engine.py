"""`asynclm bench engine` end to end on the tiny model: every column, the JSON it writes."""

from __future__ import annotations

import json
from pathlib import Path

from asynclm.cli import main


def test_the_engine_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    argv = ["bench", "engine", "--model", "tiny", "--reps", "1", "--prefill", "32"]
    argv += ["--decode-tokens", "4", "--batch", "2", "--no-llamacpp", "--transformers-bf16", "on"]
    assert main([*argv, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["transformers_bf16"] is True
    assert figures["prefill_32"]["transformers_bf16_s"] > 0
    assert figures["prefill_32"]["speedup_vs_transformers_bf16"] > 0
    assert figures["decode_batch1"]["transformers_bf16_tok_s"] > 0
    assert figures["greedy_agreement"] == 1.0  # same weights, same greedy tokens (fp32 side)
    assert 0 <= figures["step_overhead_fraction"] < 1
    assert figures["cpu"]["model"] and isinstance(figures["cpu"]["flags"], list)
    attention = figures["attention"]  # the causal attention's choice (torch: 16-wide heads)
    assert attention["native"] is False and attention["reason"]
