"""Decoding constraints of the agent: the model can never write an interrupt itself.

`ForgeryGuard` masks every token that would complete the text `[INTR]` in what the model
writes (the special token and any spelling of it in pieces), so results can only come from the
runtime. `AllOf` combines it with other constraints (e.g. grammar-constrained call blocks).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from asynclm.cml.tokens import INTR
from asynclm.engine.grammar import Constraint
from asynclm.engine.tokenizer import Tokenizer

_TEXTS: weakref.WeakKeyDictionary[Tokenizer, tuple[int, list[str]]] = weakref.WeakKeyDictionary()


def token_texts(tokenizer: Tokenizer) -> list[str]:
    """The decoded text of every token id (cached per tokenizer and vocabulary size)."""
    cached = _TEXTS.get(tokenizer)
    if cached is None or cached[0] != tokenizer.vocab_size:
        texts = tokenizer.hf.batch_decode([[i] for i in range(tokenizer.vocab_size)],
                                          skip_special_tokens=False, clean_up_tokenization_spaces=False)
        cached = (tokenizer.vocab_size, list(texts))
        _TEXTS[tokenizer] = cached
    return cached[1]


class ForgeryGuard:
    """Bans tokens that would make the model's own text contain `marker`."""

    def __init__(self, tokenizer: Tokenizer, marker: str = INTR) -> None:
        self.marker = marker
        texts = token_texts(tokenizer)
        self._texts = texts
        # banned[k]: tokens that complete the marker when the text so far ends with marker[:k]
        contains = [i for i, t in enumerate(texts) if marker in t]
        completes = [[i for i, t in enumerate(texts) if t and t.startswith(marker[k:])]
                     for k in range(1, len(marker))]
        self._banned = [_ids(contains), *(_ids(c) for c in completes)]
        self._tail = ""

    def mask(self, logits: Tensor) -> None:
        logits.index_fill_(-1, self._banned[0], float("-inf"))
        for k in self._open_prefixes():
            logits.index_fill_(-1, self._banned[k], float("-inf"))

    def _open_prefixes(self) -> list[int]:
        """Lengths k >= 1 such that the text ends with marker[:k]."""
        return [k for k in range(1, len(self.marker)) if self._tail.endswith(self.marker[:k])]

    def advance(self, token: int) -> None:
        text = self._texts[token] if token < len(self._texts) else ""
        self._tail = (self._tail + text)[-len(self.marker) :]

    def reset(self) -> None:
        """Forget the tail (after the runtime injected text)."""
        self._tail = ""

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


def _ids(ids: list[int]) -> Tensor:
    return torch.tensor(sorted(ids), dtype=torch.long)
