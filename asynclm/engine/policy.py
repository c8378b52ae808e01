"""Scheduling policy: which forward work runs next, and how much of it (no torch here).

The scheduler holds a queue of requests; each batch the policy picks the oldest request of
every sequence (a sequence's work runs in submission order), puts the shortest first (decode
steps before prefills, so decode latency stays low) and cuts them to a token budget: a long
prefill is chunked only when others wait, since alone one causal pass is fastest. A request
whose KV slots cannot be reserved is left out of the batch: when the pool is short of pages it
waits, for at most `pool_wait_seconds`, for other contexts to give pages back (and fails at once
when the pool could never hold it); past a quota it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Work(Protocol):
    """What the policy sees of a request: its sequence and how much is left to compute."""

    @property
    def seq_id(self) -> int: ...

    @property
    def done(self) -> int: ...

    @property
    def remaining(self) -> int: ...


W = TypeVar("W", bound=Work)


@dataclass(frozen=True, slots=True)
class Chunk(Generic[W]):
    """Tokens [start, start + length) of a request, at rows [row, row + length) of a batch."""

    request: W
    start: int
    length: int
    row: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """Token budgets of a batch.

    Attributes:
        max_batch_tokens: Tokens per forward while several sequences wait (chunked prefill).
        max_solo_tokens: Tokens per forward when one sequence is alone.
        pool_wait_seconds: How long work whose KV pages are not free waits for other contexts
            to release pages before it fails with `PoolExhaustedError` (0: fail at once).
    """

    max_batch_tokens: int = 512
    max_solo_tokens: int = 4096
    pool_wait_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.max_batch_tokens < 1 or self.max_solo_tokens < 1:
            raise ValueError(
                "max_batch_tokens and max_solo_tokens must be >= 1, got "
                f"{self.max_batch_tokens} and {self.max_solo_tokens}"
            )
        if not 0 <= self.pool_wait_seconds < float("inf"):
            raise ValueError(
                f"pool_wait_seconds must be finite and >= 0, got {self.pool_wait_seconds}"
            )

    def should_wait(
        self, *, pages_needed: int, pages_held: int, pool_pages: int, waited: float
    ) -> bool:
        """Whether work that found too few free pages waits for some (True) or fails now.

        It fails at once when the pool could not hold it even with every other page free
        (`pages_needed` more than the pool minus the `pages_held` by its own sequence), and
        after waiting `pool_wait_seconds`.
        """
        if pages_needed > pool_pages - pages_held:
            return False
        return waited < self.pool_wait_seconds

    def eligible(self, queue: Iterable[W]) -> list[W]:
        """The oldest request of each sequence, in queue order."""
        first: dict[int, W] = {}
        for work in queue:
            first.setdefault(work.seq_id, work)
        return list(first.values())

    def budget(self, num_eligible: int) -> int:
        """Tokens the next batch may hold."""
        return self.max_batch_tokens if num_eligible > 1 else self.max_solo_tokens

    def form_batch(self, queue: Iterable[W], reserve: Callable[[W, int], bool]) -> list[Chunk[W]]:
        """The next batch: shortest work first, each cut to what is left of the budget.

        `reserve(work, n)` takes KV slots for n tokens of `work`; when it returns False the
        work is skipped and the budget stays for the others.
        """
        eligible = self.eligible(queue)
        budget, row = self.budget(len(eligible)), 0
        chunks: list[Chunk[W]] = []
        for work in sorted(eligible, key=lambda w: w.remaining):
            n = min(work.remaining, budget)
            if n <= 0:
                break
            if reserve(work, n):
                chunks.append(Chunk(work, work.done, n, row))
                row, budget = row + n, budget - n
        return chunks
