"""Scopes: who owns which contexts and exports, with quotas (pages, tokens, wall time).

The engine has one root scope; each inferlet runs in a child scope that sees only its own
contexts, its own exports and the exports shared with it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from asynclm.engine.pages import PagePool


class QuotaExceededError(RuntimeError):
    """A scope used more pages or tokens than its quota allows."""


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits of a scope; None means unlimited."""

    max_pages: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None


class Member(Protocol):
    """What a scope needs of the sequences it accounts for."""

    @property
    def num_pages(self) -> int: ...

    def release(self, pool: PagePool) -> None: ...


class Scope:
    """A namespace for exports plus resource accounting for the sequences created in it."""

    def __init__(
        self, name: str = "", quota: Quota | None = None, shared: frozenset[str] = frozenset()
    ):
        self.name = name
        self.quota = quota or Quota()
        self.shared = shared
        self.tokens_used = 0
        self._members: weakref.WeakSet[Member] = weakref.WeakSet()

    def export_key(self, name: str) -> str:
        """The engine-wide key of this scope's export `name`."""
        if not name or "\x00" in name:
            raise ValueError(f"invalid export name {name!r}")
        return f"{self.name}\x00{name}" if self.name else name

    def own_name(self, key: str) -> str | None:
        """The name of an engine-wide key if it is one of this scope's own exports, else None."""
        if not self.name:
            return None if "\x00" in key else key
        scope, sep, name = key.partition("\x00")
        return name if sep and scope == self.name else None

    def resolve(self, name: str) -> str:
        """Engine-wide key of `name` as seen from this scope: a shared export or its own."""
        return name if name in self.shared else self.export_key(name)

    def adopt(self, member: Member) -> None:
        """Account for a sequence created in this scope (held weakly)."""
        self._members.add(member)

    @property
    def pages_in_use(self) -> int:
        return sum(member.num_pages for member in self._members)

    def check(self, new_pages: int, new_tokens: int) -> None:
        """Raise `QuotaExceededError` if taking these resources would pass the quota."""
        q = self.quota
        if q.max_pages is not None and self.pages_in_use + new_pages > q.max_pages:
            raise QuotaExceededError(
                f"scope {self.name!r}: page quota of {q.max_pages} exceeded "
                f"({self.pages_in_use} in use, {new_pages} more requested)"
            )
        if q.max_tokens is not None and self.tokens_used + new_tokens > q.max_tokens:
            raise QuotaExceededError(
                f"scope {self.name!r}: token quota of {q.max_tokens} exceeded "
                f"({self.tokens_used} used, {new_tokens} more requested)"
            )

    def release_all(self, pool: PagePool) -> None:
        """Free every sequence created in this scope (when its owner ends)."""
        for member in list(self._members):
            member.release(pool)

    def charge(self, tokens: int) -> None:
        self.tokens_used += tokens
