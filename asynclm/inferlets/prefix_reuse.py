"""Prefix reuse: compute a long shared prefix once, save it, answer many questions from it.

The document goes into a system turn that is computed once and exported with `ctx.save(name)`.
Every question then starts from `runtime.open(name)`: a new context whose first pages are the
export's (shared, nothing recomputed), so each question costs only its own tokens. The questions
are answered concurrently. The result reports the tokens computed against those reused.

Run:
    asynclm inferlet asynclm/inferlets/prefix_reuse.py
    asynclm inferlet asynclm/inferlets/prefix_reuse.py --arg document="$(cat notes.txt)" \
        --arg questions="['Who wrote it?', 'When?']"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from asynclm.engine.generation import GenerationResult
    from asynclm.engine.tokenizer import Tokenizer
    from asynclm.inferlet import Runtime

DEFAULT_DOCUMENT = (
    "The Voyager program consists of two space probes, Voyager 1 and Voyager 2, launched by "
    "NASA in 1977 to study the outer Solar System. Voyager 2 launched first, on August 20, "
    "and Voyager 1 followed on September 5, on a faster trajectory. Voyager 1 flew past "
    "Jupiter in 1979 and Saturn in 1980, where it studied the moon Titan; it crossed the "
    "heliopause into interstellar space in August 2012. Voyager 2 is the only spacecraft to "
    "have visited Uranus (1986) and Neptune (1989). Each probe carries a Golden Record, a "
    "phonograph record with sounds and images of life on Earth, in case it is ever found. The "
    "probes are powered by radioisotope thermoelectric generators whose output falls by about "
    "four watts a year, so instruments are switched off one by one to save power."
)
DEFAULT_QUESTIONS = (
    "When was Voyager 1 launched?",
    "Which planets did only Voyager 2 visit?",
    "What is the Golden Record?",
)


async def main(
    runtime: Runtime,
    document: str = DEFAULT_DOCUMENT,
    questions: list[str] | tuple[str, ...] | str = DEFAULT_QUESTIONS,
    max_tokens: int = 32,
    name: str = "document",
) -> dict[str, Any]:
    """Answer `questions` about `document`, computing the document's tokens only once.

    Args:
        runtime: the inferlet runtime.
        document: the long shared text.
        questions: one question or a list of them.
        max_tokens: the most tokens per answer.
        name: the export name of the saved prefix (private to this inferlet).

    Returns:
        `{"answers": [{"question", "answer"}, ...], "prefix_tokens", "tokens_computed",
        "tokens_reused", "tokens_without_reuse"}`.
    """
    questions = [questions] if isinstance(questions, str) else list(questions)
    if not questions:
        raise ValueError("give at least one question")
    prefix_tokens = await _save_prefix(runtime, document, name)
    answers = [""] * len(questions)
    try:
        async with anyio.create_task_group() as tg:
            for i, question in enumerate(questions):
                tg.start_soon(_answer, runtime, name, question, max_tokens, answers, i)
    finally:
        runtime.drop_export(name)
    computed = runtime.tokens_used
    reused = prefix_tokens * len(questions)
    return {
        "answers": [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)],
        "prefix_tokens": prefix_tokens,
        "tokens_computed": computed,
        "tokens_reused": reused,
        "tokens_without_reuse": computed - prefix_tokens + reused,
    }


async def _save_prefix(runtime: Runtime, document: str, name: str) -> int:
    """Compute the document turn once and export it as `name`; returns its token count."""
    async with runtime.context() as ctx:
        ctx.system(f"Answer questions about this document.\n\n{document}")
        await ctx.flush()
        ctx.save(name, overwrite=True)
        return ctx.num_tokens


async def _answer(
    runtime: Runtime, name: str, question: str, max_tokens: int, answers: list[str], i: int
) -> None:
    async with runtime.open(name) as ctx:  # starts with the prefix's pages: nothing recomputed
        ctx.user(question)
        ctx.assistant()
        result = await ctx.generate(max_tokens=max_tokens).collect()
    answers[i] = _answer_text(runtime.tokenizer, result)


def _answer_text(tokenizer: Tokenizer, result: GenerationResult) -> str:
    """The generated text without the end-of-turn token's own text (e.g. `<|im_end|>`)."""
    if result.finish_reason != "eos" or not result.tokens:
        return result.text
    return result.text.removesuffix(tokenizer.decode(result.tokens[-1:]))
