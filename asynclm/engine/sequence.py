"""A context's KV state as the engine sees it: tokens, positions, page table, owner scope."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from asynclm.engine.pages import PagePool, PageTable

if TYPE_CHECKING:
    from asynclm.engine.scope import Scope

_ids = itertools.count(1)


@dataclass(eq=False)
class Sequence:
    """Tokens whose K/V are in the pool (`tokens`, `positions`) and where they are (`table`)."""

    table: PageTable
    scope: Scope
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    id: int = field(default_factory=lambda: next(_ids))
    max_position: int = -1
    _slot_cache: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def next_position(self) -> int:
        """Where the next token goes by default: after the largest position so far."""
        return self.max_position + 1

    def slot_tensor(self, device: torch.device) -> torch.Tensor:
        """All KV slots of the table as a tensor, rebuilt only when the table changed."""
        slots = self.table.slots
        cached = self._slot_cache
        if cached is None or cached.numel() > len(slots) or cached.device != device:
            cached = torch.tensor(slots, dtype=torch.long, device=device)
        elif cached.numel() < len(slots):
            extra = torch.tensor(slots[cached.numel() :], dtype=torch.long, device=device)
            cached = torch.cat((cached, extra))
        self._slot_cache = cached
        return cached

    def invalidate_slots(self) -> None:
        self._slot_cache = None

    def commit(self, tokens: list[int], positions: list[int]) -> None:
        self.tokens.extend(tokens)
        self.positions.extend(positions)
        if positions:
            self.max_position = max(self.max_position, max(positions))

    def truncate(self, pool: PagePool, n: int) -> None:
        self.table.truncate(pool, n)
        del self.tokens[n:], self.positions[n:]
        self.max_position = max(self.positions, default=-1)
        self._slot_cache = None

    def release(self, pool: PagePool) -> None:
        self.table.release(pool)
        self.tokens.clear()
        self.positions.clear()
        self.max_position = -1
        self._slot_cache = None
