"""Decoding constraints a server can apply: each describes itself as request fields.

A local constraint masks logits in-process, which no server lets a client do. A
`RemoteConstraint` instead turns into fields of each (re)submitted request: banned tokens
into `logit_bias`, a grammar into llama.cpp's `grammar`. `Ban` works on both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from asynclm.engine.sampling import ban_tokens


@runtime_checkable
class RemoteConstraint(Protocol):
    """A constraint that a server applies from request fields."""

    def remote_fields(self, prompt_text: str) -> dict[str, Any]:
        """Fields to add to a request whose prompt is `prompt_text`."""
        ...


class Ban:
    """Token ids that may never be sampled: a logit mask locally, `logit_bias` remotely."""

    def __init__(self, token_ids: Sequence[int]) -> None:
        self.token_ids = tuple(sorted(set(token_ids)))
        self._tensor = torch.tensor(self.token_ids, dtype=torch.long) if self.token_ids else None

    def remote_fields(self, prompt_text: str) -> dict[str, Any]:
        return {"logit_bias": {str(t): -100 for t in self.token_ids}} if self.token_ids else {}

    # ---- the local Constraint interface ------------------------------------------------------
    def mask(self, logits: Tensor) -> None:
        ban_tokens(logits, self._tensor)

    def advance(self, token: int) -> None:
        pass

    def is_finished(self) -> bool:
        return False

    def reset(self) -> None:
        pass


def gbnf_literal(text: str) -> str:
    """A llama.cpp grammar admitting exactly `text` (then the end of the turn)."""
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'root ::= "{escaped}"'


class ForcedText:
    """Make the server write exactly the text `remainder(prompt_text)` (a llama.cpp grammar).

    The model still computes every token (real prefill and decode cost), but what it writes is
    scripted: benchmarks and tests use it to run a known agent trace on a real server. Each
    (re)submission asks `remainder` again, so a script can react to injected interrupts.
    """

    def __init__(self, remainder: Callable[[str], str]) -> None:
        self.remainder = remainder

    def remote_fields(self, prompt_text: str) -> dict[str, Any]:
        return {"grammar": gbnf_literal(self.remainder(prompt_text))}

    def reset(self) -> None:
        """Nothing to forget: the grammar is rebuilt from the prompt at each submission."""


class AllRemote:
    """Several remote constraints at once: their fields merged (logit biases combined)."""

    def __init__(self, constraints: Sequence[RemoteConstraint]) -> None:
        bad = [c for c in constraints if not isinstance(c, RemoteConstraint)]
        if bad:
            raise ValueError(
                f"a remote backend applies constraints as request fields; {bad[0]!r} is a "
                "local one (a logit mask): run it on the local engine"
            )
        self.constraints = tuple(constraints)

    def remote_fields(self, prompt_text: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for constraint in self.constraints:
            extra = constraint.remote_fields(prompt_text)
            bias = {**fields.get("logit_bias", {}), **extra.get("logit_bias", {})}
            fields.update(extra)
            if bias:
                fields["logit_bias"] = bias
        return fields

    def reset(self) -> None:
        for constraint in self.constraints:
            reset = getattr(constraint, "reset", None)
            if reset is not None:
                reset()

    def rollback(self, num_tokens: int = 1) -> None:
        """Nothing to undo: the fields are rebuilt from the prompt at each submission."""
