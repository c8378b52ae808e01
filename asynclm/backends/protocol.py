"""The backend context protocol: what the agent runtime needs of a live context.

A run drives one context: it generates into it step by step, appends interrupts between
steps, and may cut its last token. That is all the runtime asks of where generation happens,
so the local engine (`asynclm.backends.local`) and a remote OpenAI-compatible server implement
the same small protocol:

- `tokenizer`: `encode(text, special=False) -> list[int]` (special tokens only in text the
  runtime writes) and `decode(ids) -> str` of the model's tokenizer;
- `num_tokens`: tokens in the context (computed and pending); `num_cached`: of them, tokens
  whose K/V were reused rather than computed for this context (0 where nothing is reused);
- `append(text | token ids)`: queue tokens; the next generation step prefills them;
- `generate(sampler, max_tokens=, constrain=, ban=)`: an async iterator of steps (`text`,
  `finish_reason`), which `stop()` ends before its next step and whose `finish_reason` says
  why it ended ("eos", "stop", "length", "grammar", "cancelled");
- `truncate(n)`: keep the first n tokens; `release()`: free the context (idempotent).

A context that knows the model's window ends a generation that would overflow it with
`finish_reason="length"`, and refuses an `append` that does not fit with `ContextWindowError`
(the run then ends with "length"); a backend that cannot tell need do neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from asynclm.engine.sampling import Sampler

__all__ = [
    "BackendContext",
    "BackendGeneration",
    "BackendStep",
    "BackendTokenizer",
    "ContextWindowError",
]


class ContextWindowError(ValueError):
    """Tokens appended to a context do not fit the model's window."""


class BackendTokenizer(Protocol):
    """The model's tokenizer, as far as the runtime uses it."""

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of `text` (no BOS added); special tokens' text becomes those tokens only
        when `special` (text the runtime writes), never in other text."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids."""
        ...


class BackendStep(Protocol):
    """One generated token: the text it completes and whether generation ends with it."""

    @property
    def text(self) -> str: ...

    @property
    def finish_reason(self) -> str | None: ...


class BackendGeneration(Protocol):
    """A running generation: iterate it for steps."""

    @property
    def finish_reason(self) -> str | None:
        """Why the generation ended; None while it runs."""
        ...

    def stop(self) -> None:
        """End the generation before its next step."""
        ...

    def __aiter__(self) -> AsyncIterator[BackendStep]: ...


class BackendContext(Protocol):
    """A live context the agent runtime generates into and injects interrupts into."""

    @property
    def tokenizer(self) -> BackendTokenizer: ...

    @property
    def num_tokens(self) -> int: ...

    @property
    def num_cached(self) -> int: ...

    def append(self, content: str | Sequence[int], *, special: bool = False) -> None:
        """Queue text or token ids; the next generation step prefills them. Text is plain text
        unless `special` (only for text the runtime writes).

        Raises:
            ContextWindowError: They do not fit the model's window (where it is known).
        """
        ...

    def generate(
        self,
        sampler: Sampler,
        *,
        max_tokens: int,
        constrain: Any = None,
        ban: Sequence[int] | None = None,
    ) -> BackendGeneration:
        """Start generating at most `max_tokens` tokens.

        Args:
            sampler: How to pick tokens.
            max_tokens: The most tokens to generate.
            constrain: A decoding constraint of a kind the backend applies (the local engine:
                an `asynclm.engine.grammar.Constraint`, a logit mask per step); a backend
                refuses a kind it cannot apply with a ValueError.
            ban: Token ids that may never be generated.
        """
        ...

    def truncate(self, n: int) -> None:
        """Keep the first n tokens."""
        ...

    def release(self) -> None:
        """Free the context; it cannot be used afterwards. Idempotent."""
        ...
