"""When a failed request may be sent again, and how long to wait first (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Statuses where the server did not act on the request, or asks us to come back later.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    A request is retried only while nothing of its answer was used: a connection that failed,
    a retryable status, a timeout before the first byte. A stream that drops after text arrived
    is *continued* (the text so far becomes part of the prompt), never replayed; that, too,
    counts against `attempts`.

    Attributes:
        attempts: tries in all, the first included (1 disables retries).
        base_delay: seconds before the first retry.
        max_delay: cap on one wait.
        seed: for reproducible jitter in tests (None: random).
    """

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 4.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def delays(self) -> list[float]:
        """The waits before retries 1, 2, ... (one fewer than `attempts`)."""
        rng = random.Random(self.seed)
        return [
            rng.uniform(0, min(self.max_delay, self.base_delay * 2**i))
            for i in range(self.attempts - 1)
        ]


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES
