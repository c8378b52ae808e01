"""What the async-naive strategy costs: one record per stream (re)submission."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Reason = Literal["start", "resume", "interrupt", "dropped"]


@dataclass(slots=True)
class Submission:
    """One streamed request of a generation.

    Attributes:
        reason: why it was sent: the context's first request (`start`), a new generation
            after a pause (`resume`: a sync call, a trap), an interrupt that aborted the
            running stream (`interrupt`: async-naive), or a dropped stream being continued.
        prompt_tokens: tokens of its prompt.
        reused_tokens: prompt tokens the server's cache held: as the server reported it
            (`reported`), or the common prefix with what the server last computed
            (`estimated`; exact for a single-sequence prefix cache such as llama-cpp-python's).
        discarded_tokens: tokens the previous stream had sent that the agent never saw
            (generated in vain before the abort).
        first_token_s: seconds from sending to its first streamed token.
    """

    reason: Reason
    prompt_tokens: int
    reused_tokens: int
    reused_source: Literal["reported", "estimated"] = "estimated"
    discarded_tokens: int = 0
    first_token_s: float | None = None
    generated_tokens: int = 0

    @property
    def recomputed_tokens(self) -> int:
        """Prompt tokens the server had to prefill for this request."""
        return self.prompt_tokens - self.reused_tokens


@dataclass(slots=True)
class RemoteStats:
    """Every submission of every context of a backend, in order."""

    submissions: list[Submission] = field(default_factory=list)

    @property
    def restarts(self) -> list[Submission]:
        """Requests that continued a context: resumes, interrupts and continued drops."""
        return [s for s in self.submissions if s.reason != "start"]

    def summary(self) -> dict[str, float]:
        """Counts and means for a benchmark's JSON."""
        return summarize(self.submissions)


def summarize(submissions: list[Submission]) -> dict[str, float]:
    """Requests, restarts (requests after a context's first) and their mean costs."""
    restarts = [s for s in submissions if s.reason != "start"]
    ttfts = [s.first_token_s for s in restarts if s.first_token_s is not None]
    return {
        "requests": len(submissions),
        "restarts": len(restarts),
        "interrupt_restarts": sum(s.reason == "interrupt" for s in restarts),
        "recomputed_tokens_per_restart": _mean([s.recomputed_tokens for s in restarts]),
        "reused_tokens_per_restart": _mean([s.reused_tokens for s in restarts]),
        "discarded_tokens_per_restart": _mean([s.discarded_tokens for s in restarts]),
        "restart_first_token_s": _mean(ttfts),
    }


def _mean(values: list[float] | list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
