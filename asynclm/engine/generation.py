"""A running generation: an async iterator of steps over a live context.

A generation drives its context through a narrow interface, `TokenStream`: `next_logits()`
(compute what is pending, return the next token's logits) and `append(tokens)` (queue the
sampled token, or injected ones). `Context` implements it; the generation knows nothing else
of the context.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from asynclm.engine.grammar import Constraint, Grammar
from asynclm.engine.sampling import Sampler, ban_tokens, greedy_token
from asynclm.engine.tokenizer import Tokenizer

FinishReason = Literal["eos", "stop", "length", "grammar", "cancelled"]


class TokenStream(Protocol):
    """What a generation needs of its context."""

    async def next_logits(self) -> Tensor:
        """Compute every pending token; the logits `[1, vocab]` of the token after the last."""
        ...

    def append(self, content: str | Seq[int], *, special: bool = False) -> None:
        """Queue text (plain unless `special`) or token ids after the last token."""
        ...


@dataclass(frozen=True, slots=True)
class Step:
    """One sampled token: its id, the text it completes, and whether generation ends here."""

    token: int
    text: str
    index: int
    finish_reason: FinishReason | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True, slots=True)
class GenerationResult:
    text: str
    tokens: tuple[int, ...]
    finish_reason: FinishReason


class Generation:
    """Iterate with `async for step in ctx.generate(...)`.

    Each step prefills whatever is pending in the context (the last sampled token, plus any
    tokens injected with `accept`) in one forward and samples the next token, so an injected
    interrupt costs only the forward of its own tokens: nothing already processed is recomputed.
    """

    def __init__(
        self,
        ctx: TokenStream,
        tokenizer: Tokenizer,
        sampler: Sampler,
        *,
        seed: int,
        max_tokens: int,
        stop: Seq[str | int] | None,
        constrain: Constraint | Grammar | None,
        ban: Seq[int] | None,
        stop_at_eos: bool,
        vocab_size: int,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a Sampler, got {type(sampler).__name__}")
        self.ctx = ctx
        self.sampler = sampler
        self.max_tokens = max_tokens
        self._stop_strings, self._stop_ids = _stop_set(stop, vocab_size)
        if stop_at_eos:
            self._stop_ids |= set(tokenizer.eos_token_ids)
        self._constraint = constrain.matcher() if isinstance(constrain, Grammar) else constrain
        banned = ban_list(ban, vocab_size)
        self._ban = torch.tensor(banned, dtype=torch.long) if banned else None
        self._generator = _make_generator(sampler, seed)
        self._decoder = tokenizer.stream_decoder()
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason: FinishReason | None = None
        self._stop_requested = False
        self.in_step = False

    def accept(self, tokens: str | Seq[int], *, special: bool = False) -> None:
        """Inject tokens into the live context; they are prefilled with the next step.

        Text is encoded as plain text unless `special` (see `Context.append`).
        """
        self.ctx.append(tokens, special=special)

    def stop(self) -> None:
        """End the generation before its next step."""
        self._stop_requested = True
        if not self.in_step:
            self._end("cancelled")

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> Step:
        if self.finish_reason is not None:
            raise StopAsyncIteration
        if self._stop_requested or len(self.tokens) >= self.max_tokens:
            self._end("cancelled" if self._stop_requested else "length")
            raise StopAsyncIteration
        self.in_step = True
        try:
            logits = await self.ctx.next_logits()
        except BaseException:
            self._end("cancelled")
            raise
        finally:
            self.in_step = False
        token = self._sample(logits)
        self.ctx.append([token])
        self.tokens.append(token)
        delta = self._decoder.push(token)
        reason = self._finish_reason_after(token, delta)
        if reason == "eos":  # the end-of-turn token is in the context, not in the text
            delta = ""
        elif reason is not None:
            delta += self._decoder.flush() if reason != "stop" else ""
        self.text += delta
        if reason is not None:
            self._end(reason)
        return Step(token, delta, len(self.tokens) - 1, reason)

    def _sample(self, logits: torch.Tensor) -> int:
        if self._ban is None and self._constraint is None and self.sampler.is_greedy:
            return greedy_token(logits[-1])  # nothing to mask: no inference-mode scope
        return self._sample_masked(logits)

    @torch.inference_mode()
    def _sample_masked(self, logits: torch.Tensor) -> int:
        row = logits[-1]  # this step's own tensor: masking in place is safe
        ban_tokens(row, self._ban)
        if self._constraint is not None:
            self._constraint.mask(row)
        token = self.sampler.sample(row, self._generator)
        if self._constraint is not None:
            self._constraint.advance(token)
        return token

    def _finish_reason_after(self, token: int, delta: str) -> FinishReason | None:
        if token in self._stop_ids:
            return "eos"
        if self._stop_strings and delta:
            window = self.text[-max(map(len, self._stop_strings)) :] + delta
            if any(s in window for s in self._stop_strings):
                return "stop"
        if self._constraint is not None and self._constraint.is_finished():
            return "grammar"
        if len(self.tokens) >= self.max_tokens:
            return "length"
        return None

    def _end(self, reason: FinishReason) -> None:
        if self.finish_reason is None:
            self.finish_reason = reason

    def output_text(self) -> str:
        """The generated text, cut before the first stop string."""
        text = self.text
        cut = min((i for s in self._stop_strings if (i := text.find(s)) >= 0), default=-1)
        return text[:cut] if cut >= 0 else text

    async def collect(self) -> GenerationResult:
        async for _ in self:
            pass
        return GenerationResult(
            self.output_text(), tuple(self.tokens), self.finish_reason or "length"
        )

    async def collect_text(self) -> str:
        return (await self.collect()).text


def token_ids(values: Iterable[int], what: str, vocab_size: int | None = None) -> list[int]:
    """`values` as a list of ints (numpy and 0-d tensor integers too), checked.

    Raises:
        TypeError: An entry is not an integer (a bool, a float, a string).
        ValueError: An entry is outside [0, vocab_size).
    """
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{what}: expected token ids, got text {values!r}")
    out = []
    for value in values:
        try:
            if isinstance(value, (bool, str)):
                raise TypeError
            out.append(operator.index(value))
        except TypeError:
            raise TypeError(f"{what}: token ids must be integers, got {value!r}") from None
    if vocab_size is not None:
        bad = [t for t in out if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(
                f"{what}: token ids out of the vocabulary [0, {vocab_size}): {bad[:5]}"
            )
    return out


def _stop_set(stop: Seq[str | int] | None, vocab_size: int) -> tuple[list[str], set[int]]:
    """Stop strings and stop token ids, checked."""
    if isinstance(stop, (str, int)):
        stop = [stop]
    strings: list[str] = []
    ids: set[int] = set()
    for item in stop or ():
        if isinstance(item, str):
            if item:
                strings.append(item)
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < vocab_size:
            ids.add(item)
        else:
            raise ValueError(
                f"stop entries must be strings or token ids in [0, {vocab_size}), got {item!r}"
            )
    return strings, ids


def ban_list(ban: Seq[int] | None, vocab_size: int) -> list[int]:
    """The sorted, distinct token ids of a ban list, checked.

    Raises:
        ValueError: An entry is not a token id of the vocabulary, or the list bans every token
            (nothing could be sampled).
    """
    if ban is None:
        return []
    banned = sorted(set(token_ids(ban, "ban", vocab_size)))
    if len(banned) >= vocab_size:
        raise ValueError(f"the ban list bans all {vocab_size} tokens: nothing could be sampled")
    return banned


def _make_generator(sampler: Sampler, seed: int) -> torch.Generator | None:
    if sampler.is_greedy:
        return None
    return torch.Generator().manual_seed(sampler.seed if sampler.seed is not None else seed)
