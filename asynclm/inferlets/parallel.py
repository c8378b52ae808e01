"""Parallel generation: one shared prefix, N forked children generating at the same time.

The system and user turns are computed once; `fork()` gives each child the same K/V pages
(shared, not copied). The children generate in one anyio task group, so the engine's scheduler
batches their decode steps together: N answers cost about as much time as one. Each child has
its own seeded sampler, so the answers differ with temperature > 0 and are reproducible.

Run:
    asynclm inferlet asynclm/inferlets/parallel.py --arg prompt='Name a cat.' --arg n=4
    asynclm inferlet asynclm/inferlets/parallel.py --arg prompt='Write a haiku.' --arg temperature=0
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from asynclm.engine.context import Context
    from asynclm.engine.generation import GenerationResult
    from asynclm.engine.sampling import Sampler
    from asynclm.engine.tokenizer import Tokenizer
    from asynclm.inferlet import Runtime

DEFAULT_SYSTEM = "You are a creative assistant."
DEFAULT_PROMPT = "Suggest a name for a small black cat."


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
    """Generate `n` answers to `prompt` concurrently from one shared prefix.

    Args:
        runtime: the inferlet runtime.
        prompt: the user message.
        n: how many answers.
        system: the system message ("" for none).
        max_tokens: the most tokens per answer.
        temperature, top_k, top_p: sampling settings (temperature 0: every child answers
            greedily).
        seed: child i samples with seed `seed + i`.

    Returns:
        `{"answers": [...], "joined": "...", "prefix_tokens": int}`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    async with AsyncExitStack() as stack:
        children = await _fork_children(runtime, stack, prompt, system, n)
        prefix_tokens = children[0].num_cached
        answers = [""] * n

        async def answer(i: int) -> None:
            sampler = runtime.sampler(
                temperature=temperature, top_k=top_k, top_p=top_p, seed=seed + i
            )
            answers[i] = await _generate(runtime.tokenizer, children[i], sampler, max_tokens)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(answer, i)
    joined = "\n\n".join(f"[{i + 1}] {text.strip()}" for i, text in enumerate(answers))
    return {"answers": answers, "joined": joined, "prefix_tokens": prefix_tokens}


async def _fork_children(
    runtime: Runtime, stack: AsyncExitStack, prompt: str, system: str, n: int
) -> list[Context]:
    """Compute the shared prefix once and fork `n` children (released when `stack` closes)."""
    async with runtime.context() as prefix:
        if system:
            prefix.system(system)
        prefix.user(prompt)
        await prefix.flush()
        # A generation starts from pending tokens: leave the assistant opening (a few tokens)
        # pending, so every child computes it in its first, batched step.
        prefix.assistant()
        return [await stack.enter_async_context(prefix.fork()) for _ in range(n)]


async def _generate(tokenizer: Tokenizer, ctx: Context, sampler: Sampler, max_tokens: int) -> str:
    result = await ctx.generate(sampler, max_tokens=max_tokens).collect()
    return _answer_text(tokenizer, result)


def _answer_text(tokenizer: Tokenizer, result: GenerationResult) -> str:
    """The generated text without the end-of-turn token's own text (e.g. `<|im_end|>`)."""
    if result.finish_reason != "eos" or not result.tokens:
        return result.text
    return result.text.removesuffix(tokenizer.decode(result.tokens[-1:]))
