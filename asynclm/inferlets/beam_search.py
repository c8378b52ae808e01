"""Beam search written against `ctx.forward()`: custom decoding from raw logits.

Each live beam is a context. At every step the beams' next-token log-probabilities (log-softmax
of the logits) extend their scores; the `width` best continuations survive. A parent chosen
more than once is forked (its pages are shared, not copied); a parent with no survivor is
released at once, so pruned beams give their K/V pages back. The surviving beams compute their
new token in one batched forward. A beam that picks an end-of-turn token is finished; finished
beams are compared by `logprob / length ** length_penalty` (0: plain sum, 1: mean per token).

Run:
    asynclm inferlet asynclm/inferlets/beam_search.py --arg prompt='What is the capital of France?'
    asynclm inferlet asynclm/inferlets/beam_search.py --arg prompt='Name three colours.' \
        --arg width=6 --arg length_penalty=0.5 --arg max_tokens=40
"""

# No `from __future__ import annotations` here: `load_inferlet` runs the file as a module that
# is not in `sys.modules`, and dataclasses cannot resolve string annotations there.
from dataclasses import dataclass
from typing import Any

import anyio
import torch
from torch import Tensor

from asynclm.engine.context import Context
from asynclm.inferlet import Runtime

DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_PROMPT = "What is the capital of France?"


@dataclass
class Beam:
    """A hypothesis: its generated tokens and their summed log-probability.

    Live beams own a context and the log-probabilities of their next token.
    """

    tokens: list[int]
    logprob: float
    ctx: Context | None = None
    next_logprobs: Tensor | None = None
    finished: bool = False

    def score(self, length_penalty: float) -> float:
        return self.logprob / max(1, len(self.tokens)) ** length_penalty


@dataclass(frozen=True, slots=True)
class _Candidate:
    logprob: float
    parent: int
    token: int


async def main(
    runtime: Runtime,
    prompt: str = DEFAULT_PROMPT,
    width: int = 4,
    max_tokens: int = 32,
    length_penalty: float = 1.0,
    system: str = DEFAULT_SYSTEM,
) -> dict[str, Any]:
    """Beam-search an answer to `prompt`.

    Args:
        runtime: the inferlet runtime.
        prompt: the user message.
        width: beams kept per step (1 is greedy decoding).
        max_tokens: the most tokens per hypothesis.
        length_penalty: finished hypotheses are ranked by `logprob / length ** length_penalty`.
        system: the system message ("" for none).

    Returns:
        `{"text", "tokens", "logprob", "score", "hypotheses": [{"text", "tokens", "logprob",
        "score", "finished"}, ...]}` (hypotheses best first).
    """
    if width < 1 or max_tokens < 1:
        raise ValueError(f"width and max_tokens must be >= 1, got {width} and {max_tokens}")
    eos = set(runtime.tokenizer.eos_token_ids)
    beams = [await _root_beam(runtime, prompt, system)]
    hypotheses: list[Beam] = []  # finished ones (and, at max_tokens, the unfinished too)
    try:
        for step in range(max_tokens):
            live, done = _select(beams, width, eos)
            hypotheses += done
            if not live or len(hypotheses) >= width:
                break
            beams = _assign_contexts(beams, live)
            if step + 1 < max_tokens:  # the last step's tokens need no logits
                await _advance(beams)
        else:  # out of tokens: the unfinished hypotheses compete too
            hypotheses += beams
    finally:
        for beam in beams:
            _release(beam)
    return _report(runtime, hypotheses, length_penalty)


async def _root_beam(runtime: Runtime, prompt: str, system: str) -> Beam:
    ctx = runtime.context()
    try:
        if system:
            ctx.system(system)
        ctx.user(prompt)
        ctx.assistant()
        return Beam([], 0.0, ctx, await _forward_pending(ctx))
    except BaseException:
        ctx.release()
        raise


async def _forward_pending(ctx: Context) -> Tensor:
    """Compute every pending token; the log-probabilities of the token after them `[vocab]`."""
    pending = ctx.tokens[ctx.num_cached :]
    ctx.truncate(ctx.num_cached)
    logits = await ctx.forward(pending)
    return torch.log_softmax(logits[-1].float(), dim=-1)


def _select(beams: list[Beam], width: int, eos: set[int]) -> tuple[list[_Candidate], list[Beam]]:
    """The `width` best continuations that go on, and finished ones that rank above them."""
    candidates: list[_Candidate] = []
    for i, beam in enumerate(beams):
        assert beam.next_logprobs is not None  # every live beam was advanced
        top = torch.topk(beam.next_logprobs, min(width + len(eos), beam.next_logprobs.numel()))
        for lp, token in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            candidates.append(_Candidate(beam.logprob + lp, i, token))
    candidates.sort(key=lambda c: c.logprob, reverse=True)
    live: list[_Candidate] = []
    done: list[Beam] = []
    for c in candidates:
        if len(live) == width:
            break
        if c.token in eos:  # the end token is not part of the text
            done.append(Beam(beams[c.parent].tokens, c.logprob, finished=True))
        else:
            live.append(c)
    return live, done


def _assign_contexts(beams: list[Beam], chosen: list[_Candidate]) -> list[Beam]:
    """Give each chosen continuation a context: its parent's, or a fork when it has several."""
    used: set[int] = set()
    survivors: list[Beam] = []
    for c in chosen:
        parent = beams[c.parent]
        assert parent.ctx is not None
        ctx = parent.ctx.fork() if c.parent in used else parent.ctx
        used.add(c.parent)
        survivors.append(Beam([*parent.tokens, c.token], c.logprob, ctx))
    for i, beam in enumerate(beams):
        if i not in used:  # pruned: give its pages back now
            _release(beam)
    return survivors


async def _advance(beams: list[Beam]) -> None:
    """Compute every beam's new token in one batched step; store its next log-probabilities."""

    async def one(beam: Beam) -> None:
        assert beam.ctx is not None
        logits = await beam.ctx.forward(beam.tokens[-1:])
        beam.next_logprobs = torch.log_softmax(logits[-1].float(), dim=-1)

    async with anyio.create_task_group() as tg:
        for beam in beams:
            tg.start_soon(one, beam)


def _release(beam: Beam) -> None:
    if beam.ctx is not None:
        beam.ctx.release()
        beam.ctx = None


def _report(runtime: Runtime, hypotheses: list[Beam], length_penalty: float) -> dict[str, Any]:
    ranked = sorted(hypotheses, key=lambda b: b.score(length_penalty), reverse=True)
    rows = [
        {
            "text": runtime.tokenizer.decode(b.tokens),
            "tokens": b.tokens,
            "logprob": b.logprob,
            "score": b.score(length_penalty),
            "finished": b.finished,
        }
        for b in ranked
    ]
    best = ranked[0]
    return {
        "text": rows[0]["text"],
        "tokens": best.tokens,
        "logprob": best.logprob,
        "score": rows[0]["score"],
        "hypotheses": rows,
    }
