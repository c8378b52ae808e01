"""Kernel choices, block formats, the native kernels and their fallback to torch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import anyio
import pytest
import torch
import torch.nn.functional as F

from asynclm.engine.kernels import check, native
from asynclm.engine.kernels.formats import dequantize, exact_rows, quantize
from asynclm.engine.kernels.ops import Ops
from asynclm.engine.kernels.plan import ANY, choose_plan, describe, kernel_for
from asynclm.engine.weights import WeightPolicy


@pytest.fixture
def needs_native() -> None:
    """Skip where this machine has no native kernels (checked when the test runs, not at
    collection: nothing is built while tests are collected)."""
    if not check.native_ready():
        pytest.skip(f"native kernels off here: {check.problems()[0]}")


# ---- plans (pure) ----------------------------------------------------------------------------
def test_a_plan_takes_the_fastest_kernel_per_bucket_and_merges_neighbours():
    timings = {
        1: {"q4_1": 1.0, "plain": 3.0},
        4: {"q4_1": 2.0, "plain": 3.0},
        16: {"q4_1": 9.0, "plain": 4.0},
    }
    plan = choose_plan(timings)
    assert plan == ((4, "q4_1"), (ANY, "plain"))
    assert [kernel_for(plan, r) for r in (1, 4, 5, 10_000)] == ["q4_1", "q4_1", "plain", "plain"]
    assert describe(plan) == "q4_1 (1-4 rows), plain (5+ rows)"
    assert describe(((1, "a"), (ANY, "b"))) == "a (1 row), b (2+ rows)"


def test_a_plan_breaks_ties_by_preference_and_refuses_empty_timings():
    assert choose_plan({1: {"b": 1.0, "a": 1.0}}, preference=("b", "a")) == ((ANY, "b"),)
    with pytest.raises(ValueError, match="at least one kernel"):
        choose_plan({1: {}})


def test_weight_policy_parses_known_specs_and_names_the_bad_one():
    assert WeightPolicy.parse("auto").is_exact
    assert WeightPolicy.parse("fp32").lossless is False
    assert WeightPolicy.parse("bf16, int8").rounded == ("bf16", "int8")
    with pytest.raises(ValueError, match="'int4'"):
        WeightPolicy.parse("int4")


# ---- block formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["q4_1", "q8_0"])
def test_a_weight_on_a_block_grid_is_found_exact_and_others_are_not(fmt):
    g = torch.Generator().manual_seed(0)
    on_grid = dequantize(quantize(torch.randn(40, 64, generator=g), fmt))
    found = exact_rows(on_grid)
    assert found is not None and torch.equal(dequantize(found), on_grid)
    assert exact_rows(torch.randn(40, 64, generator=g)) is None


def test_rows_appended_to_a_quantized_weight_stay_float32_as_a_tail():
    g = torch.Generator().manual_seed(1)
    head = dequantize(quantize(torch.randn(64, 64, generator=g), "q8_0"))
    weight = torch.cat((head, torch.randn(3, 64, generator=g)))
    found = exact_rows(weight, max_tail=8)
    assert found is not None and found.tail is not None and found.block_rows == 64
    assert torch.equal(dequantize(found), weight)
    assert exact_rows(weight, max_tail=2) is None


# ---- native kernels agree with torch ---------------------------------------------------------
@pytest.mark.usefixtures("needs_native")
def test_the_native_kernels_pass_their_self_check_here():
    assert check.problems() == ()
    assert check.native_ops().native


@pytest.mark.usefixtures("needs_native")
@pytest.mark.anyio
async def test_native_and_torch_ops_give_the_same_logits_on_a_model(tiny):
    from asynclm.engine.engine import Engine

    engine = Engine(tiny.model, tiny.tokenizer, num_pages=64)
    tokens = list(range(300, 340))
    logits = []
    for native_ops in (True, False):
        engine.model.use_ops(Ops(native=native_ops))
        async with engine.context() as ctx:
            ctx.append(tokens)
            rows = [await ctx.forward([t]) for t in (5, 6, 7)]  # paged decode steps
            logits.append(torch.cat(rows))
    engine.model.use_ops(check.native_ops())
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)


# ---- the fallback to torch -------------------------------------------------------------------
def _run_tiny_engine(env: dict[str, str], tune: bool = True) -> subprocess.CompletedProcess[str]:
    """A fresh process loads the tiny model and generates; prints whether ops were native."""
    script = textwrap.dedent(
        """
        import anyio, json
        from asynclm.engine.engine import Engine

        async def main():
            engine = Engine.load("tiny", num_pages=64, tune=TUNE)
            async with engine.context() as ctx:
                ctx.append(list(range(300, 320)))
                out = await ctx.generate(max_tokens=4, stop_at_eos=False).collect()
            print(json.dumps({"native": engine.model.ops.native, "tokens": list(out.tokens)}))

        anyio.run(main)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script.replace("TUNE", str(tune))],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_asynclm_native_0_runs_on_torch_and_says_so():
    done = _run_tiny_engine({"ASYNCLM_NATIVE": "0"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["native"] is False and len(result["tokens"]) == 4
    assert "compiling" not in done.stderr  # nothing was built


def test_without_a_working_compiler_the_engine_runs_on_torch_with_one_warning(tmp_path):
    """A real build attempt with a compiler that fails (`CXX=false`), in a fresh cache."""
    env = {"CXX": "false", "ASYNCLM_CACHE": str(tmp_path / "cache")}
    done = _run_tiny_engine(env, tune=False)  # (measuring is another test's)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["native"] is False and len(result["tokens"]) == 4
    lines = [line for line in done.stderr.splitlines() if "native kernels off" in line]
    assert len(lines) == 1 and "build failed" in lines[0], done.stderr
    assert list((tmp_path / "cache" / "kernels").glob("*/FAILED"))  # remembered: no retry


def test_a_failed_build_is_reported_and_remembered(tmp_path, monkeypatch):
    import torch.utils.cpp_extension as cpp

    monkeypatch.setenv("ASYNCLM_CACHE", str(tmp_path))
    calls = []

    def broken_load(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Error building extension 'asynclm_kernels'")

    monkeypatch.setattr(cpp, "load", broken_load)
    first = native._load(rebuild=False)
    second = native._load(rebuild=False)
    assert not first.available and "build failed" in first.detail
    assert not second.available and "earlier build failed" in second.detail
    assert calls == [1]


def test_kernels_that_disagree_with_torch_are_turned_off_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(check, "load_native", lambda: native.NativeStatus(True, "test"))
    monkeypatch.setattr(check, "_has", lambda name: True)
    monkeypatch.setattr(check, "_compare", lambda: ["rms_norm (relative error 3.0e-01)"])
    check.problems.cache_clear()
    check._log_fallback.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="asynclm.engine"):
            ops = check.native_ops()
    finally:
        check.problems.cache_clear()
        check._log_fallback.cache_clear()
    assert ops.native is False
    assert any("disagree" in r.message and "rms_norm" in r.message for r in caplog.records)


def test_a_self_check_that_raises_counts_as_a_problem(monkeypatch):
    def boom():
        raise RuntimeError("illegal shape")

    monkeypatch.setattr(check, "load_native", lambda: native.NativeStatus(True, "test"))
    monkeypatch.setattr(check, "_has", lambda name: True)
    monkeypatch.setattr(check, "_compare", boom)
    check.problems.cache_clear()
    try:
        found = check.problems()
    finally:
        check.problems.cache_clear()
    assert found and "illegal shape" in found[0]


# ---- measured choices, cached per machine ---------------------------------------------------
def test_kernel_choices_are_measured_once_and_read_back_from_the_machine_cache(
    tiny, tmp_path, monkeypatch
):
    from asynclm.engine.loader import load_model
    from asynclm.engine.tuning import plan_kernels

    monkeypatch.setenv("ASYNCLM_CACHE", str(tmp_path))
    model = load_model("tiny").model
    first = plan_kernels(model, WeightPolicy.parse("fp32"))
    second = plan_kernels(model, WeightPolicy.parse("fp32"))
    assert first.sites and not any(s.cached for s in first.sites)
    assert all(s.cached for s in second.sites)
    assert [s.plan for s in first.sites] == [s.plan for s in second.sites]
    from asynclm.engine.kernels.native import build_key

    name = f"{first.cpu.key}-{build_key()}.json"  # timings of this build of the kernels
    stored = json.loads((tmp_path / "tuning" / name).read_text())
    assert len(stored) == len(first.sites)
    x = torch.randn(3, model.config.hidden_size)
    linear = model.layers[0].attention.wqkv
    torch.testing.assert_close(linear(x), F.linear(x, linear.weight, linear.bias))


# ---- the forward thread ----------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_cancelled_caller_waits_for_its_forward_to_end():
    from asynclm.engine.forward_thread import ForwardThread

    thread, ended = ForwardThread(), []

    def slow() -> int:
        import time

        time.sleep(0.3)
        ended.append(True)
        return 1

    with anyio.move_on_after(0.05):
        await thread.run(slow)
        pytest.fail("the cancelled caller went on")
    assert ended == [True]  # the call had ended before the cancellation took effect
    assert await thread.run(lambda: 2) == 2


def test_asynclm_info_prints_the_cpu_and_every_sites_choice(capsys):
    from asynclm.cli import main

    assert main(["info", "--model", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cpu"]["model"] and report["cpu"]["key"]
    assert set(report["sites"]) == {
        "attention.wqkv",
        "attention.wo",
        "feed_forward.w13",
        "feed_forward.w2",
        "output",
    }
    assert main(["info", "--model", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "native kernels:" in text and "attention.wqkv" in text


def test_importing_the_engine_builds_nothing(tmp_path):
    """A fresh cache and a fresh process: importing every engine module compiles nothing."""
    script = "import asynclm.engine.engine, asynclm.engine.kernels.check, asynclm.engine.tuning"
    env = {**os.environ, "ASYNCLM_CACHE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "kernels").exists() and "compiling" not in done.stderr
