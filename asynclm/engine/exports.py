"""Named K/V that outlive their contexts: the engine's exports registry.

An export is a page table plus the tokens and positions whose K/V its pages hold. Saving one
shares the pages (nothing is copied, except the part of a page a saved token range starts
inside of); opening one is a page-table concatenation. Exports live in namespaces: a scope sees
the exports of its own namespace and the root exports shared with it; an inferlet's exports are
dropped when it ends. The pages of an export count against the quota of the scope that saved it
until it is dropped.
Contexts (`ctx.save`, `Context.open`, `ctx.attach`) and Prompt Cache's module store both keep
their K/V here.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asynclm.engine.pages import PagePool, PageTable
from asynclm.engine.scope import ExportKey, Scope
from asynclm.engine.sequence import Sequence

if TYPE_CHECKING:
    from torch import Tensor

    from asynclm.engine.kv_cache import KVCache


@dataclass(frozen=True, slots=True)
class Export:
    """Named K/V kept alive by the engine: its pages, tokens and positions."""

    table: PageTable
    tokens: tuple[int, ...]
    positions: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def num_pages(self) -> int:
        return self.table.num_pages


class Exports:
    """The engine's exports, by name within scopes.

    Every method takes an optional `scope` (default: the engine's root scope); names are seen
    from it: its own exports and the ones shared with it.
    """

    def __init__(self, pool: PagePool, kv: KVCache, root: Scope) -> None:
        self.pool = pool
        self.kv = kv
        self.root = root
        self._exports: dict[ExportKey, Export] = {}
        self._savers: dict[ExportKey, Scope] = {}  # whose quota an export's pages count against

    def save(
        self,
        name: str,
        seq: Sequence,
        *,
        start: int = 0,
        scope: Scope | None = None,
        overwrite: bool = False,
    ) -> Export:
        """Export the K/V of `seq`'s tokens [start:] under `name` (pages shared).

        Raises:
            ValueError: An export of that name exists and `overwrite` is False, or `start` is
                not a token index of `seq`.
            PoolExhaustedError: The range starts inside a page and no page is free for it.
            QuotaExceededError: That page would pass the scope's page quota.
        """
        scope = scope or self.root
        key = self._free_key(name, scope, overwrite)
        if not 0 <= start <= seq.num_tokens:
            raise ValueError(f"start must lie in [0, {seq.num_tokens}], got {start}")
        scope.check(seq.table.fresh_pages_to_share(start, seq.num_tokens), 0)
        table, copies = seq.table.share_range(self.pool, start, seq.num_tokens)
        self.kv.copy_slots(copies)
        export = Export(table, tuple(seq.tokens[start:]), tuple(seq.positions[start:]))
        return self._put(key, export, scope)

    def open(self, name: str, scope: Scope | None = None) -> Export:
        """The export `name` as seen from `scope`; KeyError if none is visible there."""
        export = self._exports.get((scope or self.root).resolve(name)) if name else None
        if export is None:
            raise KeyError(f"no export named {name!r} is visible here")
        return export

    def has(self, name: str, scope: Scope | None = None) -> bool:
        """Whether an export `name` is visible from `scope`."""
        return bool(name) and (scope or self.root).resolve(name) in self._exports

    def names(self, scope: Scope | None = None) -> list[str]:
        """Exports visible from `scope`: its own and the shared ones, sorted."""
        scope = scope or self.root
        own = {name for key in self._exports if (name := scope.own_name(key)) is not None}
        shared = {name for name in scope.shared if self.root.export_key(name) in self._exports}
        return sorted(own | shared)

    def drop(self, name: str, scope: Scope | None = None) -> None:
        """Forget a scope's own export; its pages are freed once no context uses them."""
        key = (scope or self.root).export_key(name)
        if key not in self._exports:
            raise KeyError(f"no export named {name!r}")
        self._remove(key)

    def drop_scope(self, scope: Scope) -> None:
        """Drop every export of a child scope's namespace (not the ones shared with it)."""
        if not scope.is_root:
            for key in [k for k in self._exports if scope.own_name(k) is not None]:
                self._remove(key)

    def export_kv(
        self, name: str, scope: Scope | None = None, *, start: int = 0, end: int | None = None
    ) -> tuple[list[int], list[int], Tensor]:
        """Tokens, positions and K/V `[layers, 2, n, kv_heads, head_dim]` of the export's
        tokens [start:end] (a CPU copy of that range only)."""
        export = self.open(name, scope)
        span = slice(*slice(start, end).indices(export.num_tokens)[:2])
        tokens, positions = list(export.tokens[span]), list(export.positions[span])
        return tokens, positions, self.kv.read_slots(export.table.slots[span])

    def import_kv(
        self,
        name: str,
        tokens: Seq[int],
        positions: Seq[int],
        kv: Tensor,
        *,
        scope: Scope | None = None,
        overwrite: bool = False,
    ) -> Export:
        """Create an export from saved K/V (as `export_kv` returns it).

        Raises:
            ValueError: The K/V's shape does not fit this model and the tokens, or the name is
                taken and `overwrite` is False.
            PoolExhaustedError: The pool has too few free pages.
            QuotaExceededError: Its pages would pass the scope's page quota.
        """
        expected = self.kv.values_shape(len(tokens))
        if tuple(kv.shape) != expected or len(positions) != len(tokens):
            raise ValueError(f"K/V of shape {tuple(kv.shape)} does not fit this model: {expected}")
        scope = scope or self.root
        self._free_key(name, scope, overwrite)
        scope.check(-(-len(tokens) // self.pool.page_size), 0)
        seq = Sequence(PageTable(self.pool.page_size), scope)
        try:
            self.kv.write_slots(seq.table.plan_append(self.pool, len(tokens)).slots, kv)
            seq.commit(list(tokens), list(positions))
            return self.save(name, seq, scope=scope, overwrite=overwrite)
        finally:
            seq.release(self.pool)

    def _free_key(self, name: str, scope: Scope, overwrite: bool) -> ExportKey:
        key = scope.export_key(name)
        if key in self._exports and not overwrite:
            raise ValueError(f"an export named {name!r} exists (pass overwrite=True to replace it)")
        return key

    def _put(self, key: ExportKey, export: Export, scope: Scope) -> Export:
        if key in self._exports:
            self._remove(key)
        self._exports[key] = export
        self._savers[key] = scope
        scope.hold_export(key, export.table.pages)
        return export

    def _remove(self, key: ExportKey) -> None:
        self._exports.pop(key).table.release(self.pool)
        saver = self._savers.pop(key, None)
        if saver is not None:
            saver.release_export(key)

    def __len__(self) -> int:
        return len(self._exports)
