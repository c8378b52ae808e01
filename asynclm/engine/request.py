"""A request for forward work: tokens to add to a sequence's KV, and the logits wanted back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from asynclm.engine.sequence import Sequence

LogitsWanted = Literal["none", "last", "all"]


@dataclass(eq=False)
class ForwardRequest:
    """Tokens to add to a sequence's KV, and which logits the caller wants back.

    The scheduler may run it over several batches (chunked prefill): `done` counts the tokens
    already in the KV, `outputs` collects the logits of each chunk.
    """

    seq: Sequence
    tokens: list[int]
    positions: list[int]
    logits: LogitsWanted = "last"
    done: int = 0
    outputs: list[Tensor] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False

    @property
    def seq_id(self) -> int:
        return self.seq.id

    @property
    def remaining(self) -> int:
        return len(self.tokens) - self.done

    def logit_rows(self, start: int, length: int) -> range:
        """Which of the tokens [start, start + length) return logits (offsets in the chunk)."""
        if self.logits == "all":
            return range(length)
        if self.logits == "last" and start + length == len(self.tokens):
            return range(length - 1, length)
        return range(0)

    def result(self) -> Tensor | None:
        """The logits asked for (None for "none"), or the error the request failed with."""
        if self.error is not None:
            raise self.error
        if self.logits == "none" or not self.outputs:
            return None
        return self.outputs[0] if len(self.outputs) == 1 else torch.cat(self.outputs)
