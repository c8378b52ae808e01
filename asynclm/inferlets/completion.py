"""Plain chat completion: a system turn, a user turn and one generated assistant turn.

The smallest useful inferlet: fill a context with chat roles, open an assistant turn, generate
with a sampler (greedy by default) and return the answer.

Run:
    asynclm inferlet asynclm/inferlets/completion.py --arg prompt='What is the capital of France?'
    asynclm inferlet asynclm/inferlets/completion.py --arg prompt='Tell me a joke.' \
        --arg temperature=0.8 --arg top_p=0.95 --arg seed=1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asynclm.engine.generation import GenerationResult
    from asynclm.engine.tokenizer import Tokenizer
    from asynclm.inferlet import Runtime

DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_PROMPT = "What is the capital of France?"


async def main(
    runtime: Runtime,
    prompt: str = DEFAULT_PROMPT,
    system: str = DEFAULT_SYSTEM,
    max_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    seed: int | None = None,
) -> dict[str, Any]:
    """Answer `prompt` in one assistant turn.

    Args:
        runtime: the inferlet runtime.
        prompt: the user message.
        system: the system message ("" for none).
        max_tokens: the most tokens to generate.
        temperature, top_k, top_p, min_p, seed: sampling settings (temperature 0 is greedy).

    Returns:
        `{"text", "num_tokens", "finish_reason"}`.
    """
    sampler = runtime.sampler(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed
    )
    async with runtime.context() as ctx:
        if system:
            ctx.system(system)
        ctx.user(prompt)
        ctx.assistant()
        result = await ctx.generate(sampler, max_tokens=max_tokens).collect()
    return {
        "text": answer_text(runtime.tokenizer, result),
        "num_tokens": len(result.tokens),
        "finish_reason": result.finish_reason,
    }


def answer_text(tokenizer: Tokenizer, result: GenerationResult) -> str:
    """The generated text without the end-of-turn token's own text (e.g. `<|im_end|>`)."""
    if result.finish_reason != "eos" or not result.tokens:
        return result.text
    return result.text.removesuffix(tokenizer.decode(result.tokens[-1:]))
