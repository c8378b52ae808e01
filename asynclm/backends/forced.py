"""A scripted agent trace forced onto a real model: the oracle writes, the model computes.

Benchmarks (`bench backends`, `bench bfcl --forced-oracle`) run a known trace (the calls a
tuned model would write, longest first; traps; the answer) on the real SmolLM2, so every mode
and backend makes the same calls and latency compares like with like, while every token still
costs a real forward. The trace comes from a policy over what the model has seen in its turn
(its own text, the interrupts); `remainder` says what is left to write up to the next trap.
Locally `ForcedTrace.mask` masks every token but the next one of that remainder; on a server
`ForcedTrace.remote_fields` sends it as a grammar.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asynclm.cml.tokens import TRAP

_INTERRUPT = re.compile(r"\[INTR\]\s*(\S+?)\s*\[HEAD\](.*?)\[END\]", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Seen:
    id: str
    value: str


@dataclass(slots=True)
class TurnView:
    """What a policy reads: the model's own text of the turn and the interrupts, in order."""

    written: str = ""
    interrupts: list[Seen] = field(default_factory=list)
    chunks: int = 0


Policy = Callable[[Any], str]


def remainder(policy: Policy, turn: str) -> str:
    """What the policy still writes in this turn, up to and including its next trap.

    The turn is replayed against the policy (chunk by chunk, each interrupt added where it
    was injected), so its decisions are the ones it made while writing; "" when the turn has
    left the script (or the script is done).
    """
    state, buffer, pos = TurnView(), "", 0
    for match in [*_INTERRUPT.finditer(turn), None]:
        written = turn[pos : match.start() if match else len(turn)]
        while written:
            buffer = buffer or _ask(policy, state)
            n = _common_prefix(buffer, written)
            if n == 0:
                return ""
            state.written += written[:n]
            buffer, written = buffer[n:], written[n:]
        if match:
            state.interrupts.append(Seen(match.group(1), match.group(2).strip()))
            pos = match.end()
    out, last = buffer, buffer
    while TRAP not in last and len(out) < 1 << 16:
        state.written += last
        last = _ask(policy, state)
        if not last:
            break
        out += last
    return out


def _ask(policy: Policy, state: TurnView) -> str:
    chunk = policy(state) or ""
    state.chunks += 1
    return chunk


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def turn_text(text: str, generation_prompt: str) -> str:
    """The text of the last assistant turn in a rendered conversation."""
    cut = text.rfind(generation_prompt)
    return text[cut + len(generation_prompt) :] if cut >= 0 else ""


class ForcedTrace:
    """Force the policy's trace on a real model: a local logit mask and a server grammar.

    Args:
        policy: the oracle (see `asynclm.bench.agent.make_policy`).
        tokenizer: the model's tokenizer (encode, decode, chat, eos ids).
        context_text: returns the live context's text (for the local engine's mask).
    """

    def __init__(self, policy: Policy, tokenizer: Any, context_text: Callable[[], str]) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.context_text = context_text
        self._eos = tokenizer.hf.eos_token_id

    def next_text(self, text: str) -> str:
        return remainder(self.policy, turn_text(text, self.tokenizer.chat.generation_prompt))

    # ---- on a server: a grammar per (re)submission -------------------------------------------
    def remote_fields(self, prompt_text: str) -> dict[str, Any]:
        from asynclm.backends.remote.constraints import gbnf_literal

        return {"grammar": gbnf_literal(self.next_text(prompt_text))}

    # ---- on the local engine: every token but the next one is masked -------------------------
    def mask(self, logits: Any) -> None:
        rest = self.next_text(self.context_text())
        # it writes as a model does: a marker in its text is that special token
        allowed = self.tokenizer.encode(rest, special=True)[0] if rest else self._eos
        keep = logits[..., allowed].clone()
        logits.fill_(float("-inf"))
        logits[..., allowed] = keep

    def advance(self, token: int) -> None:
        pass

    def is_finished(self) -> bool:
        return False

    def reset(self) -> None:
        pass

    def rollback(self, num_tokens: int = 1) -> None:
        """Nothing to undo: the next text is computed from the context at every step."""
