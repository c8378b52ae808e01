"""A context's KV state as the engine sees it: tokens, positions, page table, owner scope.

No torch here: a sequence is bookkeeping over the page allocator. The runner turns its slots
into tensors.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from asynclm.engine.pages import AppendPlan, PagePool, PageTable
from asynclm.engine.scope import Scope

_ids = itertools.count(1)


@dataclass(eq=False)
class Sequence:
    """Tokens whose K/V are in the pool (`tokens`, `positions`) and where they are (`table`).

    Attributes:
        epoch: Grows whenever slots already handed out change (truncate, copy-on-write,
            release), so caches of the slots know to rebuild; appends keep it.
        is_released: Whether `release` gave its pages back (final).

    Raises:
        QuotaExceededError: Its scope has as many open contexts as its quota allows.
    """

    table: PageTable
    scope: Scope
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    id: int = field(default_factory=lambda: next(_ids))
    max_position: int = -1
    epoch: int = 0
    is_released: bool = False

    def __post_init__(self) -> None:
        self.scope.adopt(self)
        if self.positions:
            self.max_position = max(self.positions)

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def num_pages(self) -> int:
        return self.table.num_pages

    @property
    def pages(self) -> list[int]:
        """The pool pages its K/V lie in (shared ones included)."""
        return self.table.pages

    @property
    def next_position(self) -> int:
        """Where the next token goes by default: after the largest position so far."""
        return self.max_position + 1

    def reserve(self, pool: PagePool, n: int) -> AppendPlan:
        """Take KV slots for n more tokens, charged to the scope; all or nothing.

        Raises:
            PoolExhaustedError: Too few free pages.
            QuotaExceededError: The scope's page or token quota would be passed.
        """
        self.scope.check(self.table.pages_needed(pool, n), n)
        plan = self.table.plan_append(pool, n)
        self.scope.charge(n)
        if plan.copies:
            self.epoch += 1
        return plan

    def commit(self, tokens: list[int], positions: list[int]) -> None:
        """Record tokens whose K/V were written at the reserved (or attached) slots."""
        self.tokens.extend(tokens)
        self.positions.extend(positions)
        if positions:
            self.max_position = max(self.max_position, max(positions))

    def extend(
        self, pool: PagePool, table: PageTable, tokens: Iterable[int], positions: Iterable[int]
    ) -> None:
        """Append another table's computed tokens (pages shared): KV concatenation."""
        self.table.extend(pool, table)
        self.commit(list(tokens), list(positions))

    def fork(self, pool: PagePool) -> Sequence:
        """A new sequence over the same pages (shared, copy-on-write) and tokens.

        Raises:
            QuotaExceededError: The scope's context quota would be passed (nothing shared).
        """
        self.scope.check_new_context()
        return Sequence(self.table.share(pool), self.scope, list(self.tokens), list(self.positions))

    def truncate(self, pool: PagePool, n: int) -> None:
        """Keep the first n tokens; pages left empty go back to the pool."""
        self.table.truncate(pool, n)
        del self.tokens[n:], self.positions[n:]
        self.max_position = max(self.positions, default=-1)
        self.epoch += 1

    def release(self, pool: PagePool) -> None:
        """Give every page back; the sequence is empty and released afterwards."""
        self.is_released = True
        self.table.release(pool)
        self.tokens.clear()
        self.positions.clear()
        self.max_position = -1
        self.epoch += 1
