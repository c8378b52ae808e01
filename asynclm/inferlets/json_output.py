"""Grammar-constrained JSON: the answer always parses and matches a JSON schema.

`runtime.grammar(json_schema=...)` compiles the schema (with xgrammar) into a constraint; at
every step `generate(constrain=...)` masks the tokens the grammar does not allow, so whatever the
model (even a random one) samples is valid JSON for the schema. The schema is passed to the
grammar as JSON text, which keeps its property order (the order the model writes keys in).

The JSON grammar allows any whitespace between tokens, and a weak model can spend all of
`max_tokens` on it; `compact=True` (the default) bans whitespace-only tokens, which keeps the
output short without changing what it means.

xgrammar (up to 0.2.x at least) compiles a string with `minLength`/`maxLength` to a character
class that admits raw control characters (mlc-ai/xgrammar#800), which strict JSON forbids; the
answer is therefore parsed with `strict=False`. A `pattern` bounds a string's length without
that flaw, which is why the default schema uses one.

Run:
    asynclm inferlet asynclm/inferlets/json_output.py --arg prompt='Describe a famous scientist.'
    asynclm inferlet asynclm/inferlets/json_output.py --arg prompt='Pick a colour.' --arg schema='{
        "type": "object", "properties": {"colour": {"enum": ["red", "blue"]}},
        "required": ["colour"]}'
"""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asynclm.engine.tokenizer import Tokenizer
    from asynclm.inferlet import Runtime

DEFAULT_SYSTEM = "You are a helpful assistant that replies only with JSON."
DEFAULT_PROMPT = "Describe a fictional person."
DEFAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Z][A-Za-z .'-]{0,31}$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "pattern": "^[A-Z][A-Za-z .'-]{0,31}$"},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}

_whitespace_cache: weakref.WeakKeyDictionary[Tokenizer, list[int]] = weakref.WeakKeyDictionary()


async def main(
    runtime: Runtime,
    prompt: str = DEFAULT_PROMPT,
    schema: dict[str, Any] | str | None = None,
    system: str = DEFAULT_SYSTEM,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int | None = None,
    compact: bool = True,
) -> Any:
    """Answer `prompt` with JSON that validates against `schema`.

    Args:
        runtime: the inferlet runtime.
        prompt: the user message.
        schema: a JSON schema, as a dict or JSON text (default: a small person object).
        system: the system message; the schema is appended to it.
        max_tokens: the most tokens to generate.
        temperature, seed: sampling settings (temperature 0 is greedy).
        compact: ban whitespace-only tokens (see the module docstring).

    Returns:
        The parsed JSON value.

    Raises:
        ValueError: the schema is not valid JSON, or the JSON was not finished within
            `max_tokens`.
    """
    schema_text = _schema_text(schema)
    grammar = runtime.grammar(json_schema=schema_text)
    ban = whitespace_tokens(runtime.tokenizer) if compact else None
    sampler = runtime.sampler(temperature=temperature, seed=seed)
    async with runtime.context() as ctx:
        ctx.system(f"{system}\nThe JSON must follow this schema: {schema_text}")
        ctx.user(prompt)
        ctx.assistant()
        generation = ctx.generate(sampler, max_tokens=max_tokens, constrain=grammar, ban=ban)
        result = await generation.collect()
    if result.finish_reason not in ("eos", "grammar"):
        raise ValueError(
            f"the JSON was not finished within max_tokens={max_tokens} "
            f"(finish reason {result.finish_reason!r}): {result.text!r}"
        )
    eos = set(runtime.tokenizer.eos_token_ids)
    text = runtime.tokenizer.decode([t for t in result.tokens if t not in eos])
    return json.loads(text, strict=False)  # see the module docstring on control characters


def _schema_text(schema: dict[str, Any] | str | None) -> str:
    """The schema as JSON text (property order kept)."""
    if schema is None:
        return json.dumps(DEFAULT_SCHEMA)
    if isinstance(schema, dict):
        return json.dumps(schema)
    try:
        json.loads(schema)
    except json.JSONDecodeError as e:
        raise ValueError(f"schema is not valid JSON: {e}") from None
    return schema


def whitespace_tokens(tokenizer: Tokenizer) -> list[int]:
    """Ids of the tokens that decode to whitespace only (computed once per tokenizer)."""
    if tokenizer not in _whitespace_cache:
        texts = tokenizer.hf.batch_decode([[i] for i in range(tokenizer.vocab_size)])
        _whitespace_cache[tokenizer] = [i for i, t in enumerate(texts) if t and t.isspace()]
    return _whitespace_cache[tokenizer]
