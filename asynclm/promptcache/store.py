"""The module KV store of Prompt Cache: engine exports under a memory budget, kept on disk.

An entry is one module's K/V, held by the engine as a named export (`"<namespace>:<key>"`), so
serving it is a page-table concatenation. Under the "prefix" encoding an entry extends its
parent (the module before it in the prompt): it was computed attending to the parent's chain,
and its export holds its own tokens only (saved as a token range of the computing context, pages
shared), so a prompt attaches the chain's entries in order. Each entry counts its own pages
against the budget. Entries are evicted least recently used first, but never while a live
context pinned them and never before their children (who need them).

With a `disk_dir`, every new entry is also written to a safetensors file (see `files`); a
corrupt or mismatched file is skipped with a `ModuleStoreWarning`.
"""

from __future__ import annotations

import itertools
import os
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from asynclm.promptcache.files import FORMAT_VERSION, ModuleFiles

if TYPE_CHECKING:
    from asynclm.engine.context import Context
    from asynclm.engine.engine import Engine
    from asynclm.engine.exports import Exports

__all__ = ["FORMAT_VERSION", "ModuleStore", "ModuleStoreWarning", "StoreEntry", "StoreStats"]

# Namespaces in use per engine, so two stores on one engine never share export names.
_NAMESPACES: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()


class ModuleStoreWarning(UserWarning):
    """A module KV file was skipped (corrupt, another model, another format) or not written."""


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """One cached module.

    Attributes:
        key: The module key ("modular": content key; "prefix": prefix key).
        name: The engine export holding its own tokens' K/V.
        parent: Key of the entry it extends ("prefix" encoding), or None.
        num_tokens: The module's own tokens.
        nbytes: KV memory charged to the entry: its own pages.
    """

    key: str
    name: str
    parent: str | None
    num_tokens: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of the store's state and counters."""

    entries: int
    nbytes: int
    memory_bytes: int
    evictions: int
    disk_loads: int
    disk_writes: int
    disk_errors: int


class ModuleStore:
    """Module K/V as engine exports: LRU under a memory budget, persisted to disk.

    Args:
        engine: The engine whose exports hold the entries.
        memory_bytes: KV memory the entries may hold (default: half the engine's pool).
        disk_dir: Folder of the safetensors files, created if missing (None: memory only).
        namespace: Prefix of the export names (default "pc", or "pc-2", ... when another store
            already uses it on this engine).

    Raises:
        ValueError: `memory_bytes` is negative, or `namespace` is taken on this engine.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        memory_bytes: int | None = None,
        disk_dir: str | os.PathLike[str] | None = None,
        namespace: str | None = None,
    ) -> None:
        self.engine = engine
        self.exports = engine.exports
        self.memory_bytes = engine.kv.nbytes // 2 if memory_bytes is None else memory_bytes
        if self.memory_bytes < 0:
            raise ValueError(f"memory_bytes must be >= 0, got {memory_bytes}")
        self.namespace = _claim_namespace(engine, namespace)
        self.disk_dir = None if disk_dir is None else Path(disk_dir)
        self.files: ModuleFiles | None = None
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            self.files = ModuleFiles(self.disk_dir, engine.fingerprint, str(engine.kv.dtype))
        self._entries: OrderedDict[str, StoreEntry] = OrderedDict()  # oldest use first
        weakref.finalize(self, _close, engine, self.namespace, self._entries)
        self._children: dict[str, set[str]] = {}
        self._pins: dict[int, tuple[weakref.ref[object], set[str]]] = {}
        self._nbytes = 0
        self._evictions = self._disk_loads = self._disk_writes = self._disk_errors = 0

    # ---- lookup ------------------------------------------------------------------------------
    def name(self, key: str) -> str:
        """The engine export name of `key`."""
        return f"{self.namespace}:{key}"

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """KV memory the entries hold."""
        return self._nbytes

    @property
    def entries(self) -> list[StoreEntry]:
        """Every entry, least recently used first."""
        return list(self._entries.values())

    @property
    def stats(self) -> StoreStats:
        return StoreStats(
            len(self._entries),
            self._nbytes,
            self.memory_bytes,
            self._evictions,
            self._disk_loads,
            self._disk_writes,
            self._disk_errors,
        )

    def get(self, key: str, owner: object | None = None) -> StoreEntry | None:
        """The entry of `key` in memory (marked as just used, pinned by `owner`), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            if owner is not None:
                self.pin([key], owner)
        return entry

    # ---- pins --------------------------------------------------------------------------------
    def pin(self, keys: Iterable[str], owner: object) -> None:
        """Keep `keys` from eviction while `owner` lives and is not released.

        `owner` is usually the context the entries were attached to: once it is released (or
        garbage-collected) the pins lapse by themselves.
        """
        ref, pinned = self._pins.get(id(owner), (None, None))
        if ref is None or pinned is None or ref() is not owner:
            ref, pinned = weakref.ref(owner), set()
            self._pins[id(owner)] = (ref, pinned)
        pinned.update(keys)

    def pinned(self) -> set[str]:
        """Keys pinned by live owners (lapsed pins are forgotten)."""
        keys: set[str] = set()
        for owner_id, (ref, pinned) in list(self._pins.items()):
            owner = ref()
            if owner is None or getattr(owner, "is_released", False):
                del self._pins[owner_id]
            else:
                keys |= pinned
        return keys

    # ---- adding, evicting --------------------------------------------------------------------
    async def put(
        self,
        key: str,
        ctx: Context,
        *,
        num_tokens: int,
        parent: str | None = None,
        owner: object | None = None,
    ) -> StoreEntry:
        """Keep the K/V of `ctx`'s last `num_tokens` tokens as the entry `key` (and write them
        to disk); pages are shared with `ctx`.

        Args:
            key: The module key.
            ctx: A fully computed context: the parent's chain (if any), then the module.
            num_tokens: The module's own tokens: the last `num_tokens` of `ctx`.
            parent: The entry `ctx` starts with ("prefix" encoding).
            owner: Pins the entry (see `pin`).

        Returns:
            The entry; an existing one if `key` was stored meanwhile.
        """
        entry = self._entries.get(key)
        if entry is None:
            ctx.save(self.name(key), start=ctx.num_cached - num_tokens, overwrite=True)
            entry = self._add(key, parent, num_tokens)
            await self._write(entry)
        if owner is not None:
            self.pin([key], owner)
        self.trim()
        return entry

    def _add(self, key: str, parent: str | None, num_tokens: int) -> StoreEntry:
        name = self.name(key)
        nbytes = self.exports.open(name).num_pages * self.engine.kv.page_bytes
        entry = StoreEntry(key, name, parent, num_tokens, nbytes)
        self._entries[key] = entry
        self._nbytes += entry.nbytes
        if parent is not None:
            self._children.setdefault(parent, set()).add(key)
        return entry

    def trim(self) -> int:
        """Evict least recently used entries until the budget holds; returns how many.

        Pinned entries and entries with children stay: the store may stay over budget until
        their contexts are released.
        """
        pinned = self.pinned()
        evicted = 0
        while self._nbytes > self.memory_bytes:
            victim = next(
                (k for k in self._entries if k not in pinned and not self._children.get(k)), None
            )
            if victim is None:
                break
            self._evict(victim)
            evicted += 1
        return evicted

    def _evict(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._nbytes -= entry.nbytes
        self._evictions += 1
        self._children.pop(key, None)
        if entry.parent is not None:
            self._children.get(entry.parent, set()).discard(key)
        _drop(self.exports, entry)

    def clear(self) -> None:
        """Drop every entry from memory (contexts using them keep their pages); disk stays."""
        for entry in self._entries.values():
            _drop(self.exports, entry)
        self._entries.clear()
        self._children.clear()
        self._pins.clear()
        self._nbytes = 0

    # ---- disk --------------------------------------------------------------------------------
    def path(self, key: str) -> Path | None:
        """The file of `key` for this engine's model (None without a `disk_dir`)."""
        return None if self.files is None else self.files.path(key)

    async def load(
        self,
        key: str,
        tokens: Sequence[int],
        positions: Sequence[int],
        *,
        parent: str | None = None,
        owner: object | None = None,
    ) -> StoreEntry | None:
        """Bring the entry `key` from disk into memory, or None if no valid file has it.

        Args:
            key: The module key.
            tokens: The module's own tokens, checked against the file.
            positions: Their positions, checked against the file.
            parent: The entry it extends; it must be in memory ("prefix" chains load in order).
            owner: Pins the entry (see `pin`).
        """
        files = self.files
        if files is None or (parent is not None and parent not in self._entries):
            return None
        path = files.path(key)
        if not await anyio.to_thread.run_sync(path.exists):
            return None
        shape = self.engine.kv.values_shape(len(tokens))
        try:
            kv = await anyio.to_thread.run_sync(files.read, key, parent, tokens, positions, shape)
        except Exception as exc:  # any unreadable file is a miss, never a crash
            self._disk_errors += 1
            warnings.warn(
                f"ignoring module KV file {path}: {exc}", ModuleStoreWarning, stacklevel=2
            )
            return None
        entry = self._entries.get(key)
        if entry is None:  # not loaded by someone else while the file was read
            self.exports.import_kv(self.name(key), tokens, positions, kv, overwrite=True)
            entry = self._add(key, parent, len(tokens))
            self._disk_loads += 1
        if owner is not None:
            self.pin([key], owner)
        self.trim()
        return entry

    async def _write(self, entry: StoreEntry) -> None:
        if self.files is None:
            return
        tokens, positions, kv = self.exports.export_kv(entry.name)
        try:
            await anyio.to_thread.run_sync(
                self.files.write, entry.key, entry.parent, tokens, positions, kv
            )
        except OSError as exc:  # a full disk costs the warm start, not the request
            self._disk_errors += 1
            path = self.files.path(entry.key)
            warnings.warn(f"could not write {path}: {exc}", ModuleStoreWarning, stacklevel=2)
            return
        self._disk_writes += 1

    def __repr__(self) -> str:
        return (
            f"ModuleStore({len(self)} entries, {self._nbytes}/{self.memory_bytes} bytes, "
            f"disk={str(self.disk_dir) if self.disk_dir else None})"
        )


def _claim_namespace(engine: Engine, namespace: str | None) -> str:
    used = _NAMESPACES.setdefault(engine, set())
    if namespace is None:
        names = itertools.chain(["pc"], (f"pc-{i}" for i in itertools.count(2)))
        namespace = next(n for n in names if n not in used)
    elif namespace in used:
        raise ValueError(f"namespace {namespace!r} is used by another store on this engine")
    used.add(namespace)
    return namespace


def _close(engine: Engine, namespace: str, entries: dict[str, StoreEntry]) -> None:
    """A store was garbage-collected: free its exports and its namespace."""
    for entry in entries.values():
        _drop(engine.exports, entry)
    entries.clear()
    _NAMESPACES.get(engine, set()).discard(namespace)


def _drop(exports: Exports, entry: StoreEntry) -> None:
    if exports.has(entry.name):
        exports.drop(entry.name)
