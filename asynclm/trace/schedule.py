"""The ideal schedule of a task's calls: the lower bound no calling mode can beat. Pure.

The model writes one token at a time, so its call blocks are written one after another (a
single writer). A call of a chain can be written only once the result of the call before it has
arrived; its result arrives `latency` seconds after its block is written. The makespan of an
order of the calls ends when the last result is in (or the last block is written). The ideal is
the smallest makespan over every order that keeps each chain's calls in sequence.

The search is exact: depth-first over the orders, the call with the most work after it first,
pruned by lower bounds and by dominance (at the same progress through the chains, a state whose
writer and chains are all free no later than another's is at least as good). Lower bounds: a
chain's calls cannot overlap each other; and, forgetting that a call must wait for the one
before it, each remaining call j still needs the writer and is followed by q_j seconds of its
chain (its latency, then the later calls' writing and latencies), a one-machine problem that
writing the largest q_j first solves exactly (Jackson's rule). With independent calls that
bound is the optimum itself, so the first order tried is proven best at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Step", "ideal_makespan"]


@dataclass(frozen=True, slots=True)
class Step:
    """One call: seconds to write its block, seconds until its result arrives after that."""

    write_s: float
    latency_s: float


def ideal_makespan(chains: Sequence[Sequence[Step]]) -> float:
    """The shortest time, from the first token of the first call, until every result is in.

    Args:
        chains: The calls, chain by chain; inside a chain each call waits for the one before.

    Returns:
        The optimal makespan in seconds (0 for no calls).

    Raises:
        ValueError: A negative time.
    """
    if any(s.write_s < 0 or s.latency_s < 0 for chain in chains for s in chain):
        raise ValueError("write and latency times must be non-negative")
    return _Search([list(chain) for chain in chains if chain]).run()


class _Search:
    def __init__(self, chains: list[list[Step]]) -> None:
        self.chains = chains
        # tail[c][k]: write + latency of chain c's calls from k on (a chain's own lower bound)
        self.tail = [_suffix_sums([s.write_s + s.latency_s for s in c]) for c in chains]
        # after[c][k]: seconds of chain c that follow the writing of its call k (q_k)
        self.after = [
            [t - c[k].write_s for k, t in enumerate(tail[:-1])]
            for c, tail in zip(chains, self.tail, strict=True)
        ]
        self.best = float("inf")
        self.seen: dict[tuple[int, ...], list[tuple[float, tuple[float, ...]]]] = {}

    def run(self) -> float:
        if not self.chains:
            return 0.0
        self._visit((0,) * len(self.chains), 0.0, (0.0,) * len(self.chains))
        return self.best

    def _visit(self, progress: tuple[int, ...], t: float, ready: tuple[float, ...]) -> None:
        if self._bound(progress, t, ready) >= self.best or self._dominated(progress, t, ready):
            return
        open_chains = [c for c, k in enumerate(progress) if k < len(self.chains[c])]
        if not open_chains:
            self.best = max(t, *ready)
            return
        open_chains.sort(key=lambda c: (max(t, ready[c]), -self.after[c][progress[c]]))
        for c in open_chains:
            step = self.chains[c][progress[c]]
            end = max(t, ready[c]) + step.write_s
            self._visit(
                (*progress[:c], progress[c] + 1, *progress[c + 1 :]),
                end,
                (*ready[:c], end + step.latency_s, *ready[c + 1 :]),
            )

    def _bound(self, progress: tuple[int, ...], t: float, ready: tuple[float, ...]) -> float:
        chains = max(max(t, ready[c]) + self.tail[c][k] for c, k in enumerate(progress))
        return max(chains, *ready, self._jackson(progress, t))

    def _jackson(self, progress: tuple[int, ...], t: float) -> float:
        """The one-machine bound: remaining calls, no waiting, largest q first."""
        remaining = sorted(
            (
                (self.after[c][j], self.chains[c][j].write_s)
                for c, k in enumerate(progress)
                for j in range(k, len(self.chains[c]))
            ),
            reverse=True,
        )
        bound, clock = t, t
        for q, write in remaining:
            clock += write
            bound = max(bound, clock + q)
        return bound

    def _dominated(self, progress: tuple[int, ...], t: float, ready: tuple[float, ...]) -> bool:
        states = self.seen.setdefault(progress, [])
        for t_seen, ready_seen in states:
            if t_seen <= t and all(a <= b for a, b in zip(ready_seen, ready, strict=True)):
                return True
        states.append((t, ready))
        return False


def _suffix_sums(values: list[float]) -> list[float]:
    sums = [0.0] * (len(values) + 1)
    for k in range(len(values) - 1, -1, -1):
        sums[k] = sums[k + 1] + values[k]
    return sums
