"""Prompt Cache: serve PML prompts from precomputed module K/V (Gim et al., MLSys 2024).

A schema is registered once; each prompt then becomes a context whose modules are attached from
the `ModuleStore` in one call (a page-table concatenation: no copy, no recompute), computed and
stored only on a miss. Parameters and free text are appended at their schema positions and
computed with the first generation step.

Two encodings, chosen per schema:

- "prefix": module i is computed attending to the modules before it in the prompt, so a cached
  entry is keyed by the whole chain (`ModuleSegment.prefix_key`) and reuse is exact: the result
  equals a full prefill of the same tokens at the same positions. The longest cached chain is
  attached (its entries in order) and only the rest is computed.
- "modular": each module is computed alone at its positions and attached one after another: the
  Prompt Cache approximation. Any selection reuses every module, unions included.

Example::

    cache = PromptCache(engine, disk_dir="~/.cache/asynclm/prompts")
    cache.register(schema_xml)
    ctx = await cache.context('<prompt schema="travel"><doc-tokyo/><user>Hi</user></prompt>')
    ctx.assistant()
    reply = await ctx.generate(max_tokens=64).collect()
    ctx.release()
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from asynclm.promptcache.layout import SchemaLayout, layout_schema, plan_prompt
from asynclm.promptcache.plan import ParameterSegment, PromptPlan, TextSegment
from asynclm.promptcache.pml import parse_prompt, parse_schema
from asynclm.promptcache.schema import ModulePath, PMLError, Prompt, Schema, Select
from asynclm.promptcache.store import ModuleStore

if TYPE_CHECKING:
    from asynclm.engine.context import Context
    from asynclm.engine.engine import Engine

__all__ = ["CacheStats", "PromptCache"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of a `PromptCache` since it was made.

    Attributes:
        requests: Contexts built by `context`.
        hits: Module segments `context` served from the store (memory or disk).
        misses: Module segments computed (by `context` or `warm`).
        disk_loads: Of the hits, entries read from disk.
        reused_tokens: Tokens of the hits: prefill saved.
        computed_tokens: Tokens of the misses.
        appended_tokens: Parameter and free-text tokens left to the first generation step.
        evictions: Entries evicted from memory.
    """

    requests: int = 0
    hits: int = 0
    misses: int = 0
    disk_loads: int = 0
    reused_tokens: int = 0
    computed_tokens: int = 0
    appended_tokens: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over module segments looked up (0.0 before any)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True, slots=True)
class _Piece:
    """A non-empty module segment as the store sees it."""

    key: str
    parent: str | None
    tokens: tuple[int, ...]
    positions: tuple[int, ...]


class PromptCache:
    """Builds contexts for PML prompts from cached module K/V.

    Args:
        engine: The engine to run on.
        memory_bytes: KV memory the cached modules may hold (default: half the engine's pool).
        disk_dir: Where module K/V persist (safetensors), so another process starts warm; None
            keeps them in memory only.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        memory_bytes: int | None = None,
        disk_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.engine = engine
        if disk_dir is not None:
            disk_dir = os.path.expanduser(disk_dir)
        self.store = ModuleStore(engine, memory_bytes=memory_bytes, disk_dir=disk_dir)
        self._layouts: dict[str, SchemaLayout] = {}
        self._computing: dict[str, anyio.Event] = {}
        self._counts = dict.fromkeys(
            ("requests", "hits", "misses", "reused_tokens", "computed_tokens", "appended_tokens"), 0
        )

    # ---- schemas and plans -------------------------------------------------------------------
    def register(self, schema: str | bytes | Schema) -> SchemaLayout:
        """Lay out a schema (PML text or bytes, or a `Schema`) for this engine's tokenizer and
        window.

        Registering a schema under a name already used replaces the old one; modules whose
        text changed get new keys, so stale K/V is never served.

        Raises:
            PMLError: The PML is malformed, or the schema does not fit the model's window.
        """
        if not isinstance(schema, Schema):
            schema = parse_schema(schema)
        tokenizer = self.engine.tokenizer
        layout = layout_schema(
            schema, tokenizer.encode, tokenizer.chat, max_position=self.engine.config.max_position
        )
        self._layouts[schema.name] = layout
        return layout

    @property
    def schemas(self) -> list[str]:
        """Names of the registered schemas."""
        return sorted(self._layouts)

    def layout(self, schema_name: str) -> SchemaLayout:
        """The layout of a registered schema; PMLError if there is none."""
        layout = self._layouts.get(schema_name)
        if layout is None:
            known = ", ".join(sorted(self._layouts)) or "none"
            raise PMLError(f"unknown schema {schema_name!r} (known: {known})")
        return layout

    def plan(self, prompt: str | bytes | Prompt) -> PromptPlan:
        """The plan of a prompt (PML text or bytes, or a `Prompt`): what is reused, what is
        computed.

        Raises:
            PMLError: Malformed PML, an unknown schema, module or parameter, a value longer than
                its slot, two members of one union, or a position beyond the model's window.
        """
        if not isinstance(prompt, Prompt):
            prompt = parse_prompt(prompt)
        return plan_prompt(prompt, self._layouts)

    @property
    def stats(self) -> CacheStats:
        """The counters so far."""
        store = self.store.stats
        return CacheStats(**self._counts, disk_loads=store.disk_loads, evictions=store.evictions)

    # ---- serving -----------------------------------------------------------------------------
    async def context(self, prompt: str | bytes | Prompt) -> Context:
        """A new context for `prompt`, ready to generate.

        Cached modules are attached (missing ones computed and stored first); parameter values
        and free text are appended at their positions, pending: the first generation step (or
        `flush`/`forward`) computes them. Call `ctx.assistant()` to open the reply turn;
        generation continues after the largest position. Release the context when done.

        Raises:
            PMLError: As `plan`, before any K/V is touched.
            PoolExhaustedError: The engine's KV pool cannot hold the prompt; the context is
                released (modules computed before stay cached).
        """
        plan = self.plan(prompt)
        self.store.trim()  # contexts released since the last request may have unpinned entries
        ctx = self.engine.context()
        try:
            pieces = _pieces(plan)
            if plan.encoding == "prefix":
                await self._attach_chain(ctx, pieces)
            else:
                await self._attach_modules(ctx, pieces)
            self._append_uncached(ctx, plan)
        except BaseException:
            ctx.release()
            raise
        self._counts["requests"] += 1
        return ctx

    async def warm(self, schema_name: str) -> int:
        """Compute and store the modules of a schema ahead of requests.

        Under "modular" every module is warmed, each union member included. Under "prefix" a
        module's K/V depends on the selection before it, so the chain of each module selected
        alone (the schema's own text, its ancestors, the module) is warmed.

        Returns:
            The number of module segments computed (0 when all were cached).

        Raises:
            PMLError: The schema is not registered.
        """
        layout = self.layout(schema_name)
        before = dict(self._counts)
        if layout.encoding == "modular":
            modules = [m for m in layout.modules if m.tokens]
            pieces = [_Piece(m.key, None, m.tokens, m.positions) for m in modules]
            await self._ensure_modules(pieces, None)  # unpinned: the budget holds throughout
        else:
            paths = [m.path for m in layout.modules if m.path] or [()]
            for path in paths:
                plan = layout.plan(Prompt(layout.name, _select(path)))
                async with self.engine.context() as ctx:
                    await self._attach_chain(ctx, _pieces(plan))
        # Warming serves no request: its lookups are not hits.
        self._counts.update(hits=before["hits"], reused_tokens=before["reused_tokens"])
        return self._counts["misses"] - before["misses"]

    def clear(self) -> None:
        """Forget the cached K/V in memory (files on disk stay; live contexts keep theirs)."""
        self.store.clear()

    # ---- "prefix": the longest cached chain, then the rest -------------------------------------
    async def _attach_chain(self, ctx: Context, pieces: Sequence[_Piece]) -> None:
        found = await self._find_chain(pieces, ctx)
        if found < len(pieces):
            async with self._exclusive(pieces[found].key):
                found = await self._find_chain(pieces, ctx)  # another request may have done it
                ctx.attach(*self._names(pieces[:found]))
                for piece in pieces[found:]:
                    ctx.append(piece.tokens, piece.positions)
                    await ctx.flush()
                    await self.store.put(
                        piece.key, ctx, num_tokens=len(piece.tokens), parent=piece.parent, owner=ctx
                    )
                    self._count(piece, hit=False)
        else:
            ctx.attach(*self._names(pieces))
        for piece in pieces[:found]:
            self._count(piece, hit=True)

    async def _find_chain(self, pieces: Sequence[_Piece], owner: Context) -> int:
        """How many leading pieces are cached: in memory, then read from disk. Pins them."""
        found = next((i for i, p in enumerate(pieces) if p.key not in self.store), len(pieces))
        for piece in pieces[:found]:
            self.store.get(piece.key, owner)
        while found < len(pieces):
            piece = pieces[found]
            loaded = await self.store.load(
                piece.key, piece.tokens, piece.positions, parent=piece.parent, owner=owner
            )
            if loaded is None:
                break
            found += 1
        return found

    # ---- "modular": every module alone, then attached one after another ----------------------
    async def _attach_modules(self, ctx: Context, pieces: Sequence[_Piece]) -> None:
        await self._ensure_modules(pieces, ctx)
        ctx.attach(*self._names(pieces))

    async def _ensure_modules(self, pieces: Sequence[_Piece], owner: object | None) -> None:
        """Make every piece's entry present (pinned by `owner`); misses computed concurrently."""
        missing = []
        for piece in pieces:
            cached = self.store.get(piece.key, owner) or await self.store.load(
                piece.key, piece.tokens, piece.positions, owner=owner
            )
            if cached is None:
                missing.append(piece)
            else:
                self._count(piece, hit=True)
        errors: list[Exception] = []

        async def compute(piece: _Piece) -> None:
            try:
                await self._compute_module(piece, owner)
            except Exception as exc:  # raised below, unwrapped from the task group
                errors.append(exc)

        async with anyio.create_task_group() as group:  # one batch for all misses
            for piece in missing:
                group.start_soon(compute, piece)
        if errors:
            raise errors[0]

    async def _compute_module(self, piece: _Piece, owner: object | None) -> None:
        async with self._exclusive(piece.key):
            if self.store.get(piece.key, owner) is not None:  # computed by another request
                self._count(piece, hit=True)
                return
            async with self.engine.context() as alone:
                alone.append(piece.tokens, piece.positions)
                await alone.flush()
                await self.store.put(piece.key, alone, num_tokens=len(piece.tokens), owner=owner)
            self._count(piece, hit=False)

    # ---- helpers -----------------------------------------------------------------------------
    def _append_uncached(self, ctx: Context, plan: PromptPlan) -> None:
        """Parameters then free text, pending at their positions."""
        segments: list[ParameterSegment | TextSegment] = [*plan.parameters, *plan.text]
        tokens = [token for segment in segments for token in segment.tokens]
        ctx.append(tokens, [position for segment in segments for position in segment.positions])
        self._counts["appended_tokens"] += len(tokens)
        if not tokens and ctx.num_tokens:
            # Generation samples from the logits of a pending token: recompute the last one.
            token, position = ctx.tokens[-1], ctx.positions[-1]
            ctx.truncate(ctx.num_tokens - 1)
            ctx.append([token], [position])

    def _names(self, pieces: Sequence[_Piece]) -> list[str]:
        """The export names of the pieces' entries."""
        return [self.store.name(piece.key) for piece in pieces]

    @asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """One computation per key at a time; later arrivals wait and then find it cached."""
        while (busy := self._computing.get(key)) is not None:
            await busy.wait()
        done = self._computing[key] = anyio.Event()
        try:
            yield
        finally:
            del self._computing[key]
            done.set()

    def _count(self, piece: _Piece, *, hit: bool) -> None:
        self._counts["hits" if hit else "misses"] += 1
        self._counts["reused_tokens" if hit else "computed_tokens"] += len(piece.tokens)

    def __repr__(self) -> str:
        return f"PromptCache(schemas={self.schemas}, store={self.store!r})"


def _pieces(plan: PromptPlan) -> list[_Piece]:
    """The plan's non-empty module segments, keyed by its encoding, chained under "prefix"."""
    pieces: list[_Piece] = []
    for segment in plan.modules:
        if not segment.tokens:
            continue
        key = segment.key(plan.encoding)
        parent = pieces[-1].key if pieces and plan.encoding == "prefix" else None
        pieces.append(_Piece(key, parent, segment.tokens, segment.positions))
    return pieces


def _select(path: ModulePath) -> list[Select]:
    """The selection of the module at `path` (nested in its ancestors)."""
    selection: list[Select] = []
    for name in reversed(path):
        selection = [Select(name, children=selection)]
    return selection
