"""A scripted model: replays or computes token streams, for testing agents without an LLM.

`ScriptedModel` plugs into the real `Engine` in place of a transformer, so everything but the
arithmetic is real: KV pages (the "KV" stores token ids), batching, forks, interrupts. Each
forward sleeps a configurable time (per step plus per prefilled token) to model a real token rate.

Its behaviour is a *policy*: a function of what the model has seen so far in its current
assistant turn (the user's prompt, the text it wrote, the interrupts injected into it) that
returns the next chunk of text to write. The model writes that chunk token by token; when it is
used up the policy is asked again; an empty chunk ends the turn. Because the state is rebuilt
from the token history at every step, the model reacts to interrupts exactly as a real model
would see them, and forks or reopened contexts behave consistently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from asynclm.cml.parser import BlockStart, CMLParser, Interrupt
from asynclm.engine.config import ModelConfig
from asynclm.engine.engine import Engine
from asynclm.engine.kv_cache import KVCache
from asynclm.engine.loader import default_tokenizer
from asynclm.engine.model import BatchMeta
from asynclm.engine.tokenizer import Tokenizer

__all__ = [
    "Interrupt",
    "Policy",
    "ScriptedModel",
    "Timing",
    "TurnState",
    "actions",
    "replay",
    "scripted_engine",
]

_NO_LIMIT = 1 << 40  # interrupt values of any length are read back


@dataclass(slots=True)
class TurnState:
    """What the scripted model has seen of its current assistant turn."""

    prompt: str  # everything before the assistant turn (system prompt, user message)
    written: str = ""  # text the model wrote itself
    interrupts: list[Interrupt] = field(default_factory=list)  # injected, in order (cml events)
    chunks: int = 0  # how many chunks the policy returned so far

    def result(self, call_id: str) -> str | None:
        """The injected value for a call id, if it arrived."""
        return next((i.value.strip() for i in self.interrupts if i.id == call_id), None)


Policy = Callable[[TurnState], str]


def replay(script: str) -> Policy:
    """A policy that writes `script` whatever happens, then ends its turn."""
    return lambda state: script if state.chunks == 0 else ""


def actions(*chunks: str) -> Policy:
    """A policy that writes the given chunks in order (one decision each), then ends."""
    return lambda state: chunks[state.chunks] if state.chunks < len(chunks) else ""


@dataclass(frozen=True, slots=True)
class Timing:
    """Simulated compute time: per forward step, and per token beyond the first in a batch row."""

    step_s: float = 1 / 30
    prefill_token_s: float = 1 / 600

    def seconds(self, num_tokens: int, num_rows: int) -> float:
        return self.step_s + self.prefill_token_s * max(0, num_tokens - num_rows)


class ScriptedModel:
    """Drop-in model for `Engine`: `Engine(ScriptedModel(tokenizer, policy), tokenizer)`."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        policy: Policy,
        *,
        timing: Timing | None = None,
        max_position: int = 1 << 20,
    ) -> None:
        self.tokenizer = tokenizer
        self.policy = policy
        self.timing = timing or Timing(0.0, 0.0)
        self.config = ModelConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=1,
            intermediate_size=1,
            num_layers=1,
            num_heads=1,
            num_kv_heads=1,
            head_dim=1,
            max_position=max_position,
            tie_embeddings=False,
            eos_token_ids=tokenizer.eos_token_ids,
        )
        self.forward_calls = 0

    # --- the parts of the model interface the engine uses ----------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def paged_decode(self) -> bool:
        """Single-token steps of any length take the engine's decode path (the model reads its
        token history straight from the pool, so how attention would lay keys out is moot)."""
        return True

    def resize_vocab(self, size: int) -> None:
        self.config = replace(self.config, vocab_size=size)

    def __call__(self, tokens: Tensor, positions: Tensor, batch: BatchMeta, kv: KVCache) -> Tensor:
        started = time.perf_counter()
        values = tokens.to(torch.float32).view(-1, 1, 1)
        kv.write(0, batch.write_slots, values, values)
        histories = self._histories(batch, kv)
        logits = torch.full((len(histories), self.config.vocab_size), -1e4)
        for row, history in enumerate(histories):
            logits[row, self.next_token(history)] = 1e4
        self.forward_calls += 1
        _pace(started + self.timing.seconds(int(tokens.numel()), _num_rows(batch)))
        return logits

    def _histories(self, batch: BatchMeta, kv: KVCache) -> list[list[int]]:
        """Token history up to each logit row, read back from the KV slots."""
        by_row: dict[int, list[int]] = {}
        if batch.decode is not None:
            lengths = _row_lengths(batch.decode.kv_mask, batch.decode.kv_index)
            for i, row in enumerate(batch.decode.rows.tolist()):
                by_row[row] = _read(kv, batch.decode.kv_index[i, : lengths[i]])
        for seq in batch.sequences:
            full = _read(kv, seq.kv_slots)
            cached = len(full) - seq.length
            for j in range(seq.length):
                by_row[seq.start + j] = full[: cached + j + 1]
        return [by_row[r] for r in batch.logit_rows.tolist()]

    # --- the policy -------------------------------------------------------------------------
    def next_token(self, history: list[int]) -> int:
        # The assistant's turn opens with the template's tokens, found by id as a model sees
        # them: the same text written as plain text (in a tool result) does not open one.
        marker = self.tokenizer.encode(self.tokenizer.chat.generation_prompt, special=True)
        cut = _rfind(history, marker)
        if cut < 0:  # not in an assistant turn: end it
            return self._eos
        state = TurnState(prompt=self.tokenizer.decode(history[:cut]))
        pending = self._replay(self.tokenizer.decode(history[cut + len(marker) :]), state)
        if pending is None:
            return self._eos
        if not pending:
            pending = self._ask(state)
        # it writes as a model does: a marker or end-of-turn in its text is that special token
        return self.tokenizer.encode(pending, special=True)[0] if pending else self._eos

    def _replay(self, turn: str, state: TurnState) -> str | None:
        """Walk the turn so far; return what is left of the current chunk (None: diverged).

        The CML parser splits the turn into what the model wrote and the interrupts injected.
        """
        parser = CMLParser(_NO_LIMIT, interrupts=True)
        buffer: str | None = ""
        for event in [*parser.feed(turn), *parser.close()]:
            if isinstance(event, Interrupt):
                state.interrupts.append(event)
            elif not (isinstance(event, BlockStart) and event.kind == "interrupt"):
                buffer = self._follow(event.raw, buffer or "", state)
                if buffer is None:
                    return None
        return buffer

    def _follow(self, written: str, buffer: str, state: TurnState) -> str | None:
        """Match text the model wrote against its chunks; what is left of the current one."""
        while written:
            if not buffer:
                buffer = self._ask(state)
            n = _common_prefix(buffer, written)
            if n == 0:
                return None
            state.written += written[:n]
            buffer, written = buffer[n:], written[n:]
        return buffer

    def _ask(self, state: TurnState) -> str:
        chunk = self.policy(state) or ""
        state.chunks += 1
        return chunk

    @property
    def _eos(self) -> int:
        return self.tokenizer.eos_token_ids[0]


_SPIN_S = 0.0015  # the last stretch before a deadline is waited out awake


def _pace(deadline: float) -> None:
    """Return at `deadline` (a `perf_counter` time), not later: a plain sleep wakes up a few
    hundred microseconds late on a virtual machine, which would slow the simulated model down
    by a per-step amount of its own. It sleeps until shortly before and spins the rest."""
    asleep = deadline - time.perf_counter() - _SPIN_S
    if asleep > 0:
        time.sleep(asleep)
    while time.perf_counter() < deadline:
        pass


def _read(kv: KVCache, slots: Tensor) -> list[int]:
    return [int(v) for v in kv.data[0, 0].index_select(0, slots).view(-1).tolist()]


def _row_lengths(mask: Tensor | None, index: Tensor) -> list[int]:
    if mask is None:
        return [index.shape[1]] * index.shape[0]
    return mask.view(index.shape[0], -1).sum(-1).tolist()


def _num_rows(batch: BatchMeta) -> int:
    rows = len(batch.sequences)
    return rows + (batch.decode.rows.numel() if batch.decode is not None else 0)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def scripted_engine(
    policy: Policy,
    *,
    timing: Timing | None = None,
    tokenizer: Tokenizer | None = None,
    **engine_kwargs: Any,
) -> Engine:
    """An `Engine` running a `ScriptedModel` with the default tokenizer."""
    tok = tokenizer or default_tokenizer()
    engine_kwargs.setdefault("num_pages", 4096)
    return Engine(ScriptedModel(tok, policy, timing=timing), tok, name="scripted", **engine_kwargs)


def _rfind(ids: list[int], part: list[int]) -> int:
    """Where the last occurrence of `part` starts in `ids`, or -1."""
    for start in range(len(ids) - len(part), -1, -1):
        if ids[start : start + len(part)] == part:
            return start
    return -1
