"""Decoding constraints of the agent: the model can never write an interrupt itself.

`ForgeryGuard` masks every token that would complete the text `[INTR]` in what the model
writes (the special token and any spelling of it in pieces), so results can only come from the
runtime. `AllOf` combines it with other constraints (e.g. grammar-constrained call blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from asynclm.cml.tokens import INTR
from asynclm.engine.grammar import Constraint
from asynclm.engine.tokenizer import Tokenizer

_TEXTS: dict[tuple[str, ...], list[str]] = {}
_BANNED: dict[tuple[tuple[str, ...], str], list[Tensor]] = {}
_KEPT_TAILS = 64  # how many tokens a guard can roll back


def _vocab_key(tokenizer: Tokenizer) -> tuple[str, ...]:
    hf = tokenizer.hf
    added = tuple(sorted(str(t) for t in hf.get_added_vocab()))
    return (str(hf.name_or_path), str(tokenizer.vocab_size), *added)


def token_texts(tokenizer: Tokenizer) -> list[str]:
    """The decoded text of every token id (cached per vocabulary)."""
    key = _vocab_key(tokenizer)
    if key not in _TEXTS:
        texts = tokenizer.hf.batch_decode(
            [[i] for i in range(tokenizer.vocab_size)],
            skip_special_tokens=False,
            clean_up_tokenization_spaces=False,
        )
        _TEXTS[key] = list(texts)
    return _TEXTS[key]


def _banned_sets(tokenizer: Tokenizer, marker: str) -> list[Tensor]:
    """banned[0]: tokens containing the marker; banned[k]: tokens completing marker[:k]."""
    key = (_vocab_key(tokenizer), marker)
    if key not in _BANNED:
        texts = token_texts(tokenizer)
        contains = [i for i, t in enumerate(texts) if marker in t]
        completes = [
            [i for i, t in enumerate(texts) if t and t.startswith(marker[k:])]
            for k in range(1, len(marker))
        ]
        _BANNED[key] = [_ids(contains), *(_ids(c) for c in completes)]
    return _BANNED[key]


class ForgeryGuard:
    """Bans tokens that would make the model's own text contain `marker`."""

    def __init__(self, tokenizer: Tokenizer, marker: str = INTR) -> None:
        self.marker = marker
        self._texts = token_texts(tokenizer)
        self._banned = _banned_sets(tokenizer, marker)
        self._tail = ""
        self._earlier: list[str] = []  # the tail before each advance, for `rollback`

    def mask(self, logits: Tensor) -> None:
        logits.index_fill_(-1, self._banned[0], float("-inf"))
        for k in self._open_prefixes():
            logits.index_fill_(-1, self._banned[k], float("-inf"))

    def _open_prefixes(self) -> list[int]:
        """Lengths k >= 1 such that the text ends with marker[:k]."""
        return [k for k in range(1, len(self.marker)) if self._tail.endswith(self.marker[:k])]

    def advance(self, token: int) -> None:
        text = self._texts[token] if token < len(self._texts) else ""
        self._earlier.append(self._tail)
        del self._earlier[:-_KEPT_TAILS]
        self._tail = (self._tail + text)[-len(self.marker) :]

    def rollback(self, num_tokens: int = 1) -> None:
        """Back to the tail before the last `num_tokens` advances (the runtime removed them)."""
        if not 0 <= num_tokens <= len(self._earlier):
            raise ValueError(
                f"cannot roll back {num_tokens} tokens: {len(self._earlier)} are remembered"
            )
        if num_tokens:
            self._tail = self._earlier[-num_tokens]
            del self._earlier[-num_tokens:]

    def reset(self) -> None:
        """Forget the tail (after the runtime injected text)."""
        self._tail = ""
        self._earlier.clear()

    def is_finished(self) -> bool:
        return False


class AllOf:
    """Several constraints at once; finished when any of them is."""

    def __init__(self, constraints: Sequence[Constraint]) -> None:
        self.constraints = list(constraints)

    def mask(self, logits: Tensor) -> None:
        for c in self.constraints:
            c.mask(logits)

    def advance(self, token: int) -> None:
        for c in self.constraints:
            c.advance(token)

    def is_finished(self) -> bool:
        return any(c.is_finished() for c in self.constraints)

    def reset(self) -> None:
        for c in self.constraints:
            reset = getattr(c, "reset", None)
            if reset is not None:
                reset()

    def rollback(self, num_tokens: int = 1) -> None:
        """Un-sample the last tokens in every constraint that can (a user's constraint without
        `rollback` keeps them in its state)."""
        for c in self.constraints:
            rollback = getattr(c, "rollback", None)
            if rollback is not None:
                rollback(num_tokens)


def _ids(ids: list[int]) -> Tensor:
    return torch.tensor(sorted(ids), dtype=torch.long)
