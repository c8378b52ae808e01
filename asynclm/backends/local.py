"""The local engine as a backend: an engine `Context` seen through the backend protocol.

Interrupts go straight into the live KV: an appended token is prefilled with the next step,
and nothing already computed is recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """

    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def tokenizer(self) -> Tokenizer:
        return self.context.tokenizer

    @property
    def num_tokens(self) -> int:
        return self.context.num_tokens

    @property
    def num_cached(self) -> int:
        return self.context.num_cached

    def append(self, content: str | Sequence[int], *, special: bool = False) -> None:
        self.context.append(content, special=special)

    def generate(
        self,
        sampler: Sampler,
        *,
        max_tokens: int,
        constrain: Constraint | None = None,
        ban: Sequence[int] | None = None,
    ) -> Generation:
        return self.context.generate(sampler, max_tokens=max_tokens, constrain=constrain, ban=ban)

    def truncate(self, n: int) -> None:
        self.context.truncate(n)

    def release(self) -> None:
        self.context.release()

    def __repr__(self) -> str:
        return f"LocalContext({self.context!r})"
