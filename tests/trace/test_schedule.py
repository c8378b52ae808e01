"""The ideal schedule: exact against brute force over every order, and fast on wide tasks."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from asynclm.trace.schedule import Step, ideal_makespan


def brute_force(chains: list[list[Step]]) -> float:
    """Every order keeping each chain in sequence, written one block after another."""
    labels = [c for c, chain in enumerate(chains) for _ in chain]
    best = float("inf")
    for order in set(itertools.permutations(labels)):
        t, ready, pos = 0.0, [0.0] * len(chains), [0] * len(chains)
        for c in order:
            step = chains[c][pos[c]]
            t = max(t, ready[c]) + step.write_s
            ready[c], pos[c] = t + step.latency_s, pos[c] + 1
        best = min(best, max(t, *ready))
    return best


def random_chains(rng: random.Random) -> list[list[Step]]:
    lengths = [rng.randint(1, 3) for _ in range(rng.randint(1, 3))]
    return [
        [Step(rng.uniform(0.05, 0.6), rng.choice([0.0, rng.uniform(0.03, 0.5)])) for _ in range(n)]
        for n in lengths
    ]


def test_matches_brute_force_on_random_tasks() -> None:
    rng = random.Random(0)
    for _ in range(300):
        chains = random_chains(rng)
        assert ideal_makespan(chains) == pytest.approx(brute_force(chains), abs=1e-12), chains


def test_simple_cases() -> None:
    assert ideal_makespan([]) == 0.0
    assert ideal_makespan([[Step(0.2, 0.3)]]) == pytest.approx(0.5)
    # independent calls: the longest latency first (0.1 + 0.1 + 0.1 vs 0.1 + 0.9)
    assert ideal_makespan([[Step(0.1, 0.1)], [Step(0.1, 0.9)]]) == pytest.approx(1.0)
    # one chain: every call waits for the one before
    assert ideal_makespan([[Step(0.1, 0.2), Step(0.1, 0.2)]]) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="non-negative"):
        ideal_makespan([[Step(-1.0, 0.0)]])


def test_wide_and_long_tasks_are_fast() -> None:
    rng = random.Random(1)
    chains = [[Step(0.2, rng.uniform(0.03, 0.5)) for _ in range(n)] for n in (7, 5, 4)]
    wide = [[Step(0.2, rng.uniform(0.03, 0.5))] for _ in range(10)]
    started = time.perf_counter()
    long_best, wide_best = ideal_makespan(chains), ideal_makespan(wide)
    assert time.perf_counter() - started < 5.0  # orders: 1.4 million and 3.6 million
    assert long_best >= sum(s.write_s + s.latency_s for s in chains[0])
    assert wide_best == pytest.approx(2.0 + min(s[0].latency_s for s in wide), abs=0.5)
