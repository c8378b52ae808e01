"""Best-of-n: sample n answers from forked contexts and keep the one the model finds likeliest.

The prompt is computed once and forked n times. Each child samples its own answer with a
seeded sampler (seed + i), token by token through `ctx.forward()`, recording the log-probability
the model gives every sampled token (from the raw logits, so the sampling temperature does not
bias the score). The answer with the highest mean log-probability wins. The children step
concurrently, so the engine batches them.

Run:
    asynclm inferlet asynclm/inferlets/best_of_n.py --arg prompt='Write a one-line slogan for tea.'
    asynclm inferlet asynclm/inferlets/best_of_n.py --arg prompt='Name a planet.' \
        --arg n=8 --arg seed=3
"""

# No `from __future__ import annotations` here: `load_inferlet` runs the file as a module that
# is not in `sys.modules`, and dataclasses cannot resolve string annotations there.
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import torch
from torch import Tensor

from asynclm.engine.context import Context
from asynclm.engine.sampling import Sampler
from asynclm.inferlet import Runtime

DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_PROMPT = "Write a one-line slogan for a tea shop."


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled answer and the log-probability of each of its tokens."""

    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / max(1, len(self.logprobs))


async def main(
    runtime: Runtime,
    prompt: str = DEFAULT_PROMPT,
    n: int = 4,
    system: str = DEFAULT_SYSTEM,
    max_tokens: int = 48,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample `n` answers to `prompt` and return the best by mean token log-probability.

    Args:
        runtime: the inferlet runtime.
        prompt: the user message.
        n: how many samples.
        system: the system message ("" for none).
        max_tokens: the most tokens per sample.
        temperature, top_k, top_p: sampling settings of every sample.
        seed: sample i uses seed `seed + i`.

    Returns:
        `{"best", "best_index", "samples": [{"text", "mean_logprob", "num_tokens"}, ...]}`.
    """
    if n < 1 or max_tokens < 1:
        raise ValueError(f"n and max_tokens must be >= 1, got {n} and {max_tokens}")
    samplers = [
        runtime.sampler(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed + i)
        for i in range(n)
    ]
    eos = set(runtime.tokenizer.eos_token_ids)
    samples: list[Sample | None] = [None] * n
    async with AsyncExitStack() as stack:
        children = await _fork_children(runtime, stack, prompt, system, n)

        async def draw(i: int) -> None:
            samples[i] = await sample_answer(children[i], samplers[i], max_tokens, eos)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(draw, i)
    return _report(runtime, [s for s in samples if s is not None])


async def _fork_children(
    runtime: Runtime, stack: AsyncExitStack, prompt: str, system: str, n: int
) -> list[Context]:
    """Compute the prompt once and fork `n` children (released when `stack` closes)."""
    async with runtime.context() as prefix:
        if system:
            prefix.system(system)
        prefix.user(prompt)
        await prefix.flush()
        prefix.assistant()  # left pending: each child's first forward computes it
        return [await stack.enter_async_context(prefix.fork()) for _ in range(n)]


async def sample_answer(ctx: Context, sampler: Sampler, max_tokens: int, eos: set[int]) -> Sample:
    """Sample up to `max_tokens` tokens after the context's pending tokens, scoring each.

    Draws exactly what `ctx.generate(sampler, max_tokens=...)` would (same seeded generator, same
    logits), and keeps the log-probability of every drawn token.
    """
    seed = sampler.seed if sampler.seed is not None else ctx.seed
    generator = None if sampler.is_greedy else torch.Generator().manual_seed(seed)
    logits = await _forward_pending(ctx)
    tokens: list[int] = []
    logprobs: list[float] = []
    while True:
        token = sampler.sample(logits, generator)
        tokens.append(token)
        logprobs.append(float(torch.log_softmax(logits.float(), dim=-1)[token]))
        if token in eos or len(tokens) >= max_tokens:
            return Sample(tuple(tokens), tuple(logprobs))
        logits = (await ctx.forward([token]))[-1]


async def _forward_pending(ctx: Context) -> Tensor:
    """Compute every pending token; the logits of the token after them `[vocab]`."""
    pending = ctx.tokens[ctx.num_cached :]
    ctx.truncate(ctx.num_cached)
    return (await ctx.forward(pending))[-1]


def _report(runtime: Runtime, samples: list[Sample]) -> dict[str, Any]:
    eos = set(runtime.tokenizer.eos_token_ids)
    rows = [
        {
            "text": runtime.tokenizer.decode([t for t in s.tokens if t not in eos]),
            "mean_logprob": s.mean_logprob,
            "num_tokens": len(s.tokens),
        }
        for s in samples
    ]
    best = max(range(len(samples)), key=lambda i: samples[i].mean_logprob)
    return {"best": rows[best]["text"], "best_index": best, "samples": rows}
