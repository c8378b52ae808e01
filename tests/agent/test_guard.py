"""The forgery guard and combined constraints: rolling back what the runtime removed."""

from __future__ import annotations

import pytest
import torch

from asynclm.agent.guard import AllOf, ForgeryGuard
from asynclm.engine.loader import default_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()  # plain text only: "[INTR]" is spelled in pieces


def _allowed(guard: ForgeryGuard, token: int, vocab: int) -> bool:
    logits = torch.zeros(vocab)
    guard.mask(logits)
    return bool(torch.isfinite(logits[token]))


def test_rollback_restores_the_tail_that_bans_the_marker(tokenizer) -> None:
    guard = ForgeryGuard(tokenizer)
    vocab = tokenizer.vocab_size
    opening = tokenizer.encode("[INTR", special=False)
    (closing,) = tokenizer.encode("]", special=False)
    later = tokenizer.encode(" hello", special=False)
    for t in opening:
        guard.advance(t)
    assert not _allowed(guard, closing, vocab)  # "[INTR" + "]" would forge the marker
    for t in later:
        guard.advance(t)
    assert _allowed(guard, closing, vocab)
    guard.rollback(len(later))  # the runtime removed " hello": the open prefix is back
    assert not _allowed(guard, closing, vocab)
    guard.rollback(len(opening))
    assert _allowed(guard, closing, vocab)


def test_rollback_beyond_what_was_written_is_refused(tokenizer) -> None:
    guard = ForgeryGuard(tokenizer)
    guard.advance(tokenizer.encode("a", special=False)[0])
    with pytest.raises(ValueError, match="cannot roll back 2 tokens"):
        guard.rollback(2)
    guard.reset()  # after an injection nothing before it can be rolled back
    with pytest.raises(ValueError, match="cannot roll back 1 tokens"):
        guard.rollback(1)


def test_all_of_rolls_back_every_constraint_that_can(tokenizer) -> None:
    class Counting:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def mask(self, logits: torch.Tensor) -> None:
            pass

        def advance(self, token: int) -> None:
            self.seen.append(token)

        def rollback(self, num_tokens: int = 1) -> None:
            del self.seen[-num_tokens:]

        def is_finished(self) -> bool:
            return False

    class Plain:  # a user's constraint without rollback keeps its state
        def mask(self, logits: torch.Tensor) -> None:
            pass

        def advance(self, token: int) -> None:
            pass

        def is_finished(self) -> bool:
            return False

    counting = Counting()
    both = AllOf([ForgeryGuard(tokenizer), counting, Plain()])
    for t in (1, 2, 3):
        both.advance(t)
    both.rollback(2)
    assert counting.seen == [1]
