"""Token samplers: greedy, temperature, top-k, top-p, min-p; seeded per context."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, slots=True)
class Sampler:
    """How the next token is chosen from a row of logits.

    `temperature == 0` is greedy. `top_k == 0`, `top_p == 1` and `min_p == 0` disable those
    filters. `seed` seeds the context's generator (None: seeded from the context id).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")

    @classmethod
    def greedy(cls) -> Sampler:
        return cls()

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> int:
        """Pick a token id from `logits` [vocab] (already masked: -inf for banned tokens)."""
        if self.is_greedy:
            return int(torch.argmax(logits))
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


def ban_tokens(logits: Tensor, token_ids: Tensor | None) -> Tensor:
    """Set the logits of `token_ids` to -inf in place (a logit mask)."""
    if token_ids is not None and token_ids.numel():
        logits.index_fill_(-1, token_ids, float("-inf"))
    return logits
