"""How many threads a forward uses: chosen by measurement at load, cached per machine.

A decode step reads every weight once and is bound by memory bandwidth, a prefill chunk by
arithmetic. On some machines fewer threads than CPUs decode as fast (and leave a core to the
event loop and the tools), on others every core helps, and SMT siblings can slow both. So the
engine times the model itself — a prefill and decode steps, as contexts run them — at each
candidate count (1, 2, 4, ... and every CPU torch may use), keeps the fastest per phase
(the larger count when two are within `TIE` of each other), and caches the timings with the
kernel timings of this machine. The runner sets the count on its own thread before each forward.

Both are timed through the engine's own path (its forward thread, the event loop's share of a
step between forwards), not as forwards back to back on the calling thread: on 2 cores a decode
forward of 2 threads measured 1.5x faster alone but decoded 1.4x slower in generation, its
second thread contending with the event loop for the core between steps.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from asynclm.engine.tuning import TimingStore

Phase = Literal["decode", "prefill"]
TIE = 0.03  # counts this close to the fastest count as fast as it (the larger one is kept)
PREFILL_TOKENS = 128  # the prefill chunk timed
_ROUNDS = 3
_DECODE_STEPS = 4  # decode steps per round (one alone is too short to time)


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    """The thread count per phase and what it was chosen from.

    Attributes:
        decode: Threads of forwards made only of one-token steps.
        prefill: Threads of every other forward.
        timings: Phase -> thread count -> milliseconds per forward (fastest round).
        cached: Read from the machine's cache rather than measured now.
    """

    decode: int
    prefill: int
    timings: dict[str, dict[int, float]]
    cached: bool = False

    def threads(self, decode_only: bool) -> int:
        return self.decode if decode_only else self.prefill

    def describe(self) -> str:
        """e.g. `decode 2 (1: 20.1 ms, 2: 19.3 ms); prefill 2 (1: 310 ms, 2: 170 ms)`."""
        parts = []
        for phase in ("decode", "prefill"):
            times = ", ".join(f"{n}: {ms:.1f} ms" for n, ms in sorted(self.timings[phase].items()))
            parts.append(f"{phase} {getattr(self, phase)} ({times})")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decode": self.decode,
            "prefill": self.prefill,
            "timings_ms": {p: {str(n): ms for n, ms in t.items()} for p, t in self.timings.items()},
            "cached": self.cached,
        }


def candidates(max_threads: int) -> list[int]:
    """1, 2, 4, ... below `max_threads`, and `max_threads` itself."""
    if max_threads < 1:
        raise ValueError(f"max_threads must be >= 1, got {max_threads}")
    counts, n = [], 1
    while n < max_threads:
        counts.append(n)
        n *= 2
    return [*counts, max_threads]


def fastest(timings: dict[int, float], tie: float = TIE) -> int:
    """The thread count with the lowest time; of counts within `tie` of it, the largest."""
    if not timings:
        raise ValueError("no timings to choose a thread count from")
    best = min(timings.values())
    return max(n for n, ms in timings.items() if ms <= best * (1 + tie))


def plan_from(timings: dict[str, dict[int, float]], cached: bool = False) -> ThreadPlan:
    return ThreadPlan(fastest(timings["decode"]), fastest(timings["prefill"]), timings, cached)


def measure(
    run: Callable[[Phase], None] | None,
    counts: Iterable[int],
    rounds: int = _ROUNDS,
    timers: Mapping[Phase, Callable[[int], float]] | None = None,
) -> dict[str, dict[int, float]]:
    """Milliseconds per forward of each phase at each thread count, on the calling thread.

    `run(phase)` runs one forward of that phase. A phase in `timers` is timed by its timer
    instead: `timer(n)` gives the milliseconds of that phase (per token, for decode) with n
    threads, measured however the caller runs it. Counts are interleaved round by round, so a
    burst of load on the machine hits them alike; each keeps its fastest round. The calling
    thread's count is restored afterwards.
    """
    counts, timers = list(counts), dict(timers or {})
    phases: tuple[tuple[Phase, int], ...] = (("prefill", 1), ("decode", _DECODE_STEPS))
    if run is None and any(phase not in timers for phase, _ in phases):
        raise ValueError("measure needs a forward to run, or a timer for every phase")

    def once(phase: Phase, n: int, steps: int) -> float:
        if phase in timers or run is None:
            return timers[phase](n)
        start = time.perf_counter()
        for _ in range(steps):
            run(phase)
        return (time.perf_counter() - start) / steps * 1e3

    before = torch.get_num_threads()
    best: dict[str, dict[int, float]] = {"decode": {}, "prefill": {}}
    try:
        for n in counts:  # warm up: a new thread team, caches, the kernels' first calls
            torch.set_num_threads(n)
            for phase, _ in phases:
                once(phase, n, 1)
        for _ in range(rounds):
            for n in counts:
                torch.set_num_threads(n)
                for phase, steps in phases:
                    ms = once(phase, n, steps)
                    best[phase][n] = min(ms, best[phase].get(n, ms))
    finally:
        torch.set_num_threads(before)
    return best


def plan_threads(
    probe: Callable[[], Callable[[Phase], None]] | None,
    counts: Iterable[int],
    *,
    key: str,
    store: TimingStore,
    retune: bool = False,
    timers: Mapping[Phase, Callable[[int], float]] | None = None,
) -> ThreadPlan:
    """Read this machine's timings of `key` back, or measure them with the forwards `probe()`
    sets up (None: every phase has a timer), or the phase `timers` given (`measure`),
    and keep them."""
    counts = list(counts)
    saved = None if retune else store.get(key)
    if saved is not None and all(n in saved for n in counts):
        timings = {p: {n: saved[n][p] for n in counts} for p in ("decode", "prefill")}
        return plan_from(timings, cached=True)
    print(
        "asynclm: measuring the thread counts of this model on this machine (cached afterwards)...",
        file=sys.stderr,
        flush=True,
    )
    timings = measure(None if probe is None else probe(), counts, timers=timers)
    store.put(key, {n: {p: timings[p][n] for p in timings} for n in counts})
    store.save()
    return plan_from(timings)
