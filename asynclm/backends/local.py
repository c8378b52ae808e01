"""The local engine as a backend: an engine `Context` seen through the backend protocol.

Interrupts go straight into the live KV: an appended token is prefilled with the next step,
and nothing already computed is recomputed. The model's window is kept: a generation stops
("length") where the window ends, and text that does not fit is refused
(`ContextWindowError`).
"""

from __future__ import annotations

from collections.abc import Sequence

from asynclm.backends.protocol import ContextWindowError
from asynclm.engine.context import Context
from asynclm.engine.generation import Generation
from asynclm.engine.grammar import Constraint
from asynclm.engine.sampling import Sampler
from asynclm.engine.tokenizer import Tokenizer

__all__ = ["LocalContext"]


class LocalContext:
    """A `BackendContext` over an engine context (which it owns: `release` frees it).

    Args:
        context: The engine context, its prompt already appended.
        window: The model's window (its engine's `config.max_position`).
    """

    def __init__(self, context: Context, window: int) -> None:
        self.context = context
        self.window = window

    @property
    def tokenizer(self) -> Tokenizer:
        return self.context.tokenizer

    @property
    def num_tokens(self) -> int:
        return self.context.num_tokens

    @property
    def num_cached(self) -> int:
        return self.context.num_cached

    @property
    def room(self) -> int:
        """Tokens that still fit the model's window."""
        return max(0, self.window - self.context.next_position)

    def append(self, content: str | Sequence[int], *, special: bool = False) -> None:
        tokens = (
            self.tokenizer.encode(content, special=special)
            if isinstance(content, str)
            else list(content)
        )
        if len(tokens) > self.room:
            raise ContextWindowError(
                f"{len(tokens)} tokens do not fit the model's window: {self.room} of "
                f"{self.window} positions left"
            )
        self.context.append(tokens)

    def generate(
        self,
        sampler: Sampler,
        *,
        max_tokens: int,
        constrain: Constraint | None = None,
        ban: Sequence[int] | None = None,
    ) -> Generation:
        max_tokens = min(max_tokens, self.room)  # at the window's end: "length"
        return self.context.generate(sampler, max_tokens=max_tokens, constrain=constrain, ban=ban)

    def truncate(self, n: int) -> None:
        self.context.truncate(n)

    def release(self) -> None:
        self.context.release()

    def __repr__(self) -> str:
        return f"LocalContext({self.context!r})"
