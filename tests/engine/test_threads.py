"""Thread counts per phase, chosen by timing the model at load and cached per machine."""

from __future__ import annotations

import anyio
import pytest
import torch

from asynclm.engine import threads
from asynclm.engine.cpu import cpu_info
from asynclm.engine.engine import Engine
from asynclm.engine.threads import ThreadPlan
from asynclm.engine.tuning import TimingStore


def test_candidates_are_powers_of_two_and_every_cpu():
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [1, 2]
    assert threads.candidates(6) == [1, 2, 4, 6]
    assert threads.candidates(8) == [1, 2, 4, 8]
    with pytest.raises(ValueError, match="max_threads"):
        threads.candidates(0)


def test_the_fastest_count_wins_and_a_near_tie_goes_to_the_larger():
    assert threads.fastest({1: 10.0, 2: 20.0}) == 1
    assert threads.fastest({1: 20.0, 2: 10.0}) == 2
    assert threads.fastest({1: 10.0, 2: 10.2, 4: 11.0}) == 2  # 2% slower: a tie
    assert threads.fastest({1: 10.0, 2: 10.5}) == 1  # 5% slower: not a tie
    with pytest.raises(ValueError, match="no timings"):
        threads.fastest({})


def test_measuring_runs_each_phase_at_each_count_and_restores_the_callers_count():
    seen: dict[str, set[int]] = {"decode": set(), "prefill": set()}

    def run(phase: threads.Phase) -> None:
        seen[phase].add(torch.get_num_threads())

    before = torch.get_num_threads()
    timings = threads.measure(run, [1, 2], rounds=2)
    assert seen == {"decode": {1, 2}, "prefill": {1, 2}}
    assert set(timings["decode"]) == set(timings["prefill"]) == {1, 2}
    assert all(ms >= 0 for t in timings.values() for ms in t.values())
    assert torch.get_num_threads() == before


def test_a_phase_with_a_timer_is_timed_by_it_and_keeps_its_fastest_round():
    runs: list[str] = []
    decode_ms = {1: [1.0, 8.0, 8.5, 8.2], 2: [2.0, 11.0, 13.0, 12.5]}  # warm-up, then rounds

    def decode(n: int) -> float:
        return decode_ms[n].pop(0)

    timings = threads.measure(runs.append, [1, 2], rounds=3, timers={"decode": decode})
    assert timings["decode"] == {1: 8.0, 2: 11.0}  # the warm-up (1.0, 2.0) is not kept
    assert set(runs) == {"prefill"}  # decode forwards were never run back to back
    assert threads.plan_from(timings).decode == 1


def test_without_a_forward_every_phase_needs_a_timer():
    timings = threads.measure(None, [1], rounds=1, timers={"decode": float, "prefill": float})
    assert timings == {"decode": {1: 1.0}, "prefill": {1: 1.0}}
    with pytest.raises(ValueError, match="a timer for every phase"):
        threads.measure(None, [1], timers={"decode": float})


def test_a_plan_is_measured_once_then_read_back(tmp_path):
    calls = []
    store = TimingStore(tmp_path / "machine.json", enabled=True)
    first = threads.plan_threads(lambda: calls.append, [1, 2], key="k", store=store)
    measured = len(calls)
    second = threads.plan_threads(
        lambda: calls.append, [1, 2], key="k", store=TimingStore(tmp_path / "machine.json", True)
    )
    again = threads.plan_threads(lambda: calls.append, [1, 2], key="k", store=store, retune=True)
    assert measured > 0 and not first.cached
    assert second.cached and second.timings == first.timings
    assert (second.decode, second.prefill) == (first.decode, first.prefill)
    assert not again.cached and len(calls) == 2 * measured
    assert "decode" in first.describe() and first.as_dict()["timings_ms"]["prefill"].keys() == {
        "1",
        "2",
    }


@pytest.mark.anyio
async def test_the_engine_measures_at_load_and_the_runner_sets_the_count_per_phase(
    tiny, tmp_path, monkeypatch
):
    monkeypatch.setenv("ASYNCLM_CACHE", str(tmp_path))
    engine = Engine.from_loaded(tiny, num_pages=256)
    plan = engine.runner.threads
    assert plan is not None and not plan.cached
    cpus = max(torch.get_num_threads(), cpu_info().logical_cores)
    assert (
        set(plan.timings["decode"]) == set(plan.timings["prefill"]) == set(threads.candidates(cpus))
    )
    assert engine.pool.num_used == 0  # the probe has a scratch pool of its own
    assert Engine.from_loaded(tiny, num_pages=256).runner.threads.cached  # type: ignore[union-attr]

    engine.runner.threads = ThreadPlan(decode=1, prefill=2, timings=plan.timings)
    counts: list[tuple[int, int]] = []  # (tokens in the forward, threads it ran with)
    model = engine.runner.model

    def counting(tokens, positions, batch, kv):
        counts.append((int(tokens.numel()), torch.get_num_threads()))
        return model(tokens, positions, batch, kv)

    monkeypatch.setattr(engine.runner, "model", counting)
    async with engine.context() as ctx:
        ctx.append(list(range(100, 140)))
        await ctx.generate(max_tokens=3, stop_at_eos=False).collect()
    assert counts[0] == (40, 2)  # the prompt: a prefill
    assert all(c == (1, 1) for c in counts[1:]) and len(counts) == 3


def test_models_off_the_cpu_or_untuned_get_no_plan(tiny):
    engine = Engine.from_loaded(tiny, num_pages=64, tune=False)
    assert engine.runner.threads is None
    assert anyio.run(_one_token, engine) == 1


async def _one_token(engine: Engine) -> int:
    async with engine.context() as ctx:
        ctx.append([1, 2, 3])
        return len((await ctx.generate(max_tokens=1).collect()).tokens)
