"""Token samplers: greedy, temperature, top-k, top-p, min-p; seeded per context."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, slots=True)
class Sampler:
    """How the next token is chosen from a row of logits.

    `temperature == 0` is greedy. `top_k == 0`, `top_p == 1` and `min_p == 0` disable those
    filters. `seed` seeds the context's generator (None: seeded from the context id).

    Raises:
        ValueError: A parameter of the wrong type or out of range (checked at construction:
            temperature a finite number >= 0, top_k an integer >= 0, top_p in (0, 1], min_p
            in [0, 1), seed None or an integer in [0, 2**64)).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = [
            p
            for p in (
                _check_real("temperature", self.temperature, lambda t: t >= 0, ">= 0"),
                _check_int("top_k", self.top_k, 0, None),
                _check_real("top_p", self.top_p, lambda p: 0 < p <= 1, "in (0, 1]"),
                _check_real("min_p", self.min_p, lambda p: 0 <= p < 1, "in [0, 1)"),
                None if self.seed is None else _check_int("seed", self.seed, 0, SEED_LIMIT),
            )
            if p
        ]
        if problems:
            raise ValueError("invalid sampler: " + "; ".join(problems))

    @classmethod
    def greedy(cls) -> Sampler:
        return cls()

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> int:
        """Pick a token id from `logits` [vocab] (already masked: -inf for banned tokens)."""
        if self.is_greedy:
            return greedy_token(logits)
        probs = self.probabilities(logits)
        return int(torch.multinomial(probs, 1, generator=generator))

    def probabilities(self, logits: Tensor) -> Tensor:
        """The filtered distribution the sampler draws from ([vocab], sums to 1)."""
        logits = logits.float() / max(self.temperature, 1e-5)
        if self.top_k:
            kth = torch.topk(logits, min(self.top_k, logits.shape[-1])).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.min_p:
            probs = probs.masked_fill(probs < self.min_p * probs.max(), 0.0)
        if self.top_p < 1:
            sorted_p, order = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_p, dim=-1)
            drop = cum - sorted_p > self.top_p  # keep the smallest prefix reaching top_p
            probs = probs.scatter(0, order, sorted_p.masked_fill(drop, 0.0))
        return probs / probs.sum()


def greedy_token(logits: Tensor) -> int:
    """The id of the largest logit (the first, on ties; NaN counts as largest, as in torch).

    On the CPU numpy's argmax does it: a vocabulary-sized `torch.argmax` runs as a parallel
    region of the calling thread's own OpenMP team, measured at 10x numpy's time on 2 cores
    while the forward thread's team is busy (the event loop samples; the model runs elsewhere).
    """
    if logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.dim() == 1:
        return int(logits.numpy().argmax())
    return int(torch.argmax(logits))


SEED_LIMIT = 2**64  # torch generators take seeds in [0, 2**64)


def _check_real(name: str, value: object, ok: Callable[[float], bool], rule: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name} must be a number, got {value!r}"
    number = float(value)
    if not math.isfinite(number) or not ok(number):
        return f"{name} must be a finite number {rule}, got {value!r}"
    return None


def _check_int(name: str, value: object, low: int, high: int | None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{name} must be an integer, got {value!r}"
    number = int(value)
    if number < low or (high is not None and number >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        return f"{name} must be {bound}, got {number}"
    return None


def ban_tokens(logits: Tensor, token_ids: Tensor | None) -> Tensor:
    """Set the logits of `token_ids` to -inf in place (a logit mask)."""
    if token_ids is not None and token_ids.numel():
        logits.index_fill_(-1, token_ids, float("-inf"))
    return logits
