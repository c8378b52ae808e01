"""The Context API: what an inferlet (and the agent runtime) sees of the inference core.

A context is a token sequence whose K/V live in the engine's paged pool. Text and tokens are
appended lazily (`append`, `system`, `user`, `assistant`) and computed at the next `flush()`,
`forward()` or generation step, batched with every other context's work.

Text is plain text: `append(text)` and the content of `system/user/assistant(text)` never
become special tokens, whatever they contain; only the chat template's own pieces (role
prefixes and suffixes) and text appended with `special=True` do.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence as Seq
from typing import Protocol, cast

from torch import Tensor

from asynclm.engine.config import ModelConfig
from asynclm.engine.exports import Exports
from asynclm.engine.generation import Generation, token_ids
from asynclm.engine.grammar import Constraint, Grammar
from asynclm.engine.pages import PagePool, PageTable
from asynclm.engine.request import ForwardRequest, LogitsWanted
from asynclm.engine.sampling import Sampler
from asynclm.engine.scheduler import Scheduler
from asynclm.engine.scope import Scope
from asynclm.engine.sequence import Sequence
from asynclm.engine.tokenizer import Tokenizer
from asynclm.engine.turns import ChatTurns

_seeds = itertools.count()


class ContextClosedError(RuntimeError):
    """The context was released."""


class ContextHost(Protocol):
    """What a context needs of its engine (an `Engine` is one)."""

    tokenizer: Tokenizer
    pool: PagePool
    scheduler: Scheduler
    exports: Exports
    root_scope: Scope

    @property
    def config(self) -> ModelConfig: ...


class Context(ChatTurns):
    """A live token sequence on an engine. Create with `engine.context()`.

    The context keeps its engine to itself: code handed a context (an inferlet, a tool) reaches
    its tokens and the exports its scope sees, not the engine.

    Args:
        engine: The engine whose KV pool holds the context.
        scope: The owner (default: the engine's root scope).
        sequence: The KV state to start from (used by `fork`); default a new empty one.
    """

    def __init__(
        self, engine: ContextHost, scope: Scope | None = None, *, sequence: Sequence | None = None
    ) -> None:
        self._host = engine
        self.scope = scope or engine.root_scope
        self._seq = sequence or Sequence(PageTable(engine.pool.page_size), self.scope)
        self._pending: list[int] = []
        self._pending_pos: list[int] = []
        self._generation: Generation | None = None
        self._released = False
        self._base_seed = next(_seeds)
        self._finalizer = weakref.finalize(self, self._seq.release, engine.pool)

    # ---- state -------------------------------------------------------------------------------
    @property
    def id(self) -> int:
        return self._seq.id

    @property
    def tokens(self) -> list[int]:
        """Every token of the context: computed ones, then pending ones."""
        return self._seq.tokens + self._pending

    @property
    def positions(self) -> list[int]:
        return self._seq.positions + self._pending_pos

    @property
    def num_tokens(self) -> int:
        return self._seq.num_tokens + len(self._pending)

    @property
    def num_cached(self) -> int:
        """Tokens whose K/V are already computed."""
        return self._seq.num_tokens

    @property
    def num_pages(self) -> int:
        return self._seq.num_pages

    @property
    def slots(self) -> list[int]:
        """Where the computed tokens' K/V lie in the engine's pool (one slot per token)."""
        return list(self._seq.table.slots[: self._seq.num_tokens])

    @property
    def next_position(self) -> int:
        """Position of the next appended token: one past the largest so far."""
        return max(self._seq.next_position, max(self._pending_pos, default=-1) + 1)

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.tokens)

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer."""
        return self._host.tokenizer

    @property
    def seed(self) -> int:
        return self._base_seed

    @property
    def is_released(self) -> bool:
        return self._released

    # ---- filling -----------------------------------------------------------------------------
    def append(
        self, content: str | Seq[int], positions: Seq[int] | None = None, *, special: bool = False
    ) -> None:
        """Queue text or token ids; computed at the next flush/forward/generation step.

        Positions default to consecutive ids after the largest position so far; explicit ones
        may leave gaps or repeat (Prompt Cache lays modules out at fixed positions).

        Args:
            content: Text (any string) or token ids.
            positions: One position per token (default: consecutive after the last).
            special: For text: whether special tokens' text in it (`<|im_end|>`) becomes those
                tokens. Only for text the chat template or the runtime writes; the default
                encodes everything else as plain text.
        """
        self._check_open()
        tokens = (
            self.tokenizer.encode(content, special=special)
            if isinstance(content, str)
            else token_ids(content, "append")
        )
        if positions is None:
            start = self.next_position
            positions = range(start, start + len(tokens))
        else:
            positions = token_ids(positions, "positions")
            if len(positions) != len(tokens):
                raise ValueError(f"{len(tokens)} tokens but {len(positions)} positions")
        self._check_tokens(tokens, positions)
        self._pending += tokens
        self._pending_pos += list(positions)

    async def flush(self) -> None:
        """Compute the K/V of everything pending."""
        await self._submit("none")

    async def forward(self, tokens: Seq[int], positions: Seq[int] | None = None) -> Tensor:
        """Append tokens and return their logits `[len(tokens), vocab]` (for custom decoding).

        Raises:
            ValueError: No tokens given (use `flush()` to compute pending tokens, or
                `next_logits()` for the next token's logits).
        """
        if isinstance(tokens, str) or not len(tokens):
            raise ValueError(
                "forward() needs a non-empty list of token ids; use flush() to compute what is "
                "pending or next_logits() for the next token's logits"
            )
        self.append(tokens, positions)
        logits = await self._submit("all")
        return cast(Tensor, logits)[-len(tokens) :]  # tokens were pending: logits came back

    async def next_logits(self) -> Tensor:
        """Compute everything pending; the logits `[1, vocab]` of the token after the last.

        With nothing pending the last token is computed again (its logits were not kept).
        """
        self._check_open()
        if not self._pending and self._seq.num_tokens:
            last, pos = self._seq.tokens[-1], self._seq.positions[-1]
            self._seq.truncate(self._host.pool, self._seq.num_tokens - 1)
            self._pending, self._pending_pos = [last], [pos]
        logits = await self._submit("last")
        if logits is None:
            raise ValueError("an empty context has no next-token logits: append a prompt first")
        return logits

    async def _submit(self, logits: LogitsWanted) -> Tensor | None:
        self._check_open()
        if not self._pending:
            return None
        tokens, positions = self._pending, self._pending_pos
        self._pending, self._pending_pos = [], []
        request = ForwardRequest(self._seq, tokens, positions, logits)
        try:
            return await self._host.scheduler.submit(request)
        finally:  # what was not computed (cancellation, errors) stays pending
            self._pending = tokens[request.done :] + self._pending
            self._pending_pos = positions[request.done :] + self._pending_pos

    # ---- generation --------------------------------------------------------------------------
    def generate(
        self,
        sampler: Sampler | None = None,
        *,
        max_tokens: int = 256,
        stop: Seq[str | int] | None = None,
        constrain: Constraint | Grammar | None = None,
        ban: Seq[int] | None = None,
        stop_at_eos: bool = True,
    ) -> Generation:
        """Start generating; iterate the result with `async for step in ...`.

        Args:
            sampler: how to pick tokens (default greedy).
            max_tokens: the most tokens to sample.
            stop: strings or token ids that end the generation (EOS ends it too unless
                `stop_at_eos=False`).
            constrain: a grammar (from `engine.grammar(...)`) or any `Constraint`.
            ban: token ids that may never be sampled (a logit mask).
        """
        self._check_open()
        if self._generation is not None:
            if self._generation.in_step:
                raise RuntimeError("this context already has a running generation")
            self._generation.stop()  # abandoned between steps (e.g. `break`): end it
            self._generation = None
        if self.num_tokens == 0:
            raise ValueError("cannot generate from an empty context: append a prompt first")
        self._generation = Generation(
            self,
            self.tokenizer,
            sampler or Sampler(),
            seed=self.seed,
            max_tokens=max_tokens,
            stop=stop,
            constrain=constrain,
            ban=ban,
            stop_at_eos=stop_at_eos,
            vocab_size=self._host.config.vocab_size,
        )
        return self._generation

    # ---- KV sharing --------------------------------------------------------------------------
    def fork(self) -> Context:
        """A new context with the same tokens; computed pages are shared, not copied."""
        self._check_open()
        child = Context(self._host, self.scope, sequence=self._seq.fork(self._host.pool))
        child.append(self._pending, self._pending_pos)
        return child

    def save(self, name: str, *, start: int = 0, overwrite: bool = False) -> None:
        """Export the computed K/V of tokens [start:] under `name`; it outlives this context.

        Pages are shared, not copied (but for the part of a page `start` falls inside of).
        """
        self._check_open()
        if self._pending:
            raise ValueError("save() needs every token computed: await flush() first")
        if not 0 <= start <= self.num_cached:
            raise ValueError(f"start must lie in [0, {self.num_cached}], got {start}")
        self._host.exports.save(name, self._seq, start=start, scope=self.scope, overwrite=overwrite)

    @classmethod
    def open(cls, engine: ContextHost, name: str, scope: Scope | None = None) -> Context:
        """A new context starting with an export's tokens (pages shared, nothing recomputed)."""
        ctx = cls(engine, scope)
        ctx.attach(name)
        return ctx

    def attach(self, *names: str) -> None:
        """Append exports' K/V after this context's tokens, in order: page-table concatenation.

        The exports' keys keep the positions they were computed at.
        """
        self._check_open()
        if self._pending:
            raise ValueError("attach() needs every token computed: await flush() first")
        exports = [self._host.exports.open(name, self.scope) for name in names]
        self.scope.check_new_pages(p for export in exports for p in export.table.pages)
        for export in exports:
            self._seq.extend(self._host.pool, export.table, export.tokens, export.positions)

    def truncate(self, n: int) -> None:
        """Keep the first n tokens."""
        self._check_open()
        if not 0 <= n <= self.num_tokens:
            raise ValueError(f"cannot truncate a context of {self.num_tokens} tokens to {n}")
        if self._generation is not None and self._generation.in_step:
            raise RuntimeError("cannot truncate during a generation step")
        cached = self._seq.num_tokens
        if n >= cached:
            del self._pending[n - cached :], self._pending_pos[n - cached :]
        else:
            self._seq.truncate(self._host.pool, n)
            self._pending, self._pending_pos = [], []

    def release(self) -> None:
        """Give the context's pages back; it cannot be used afterwards. Idempotent."""
        if not self._released:
            self._released = True
            self._finalizer()

    async def __aenter__(self) -> Context:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def _check_open(self) -> None:
        if self._released:
            raise ContextClosedError("this context was released")

    def _check_tokens(self, tokens: list[int], positions: Seq[int]) -> None:
        vocab = self._host.config.vocab_size
        bad = [t for t in tokens if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"token ids out of range [0, {vocab}): {bad[:5]}")
        limit = self._host.config.max_position
        if positions and (min(positions) < 0 or max(positions) >= limit):
            raise ValueError(f"positions must lie in [0, {limit}) (the model's window)")

    def __repr__(self) -> str:
        return f"Context(id={self.id}, tokens={self.num_tokens}, cached={self.num_cached})"
