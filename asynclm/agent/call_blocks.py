"""Constrained call blocks: the model writes freely, but every call block it opens is held to
the tools' grammar.

For a model that writes CML on its own (a fine-tuned one), a grammar over the whole turn is
too tight: it decides when to call, when to trap and when to answer. What it cannot guarantee
alone is the inside of a block: a known tool, each parameter at most once and by its declared
name, required ones present, literals of the declared types. `CallBlocks` leaves the text
outside blocks untouched and, from the token that completes `[CALL]` to the block's `[END]`,
masks the logits with a fresh matcher of `asynclm.cml.grammar.call_grammar`.

A block starts only where `[CALL]` ends at a token boundary (always, for a tokenizer with the
CML markers as tokens); a spelling that ends inside a token (`])`) leaves that block free, and
the runtime's parser judges it as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from asynclm.agent.guard import token_texts
from asynclm.cml.tokens import CALL
from asynclm.engine.grammar import Grammar, GrammarConstraint
from asynclm.engine.tokenizer import Tokenizer

_KEPT_STEPS = 64  # how many tokens a constraint can roll back


@dataclass(slots=True)
class _Step:
    """What one accepted token changed, for `rollback`."""

    tail: str  # the free text's tail before the token
    matcher: GrammarConstraint | None  # the block's matcher the token went into, if any
    opened: bool = False  # the token completed `[CALL]`


class CallBlocks:
    """Holds each call block to a compiled call grammar; free text elsewhere.

    Args:
        grammar: The compiled grammar of a block's text after `[CALL]` up to its `[END]`
            (`call_grammar(tools)` compiled for the engine's tokenizer).
        tokenizer: The engine's tokenizer (to see where `[CALL]` is written).
    """

    def __init__(self, grammar: Grammar, tokenizer: Tokenizer) -> None:
        self._grammar = grammar
        self._texts = token_texts(tokenizer)
        self._tail = ""  # the last characters of free text, to spot `[CALL]`
        self._block: GrammarConstraint | None = None
        self._steps: list[_Step] = []

    @property
    def in_block(self) -> bool:
        """Whether the next token is inside a call block (and so masked)."""
        return self._block is not None

    def mask(self, logits: Tensor) -> None:
        if self._block is not None:
            self._block.mask(logits)

    def advance(self, token: int) -> None:
        step = _Step(tail=self._tail, matcher=self._block)
        if self._block is not None:
            self._block.advance(token)
            if self._block.is_completed():  # the token was the block's `[END]`
                self._block = None
        else:
            text = self._texts[token] if token < len(self._texts) else ""
            self._tail = (self._tail + text)[-len(CALL) :]
            if text and self._tail == CALL:
                self._block, step.opened = self._grammar.matcher(), True
                self._tail = ""
        self._steps.append(step)
        del self._steps[:-_KEPT_STEPS]

    def rollback(self, num_tokens: int = 1) -> None:
        """Un-accept the last `num_tokens` tokens (the runtime removed them from the context)."""
        if not 0 <= num_tokens <= len(self._steps):
            raise ValueError(
                f"cannot roll back {num_tokens} tokens: {len(self._steps)} are remembered"
            )
        for _ in range(num_tokens):
            step = self._steps.pop()
            self._tail = step.tail
            if step.opened:
                self._block = None
            elif step.matcher is not None:  # inside a block, or its `[END]`: reopen it
                step.matcher.rollback(1)
                self._block = step.matcher

    def reset(self) -> None:
        """Forget what was written (the runtime injected text; never inside a block)."""
        self._tail = ""
        self._block = None
        self._steps.clear()

    def is_finished(self) -> bool:
        return False  # the turn ends by the model's own end token, not by this constraint
