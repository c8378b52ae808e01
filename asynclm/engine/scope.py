"""Scopes: who owns which contexts and exports, with quotas (pages, tokens, contexts, time).

The engine has one root scope; each inferlet run gets a child scope with a namespace of its
own: it sees only its own exports and the ones shared with it. Two scopes share a namespace
only when one is explicitly given the other's (`Scope(..., namespace=other.namespace)`), never
because their names match.

Pages are counted as the pool would get them back if the scope ended: every distinct page its
live sequences and its own exports hold, each once. A fork adds no page until it writes (copy-
on-write), and an export keeps its pages counted after the context it came from is released.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from asynclm.engine.pages import PagePool

_namespace_ids = itertools.count(1)
ExportKey = tuple[int, str]  # (namespace id, export name)


class QuotaExceededError(RuntimeError):
    """A scope used more pages, tokens, contexts or time than its quota allows."""


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits of a scope; None means unlimited.

    Attributes:
        max_pages: Distinct KV pages its contexts and exports hold at once.
        max_tokens: Tokens the model processes for it, in all.
        max_seconds: Wall time of an inferlet run.
        max_contexts: Contexts (forks included) open at once.
    """

    max_pages: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None
    max_contexts: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_pages", "max_tokens", "max_contexts"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be an integer or None, got {value!r}")
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        seconds = self.max_seconds
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"max_seconds must be a positive number or None, got {seconds!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Namespace:
    """Where a scope's exports live: an identity, never looked up by name.

    Attributes:
        label: For messages only (two namespaces may carry the same label).
        id: Unique in the process; the root namespace is 0.
    """

    label: str = ""
    id: int = field(default_factory=lambda: next(_namespace_ids))


ROOT_NAMESPACE = Namespace("root", 0)


class Member(Protocol):
    """What a scope needs of the sequences it accounts for."""

    @property
    def pages(self) -> list[int]: ...

    @property
    def is_released(self) -> bool: ...

    def release(self, pool: PagePool) -> None: ...


class Scope:
    """A namespace for exports plus resource accounting for the sequences created in it.

    Args:
        name: Shown in messages (a child scope needs one); not what isolates it.
        quota: Its limits (default: none).
        shared: Root export names it may open (read-only).
        namespace: Where its exports live: the root's for the root scope (no name), a new one
            for a child unless given another scope's.
    """

    def __init__(
        self,
        name: str = "",
        quota: Quota | None = None,
        shared: frozenset[str] = frozenset(),
        *,
        namespace: Namespace | None = None,
    ):
        self.name = name
        self.quota = quota or Quota()
        self.shared = shared
        self.namespace = namespace or (Namespace(name) if name else ROOT_NAMESPACE)
        self.tokens_used = 0
        self._members: weakref.WeakSet[Member] = weakref.WeakSet()
        self._export_pages: dict[ExportKey, list[int]] = {}

    @property
    def is_root(self) -> bool:
        return self.namespace is ROOT_NAMESPACE

    # ---- export names ------------------------------------------------------------------------
    def export_key(self, name: str) -> ExportKey:
        """The engine-wide key of this scope's export `name`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid export name {name!r}: a non-empty string")
        return (self.namespace.id, name)

    def own_name(self, key: ExportKey) -> str | None:
        """The name of an engine-wide key if it is in this scope's namespace, else None."""
        return key[1] if key[0] == self.namespace.id else None

    def resolve(self, name: str) -> ExportKey:
        """Engine-wide key of `name` as seen from this scope: a shared export or its own."""
        if isinstance(name, str) and name in self.shared:
            return (ROOT_NAMESPACE.id, name)
        return self.export_key(name)

    # ---- accounting --------------------------------------------------------------------------
    def adopt(self, member: Member) -> None:
        """Account for a sequence created in this scope (held weakly)."""
        self.check_new_context()
        self._members.add(member)

    def hold_export(self, key: ExportKey, pages: Iterable[int]) -> None:
        """Count an export this scope saved (its pages stay held until it is dropped)."""
        self._export_pages[key] = list(pages)

    def release_export(self, key: ExportKey) -> None:
        """Stop counting a dropped export."""
        self._export_pages.pop(key, None)

    @property
    def num_contexts(self) -> int:
        """Sequences of this scope not yet released (forks included)."""
        return sum(1 for member in self._members if not member.is_released)

    def held_pages(self) -> set[int]:
        """Every distinct page its live sequences and its own exports hold."""
        held = {p for member in self._members if not member.is_released for p in member.pages}
        for pages in self._export_pages.values():
            held.update(pages)
        return held

    @property
    def pages_in_use(self) -> int:
        return len(self.held_pages())

    def check(self, new_pages: int, new_tokens: int) -> None:
        """Raise `QuotaExceededError` if taking these resources would pass the quota.

        Args:
            new_pages: Pages it would newly hold (fresh ones, or ones not held yet).
            new_tokens: Tokens the model would process for it.
        """
        q = self.quota
        if q.max_pages is not None and new_pages > 0:
            in_use = self.pages_in_use
            if in_use + new_pages > q.max_pages:
                raise QuotaExceededError(
                    f"scope {self.name!r}: page quota of {q.max_pages} exceeded "
                    f"({in_use} in use, {new_pages} more requested)"
                )
        if q.max_tokens is not None and self.tokens_used + new_tokens > q.max_tokens:
            raise QuotaExceededError(
                f"scope {self.name!r}: token quota of {q.max_tokens} exceeded "
                f"({self.tokens_used} used, {new_tokens} more requested)"
            )

    def check_new_pages(self, pages: Iterable[int]) -> None:
        """`check` for pages it would start to hold (those it holds already are free)."""
        if self.quota.max_pages is not None:
            self.check(len(set(pages) - self.held_pages()), 0)

    def check_new_context(self) -> None:
        """Raise `QuotaExceededError` if one more open context would pass the quota."""
        limit = self.quota.max_contexts
        if limit is not None and self.num_contexts + 1 > limit:
            raise QuotaExceededError(
                f"scope {self.name!r}: context quota of {limit} exceeded "
                f"({self.num_contexts} open, forks included)"
            )

    def release_all(self, pool: PagePool) -> None:
        """Free every sequence created in this scope (when its owner ends)."""
        for member in list(self._members):
            member.release(pool)

    def charge(self, tokens: int) -> None:
        self.tokens_used += tokens

    def __repr__(self) -> str:
        return f"Scope({self.name!r}, namespace={self.namespace.id})"
