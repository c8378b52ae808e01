"""`RemoteContext`: the part of the Context API an agent run uses, on a serving engine.

The context is the token list the server will be sent. Text is encoded with the model's own
tokenizer, so what the agent appends, what the model generated and what the next request
carries are the same tokens (token-id prompts), or decode to the same text (text prompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anyio.abc import TaskGroup

from asynclm.backends.remote.constraints import RemoteConstraint
from asynclm.backends.remote.generation import RemoteGeneration
from asynclm.backends.remote.links import ServerLink
from asynclm.engine.sampling import Sampler
from asynclm.engine.tokenizer import Tokenizer
from asynclm.engine.turns import ChatTurns


class ContextClosedError(RuntimeError):
    """The context was released."""


class RemoteContext(ChatTurns):
    """A token sequence generated on a remote server. Create with `backend.context()`."""

    def __init__(self, backend: ServerLink, task_group: TaskGroup) -> None:
        self.backend = backend
        self.tokenizer: Tokenizer = backend.tokenizer
        self._tg = task_group
        self._tokens: list[int] = []
        self._generation: RemoteGeneration | None = None
        self._released = False

    # ---- state -------------------------------------------------------------------------------
    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    @property
    def num_tokens(self) -> int:
        return len(self._tokens)

    @property
    def num_cached(self) -> int:
        """Tokens reused rather than computed for this context: none client-side (what the
        server's prefix cache reuses is in `backend.stats`)."""
        return 0

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self._tokens)

    @property
    def is_released(self) -> bool:
        return self._released

    # ---- filling -----------------------------------------------------------------------------
    def append(self, content: str | Sequence[int], *, special: bool = False) -> None:
        """Add text or token ids. During a generation this is an interrupt: the stream is
        resubmitted with these tokens before the next step. Text is plain text unless
        `special` (only for text the runtime writes: template pieces, CML markers)."""
        self._check_open()
        if isinstance(content, str):
            tokens = self.tokenizer.encode(content, special=special)
        else:
            tokens = list(content)
        bad = [t for t in tokens if not 0 <= t < self.tokenizer.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.tokenizer.vocab_size}): {bad[:5]}")
        self._tokens += tokens
        if self._generation is not None and tokens:
            self._generation.interrupted()

    async def flush(self) -> None:
        """Nothing to compute ahead: the server prefills at the next request."""
        self._check_open()

    # ---- generation --------------------------------------------------------------------------
    def generate(
        self,
        sampler: Sampler | None = None,
        *,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        constrain: Any = None,
        ban: Sequence[int] | None = None,
    ) -> RemoteGeneration:
        """Start generating; iterate the result with `async for step in ...`.

        Args:
            sampler: decoding (greedy by default); sent as the request's sampling fields.
            max_tokens: the most tokens to generate, across resubmissions.
            stop: strings that end the generation (checked here, on the streamed text).
            constrain: a `RemoteConstraint` (e.g. `Ban`), turned into request fields at each
                submission; a local-only constraint (logit mask, xgrammar matcher) is refused.
            ban: token ids that may never be sampled (sent as `logit_bias`).
        """
        self._check_open()
        if constrain is not None and not isinstance(constrain, RemoteConstraint):
            raise ValueError(
                f"a remote backend cannot apply the local decoding constraint {constrain!r}: "
                "a server takes constraints as request fields (RemoteConstraint, e.g. Ban); "
                "run grammar-constrained agents on the local engine"
            )
        if self._generation is not None:
            if self._generation.in_step:
                raise RuntimeError("this context already has a running generation")
            self._generation.stop()
        if not self._tokens:
            raise ValueError("cannot generate from an empty context: append a prompt first")
        params = self.backend.sampling_fields(sampler or Sampler(), ban or ())
        gen = RemoteGeneration(
            self, self._tg, params, max_tokens=max_tokens, stop=stop or (), constrain=constrain
        )
        self._generation = gen
        return gen

    def record_generated(self, tokens: Sequence[int]) -> None:
        """Tokens the model wrote (called by this context's generation as it consumes them)."""
        self._tokens += tokens

    def generation_ended(self, gen: RemoteGeneration) -> None:
        if self._generation is gen:
            self._generation = None

    # ---- lifetime ----------------------------------------------------------------------------
    def truncate(self, n: int) -> None:
        """Keep the first n tokens (the server's prefix cache keeps what it computed)."""
        self._check_open()
        if not 0 <= n <= len(self._tokens):
            raise ValueError(f"cannot truncate a context of {len(self._tokens)} tokens to {n}")
        if self._generation is not None:
            if self._generation.in_step:
                raise RuntimeError("cannot truncate during a generation step")
            self._generation.stop()
        del self._tokens[n:]

    def release(self) -> None:
        """End any generation (its connection closes); the context cannot be used afterwards."""
        if not self._released:
            self._released = True
            if self._generation is not None:
                self._generation.stop()

    def _check_open(self) -> None:
        if self._released:
            raise ContextClosedError("this context was released")

    def __repr__(self) -> str:
        return f"RemoteContext({self.backend.base_url}, tokens={len(self._tokens)})"
