"""The example inferlets and the inferlet runtime (isolation, quotas, failures) on the tiny model.

The tiny model is random, so these tests check mechanics exactly (forks against sequential
runs, beam width 1 against greedy, tokens computed) rather than answer quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
import torch

import asynclm.inferlets
from asynclm.engine.engine import Engine
from asynclm.engine.generation import GenerationResult
from asynclm.engine.sampling import Sampler
from asynclm.inferlet import (
    InferletError,
    Namespace,
    Quota,
    QuotaExceededError,
    Runtime,
    load_inferlet,
    parse_cli_args,
    run_inferlet,
    run_many,
)
from asynclm.inferlets import json_output

pytestmark = pytest.mark.anyio

INFERLETS = Path(asynclm.inferlets.__file__).parent
SYSTEM = "You are a helpful assistant."
PROMPT = "Name a colour."
QUICK_ARGS: dict[str, dict[str, Any]] = {
    "completion": {"prompt": PROMPT, "max_tokens": 6},
    "parallel": {"prompt": PROMPT, "n": 3, "max_tokens": 6},
    "beam_search": {"prompt": PROMPT, "width": 3, "max_tokens": 6},
    "best_of_n": {"prompt": PROMPT, "n": 3, "max_tokens": 6},
    "prefix_reuse": {"max_tokens": 6},
    "json_output": {"temperature": 1.0, "seed": 0},
}


async def run(engine: Engine, name: str, **kwargs: Any) -> Any:
    """Run an example from its file; check it leaves no page behind and returns JSON data."""
    result = await run_inferlet(engine, INFERLETS / f"{name}.py", kwargs)
    assert engine.pool.num_used == 0
    json.dumps(result)
    return result


def chat_prompt(engine: Engine, prompt: str = PROMPT, system: str = SYSTEM) -> list[int]:
    ctx = engine.context()
    if system:
        ctx.system(system)
    ctx.user(prompt)
    ctx.assistant()
    tokens = ctx.tokens
    ctx.release()
    return tokens


async def generate_alone(
    engine: Engine, tokens: list[int], n: int, sampler: Sampler | None = None
) -> GenerationResult:
    async with engine.context() as ctx:
        ctx.append(tokens)
        return await ctx.generate(sampler, max_tokens=n).collect()


def without_eos(engine: Engine, tokens: tuple[int, ...] | list[int]) -> list[int]:
    return [t for t in tokens if t not in engine.tokenizer.eos_token_ids]


# ---- the examples ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(QUICK_ARGS))
async def test_every_example_runs_and_returns_json_data(engine: Engine, name: str) -> None:
    result = await run(engine, name, **QUICK_ARGS[name])
    assert isinstance(result, dict) and result
    assert engine.export_names() == []


async def test_completion_equals_a_plain_generation(engine: Engine) -> None:
    result = await run(engine, "completion", prompt=PROMPT, max_tokens=10)
    reference = await generate_alone(engine, chat_prompt(engine), 10)
    expected = engine.tokenizer.decode(without_eos(engine, reference.tokens))
    assert result["text"] == expected
    assert result["num_tokens"] == len(reference.tokens)
    assert result["finish_reason"] == reference.finish_reason


async def test_parallel_children_equal_sequential_generations(engine: Engine) -> None:
    result = await run(
        engine, "parallel", prompt=PROMPT, n=3, max_tokens=8, temperature=0.0, system=SYSTEM
    )
    assert engine.scheduler.stats.max_sequences >= 3  # the children really were batched
    reference = await generate_alone(engine, chat_prompt(engine), 8)
    expected = engine.tokenizer.decode(without_eos(engine, reference.tokens))
    assert result["answers"] == [expected] * 3
    opening = engine.tokenizer.encode(engine.tokenizer.chat.generation_prompt, special=True)
    assert result["prefix_tokens"] == len(chat_prompt(engine)) - len(opening)
    assert result["joined"].startswith("[1] ") and "\n\n[3] " in result["joined"]


async def test_parallel_seeded_children_equal_seeded_sequential_generations(engine: Engine) -> None:
    # A small top_k keeps the random model's flat distribution peaked enough that float noise
    # between batch shapes cannot flip a draw.
    result = await run(
        engine,
        "parallel",
        prompt=PROMPT,
        n=3,
        max_tokens=8,
        temperature=1.0,
        top_k=4,
        top_p=1.0,
        seed=5,
        system=SYSTEM,
    )
    tokens = chat_prompt(engine)
    for i, answer in enumerate(result["answers"]):
        reference = await generate_alone(engine, tokens, 8, Sampler(1.0, top_k=4, seed=5 + i))
        assert answer == engine.tokenizer.decode(without_eos(engine, reference.tokens))
    assert len(set(result["answers"])) > 1


async def test_beam_search_of_width_one_is_greedy(engine: Engine) -> None:
    result = await run(engine, "beam_search", prompt=PROMPT, width=1, max_tokens=10)
    reference = await generate_alone(engine, chat_prompt(engine), 10)
    assert result["tokens"] == without_eos(engine, reference.tokens)
    assert len(result["hypotheses"]) == 1


async def test_beam_search_scores_are_the_models_log_probabilities(engine: Engine) -> None:
    result = await run(
        engine, "beam_search", prompt=PROMPT, width=4, max_tokens=6, length_penalty=1.0
    )
    hypotheses = result["hypotheses"]
    scores = [h["score"] for h in hypotheses]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    assert len({tuple(h["tokens"]) for h in hypotheses}) == 4  # distinct beams
    assert result["tokens"] == hypotheses[0]["tokens"]
    for h in hypotheses:
        assert h["logprob"] == pytest.approx(await logprob_of(engine, h["tokens"]), abs=1e-3)
        assert h["score"] == pytest.approx(h["logprob"] / len(h["tokens"]))


async def logprob_of(engine: Engine, answer: list[int], prompt: list[int] | None = None) -> float:
    """Summed log-probability of `answer` after the chat prompt, from one fresh forward."""
    prompt = prompt or chat_prompt(engine)
    async with engine.context() as ctx:
        logits = await ctx.forward(prompt + answer)
    rows = torch.log_softmax(logits[len(prompt) - 1 : -1].float(), dim=-1)
    return float(rows[torch.arange(len(answer)), torch.tensor(answer)].sum())


async def test_best_of_n_picks_the_likeliest_seeded_sample(engine: Engine) -> None:
    args = {"prompt": PROMPT, "n": 3, "max_tokens": 6, "temperature": 1.0, "top_k": 4, "seed": 7}
    result = await run(engine, "best_of_n", **args)
    prompt = chat_prompt(engine)
    samples = result["samples"]
    for i, sample in enumerate(samples):  # each sample is what generate() draws with that seed
        reference = await generate_alone(engine, prompt, 6, Sampler(1.0, top_k=4, seed=7 + i))
        assert sample["text"] == engine.tokenizer.decode(without_eos(engine, reference.tokens))
        mean = await logprob_of(engine, list(reference.tokens), prompt) / len(reference.tokens)
        assert sample["mean_logprob"] == pytest.approx(mean, abs=1e-3)
    best = max(range(3), key=lambda i: samples[i]["mean_logprob"])
    assert result["best_index"] == best and result["best"] == samples[best]["text"]


async def test_prefix_reuse_computes_the_prefix_once(engine: Engine) -> None:
    questions = ["When was Voyager 1 launched?", "Who visited Neptune?", "What is it?"]
    before = engine.scheduler.stats.tokens
    result = await run(engine, "prefix_reuse", questions=questions, max_tokens=5)
    prefix = result["prefix_tokens"]
    assert prefix > 150  # a long document
    assert result["tokens_computed"] == engine.scheduler.stats.tokens - before
    assert prefix < result["tokens_computed"] < 2 * prefix  # the prefix was computed once
    assert result["tokens_reused"] == 3 * prefix
    assert result["tokens_without_reuse"] == result["tokens_computed"] + 2 * prefix
    from asynclm.inferlets import prefix_reuse

    document = prefix_reuse.DEFAULT_DOCUMENT
    for question, row in zip(questions, result["answers"], strict=True):  # same as no reuse
        ctx = engine.context()
        ctx.system(f"Answer questions about this document.\n\n{document}")
        ctx.user(question)
        ctx.assistant()
        reference = await ctx.generate(max_tokens=5).collect()
        ctx.release()
        assert row["answer"] == engine.tokenizer.decode(without_eos(engine, reference.tokens))


SCHEMAS = [
    json_output.DEFAULT_SCHEMA,
    {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "colour": {"enum": ["red", "green", "blue"]},
            "scores": {
                "type": "array",
                "items": {"type": "integer", "minimum": -9, "maximum": 9},
                "maxItems": 3,
            },
            "note": {"type": ["string", "null"], "maxLength": 8},
        },
        "required": ["ok", "colour", "scores", "note"],
        "additionalProperties": False,
    },
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["person", "mixed"])
async def test_json_output_always_validates(engine: Engine, schema: dict[str, Any]) -> None:
    for seed in range(4):  # sampled from a random model: only the grammar makes it valid
        value = await run_inferlet(  # in process: the example's vocabulary scan is cached
            engine,
            json_output.main,
            {"schema": schema, "temperature": 1.0, "seed": seed},
            isolation="in-process",
        )
        jsonschema.validate(value, schema)
        assert list(value) == list(schema["properties"])  # the schema's property order is kept
    assert engine.pool.num_used == 0


async def test_json_output_accepts_schema_text_and_reports_unfinished_json(engine: Engine) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["n"],
    }
    value = await run_inferlet(engine, json_output.main, {"schema": json.dumps(schema)})
    jsonschema.validate(value, schema)
    with pytest.raises(ValueError, match="not finished within max_tokens=2"):
        await run_inferlet(engine, json_output.main, {"max_tokens": 2})
    with pytest.raises(ValueError, match="schema is not valid JSON"):
        await run_inferlet(engine, json_output.main, {"schema": "{not json"})
    assert engine.pool.num_used == 0


# ---- isolation -------------------------------------------------------------------------------
async def _save(runtime: Runtime, name: str = "secret") -> list[str]:
    async with runtime.context() as ctx:
        ctx.append("a private prefix of this inferlet")
        await ctx.flush()
        ctx.save(name)
    return runtime.exports()


async def _open_and_generate(runtime: Runtime, name: str = "secret") -> str:
    async with runtime.open(name) as ctx:
        ctx.append(" and more")
        return await ctx.generate(max_tokens=3, stop_at_eos=False).collect_text()


async def test_an_inferlet_cannot_open_another_inferlets_export(engine: Engine) -> None:
    owner = Namespace("owner")
    assert await run_inferlet(engine, _save, name="owner", namespace=owner) == ["secret"]
    assert engine.export_names() == []  # not in the root scope either
    for name in ("intruder", "owner"):  # the same name is not the same namespace
        with pytest.raises(KeyError, match="no export named 'secret' is visible here"):
            await run_inferlet(engine, _open_and_generate, name=name)
    with pytest.raises(KeyError, match="no export named 'secret' is visible here"):
        await run_inferlet(engine, _open_and_generate, name="intruder", shared=["secret"])
    text = await run_inferlet(engine, _open_and_generate, name="heir", namespace=owner)
    assert isinstance(text, str)  # given the namespace explicitly, it sees the export
    engine.drop_scope_exports(engine.scope("owner", namespace=owner))
    assert engine.pool.num_used == 0


async def test_an_inferlet_opens_an_export_shared_with_it(engine: Engine) -> None:
    async with engine.context() as ctx:
        ctx.append("a prefix the host shares")
        await ctx.flush()
        ctx.save("manual")
    text = await run_inferlet(engine, _open_and_generate, {"name": "manual"}, shared=["manual"])
    assert isinstance(text, str) and text
    assert await run_inferlet(engine, _list_exports, shared=["manual"]) == ["manual"]
    assert await run_inferlet(engine, _list_exports) == []
    with pytest.raises(KeyError, match="'manual'"):
        await run_inferlet(engine, _open_and_generate, {"name": "manual"})
    assert engine.export_names() == ["manual"]  # an inferlet's clean-up keeps shared exports
    engine.drop_export("manual")
    assert engine.pool.num_used == 0


async def _list_exports(runtime: Runtime) -> list[str]:
    return runtime.exports()


async def test_exports_of_an_inferlet_are_dropped_when_it_ends(engine: Engine) -> None:
    assert await run_inferlet(engine, _save, name="short-lived") == ["secret"]
    assert len(engine.exports) == 0
    assert engine.pool.num_used == 0


# ---- quotas ----------------------------------------------------------------------------------
async def _generate_forever(runtime: Runtime) -> None:
    async with runtime.context() as ctx:
        ctx.user(PROMPT)
        ctx.assistant()
        await ctx.generate(max_tokens=100_000, stop_at_eos=False).collect()


@pytest.mark.parametrize(
    ("quota", "message"),
    [
        (Quota(max_pages=3), "page quota of 3 exceeded"),
        (Quota(max_tokens=40), "token quota of 40 exceeded"),
        (Quota(max_seconds=0.3), "wall-time quota of 0.3 s exceeded"),
    ],
    ids=["pages", "tokens", "seconds"],
)
async def test_quotas_end_an_inferlet_with_a_clear_error(
    engine: Engine, quota: Quota, message: str
) -> None:
    with anyio.fail_after(30), pytest.raises(QuotaExceededError, match=message):
        await run_inferlet(engine, _generate_forever, quota=quota)
    assert engine.pool.num_used == 0


async def test_quota_applies_to_the_examples_too(engine: Engine) -> None:
    # Children in a task group that hit the quota in the same batch fail together: the error
    # may come wrapped in an exception group.
    with pytest.raises(Exception) as info:  # the leaves are checked below
        await run_inferlet(
            engine,
            INFERLETS / "parallel.py",
            {"n": 4, "max_tokens": 32},
            quota=Quota(max_tokens=60),
        )
    errors = _leaves(info.value)
    assert errors and all(isinstance(e, QuotaExceededError) for e in errors)
    assert "token quota of 60 exceeded" in str(errors[0])
    assert engine.pool.num_used == 0


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or the error itself."""
    inner = getattr(error, "exceptions", None)  # an ExceptionGroup (builtin from Python 3.11)
    if inner is None:
        return [error]
    return [leaf for e in inner for leaf in _leaves(e)]


# ---- failures beside others ------------------------------------------------------------------
async def _fail_midway(runtime: Runtime) -> None:
    async with runtime.context() as ctx:
        ctx.user(PROMPT)
        ctx.assistant()
        async for step in ctx.generate(max_tokens=50, stop_at_eos=False):
            if step.index == 3:
                raise RuntimeError("boom in the middle of a generation")


async def test_run_many_reports_a_failure_and_finishes_the_others(engine: Engine) -> None:
    completion = (INFERLETS / "completion.py", {"prompt": PROMPT, "max_tokens": 12})
    parallel = (
        INFERLETS / "parallel.py",
        {"prompt": PROMPT, "n": 2, "max_tokens": 10, "temperature": 0.0},
    )
    results = await run_many(engine, [completion, (_fail_midway, {}), parallel])
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, RuntimeError) and "boom" in str(results[1].error)
    assert engine.scheduler.stats.max_sequences > 1  # they really ran side by side
    assert engine.pool.num_used == 0
    assert results[0].value == await run(engine, "completion", **completion[1])
    assert results[2].value == await run(engine, "parallel", **parallel[1])


# ---- loading and arguments -------------------------------------------------------------------
def test_load_inferlet_errors(tmp_path: Path) -> None:
    with pytest.raises(InferletError, match="no inferlet file"):
        load_inferlet(tmp_path / "missing.py")
    no_main = tmp_path / "no_main.py"
    no_main.write_text("x = 1\n")
    with pytest.raises(InferletError, match="must define `async def main"):
        load_inferlet(no_main)
    sync_main = tmp_path / "sync_main.py"
    sync_main.write_text("def main(runtime):\n    return 1\n")
    with pytest.raises(InferletError, match="must define `async def main"):
        load_inferlet(sync_main)
    assert load_inferlet("asynclm.inferlets.completion").__name__ == "main"
    for name in QUICK_ARGS:
        assert load_inferlet(INFERLETS / f"{name}.py").__doc__


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["prompt=hello world", "n=3"], {"prompt": "hello world", "n": 3}),
        (["t=0.5", "flag=True", "seed=None"], {"t": 0.5, "flag": True, "seed": None}),
        (["q=['a', 'b']", "s='3'"], {"q": ["a", "b"], "s": "3"}),
        (['schema={"type": "object"}'], {"schema": {"type": "object"}}),
        (['schema={"x": true}', "empty="], {"schema": '{"x": true}', "empty": ""}),
        (["expr=1+", "eq=a=b"], {"expr": "1+", "eq": "a=b"}),
    ],
)
def test_parse_cli_args(pairs: list[str], expected: dict[str, Any]) -> None:
    assert parse_cli_args(pairs) == expected


@pytest.mark.parametrize("bad", ["novalue", "1x=2", "=3", "a-b=1"])
def test_parse_cli_args_rejects_bad_pairs(bad: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_cli_args([bad])


# ---- the real model --------------------------------------------------------------------------
@pytest.mark.real_model
async def test_examples_on_the_real_model() -> None:
    engine = Engine.load()
    few = {
        "completion": {"max_tokens": 12},
        "parallel": {"n": 3, "max_tokens": 10},
        "beam_search": {"width": 3, "max_tokens": 10},
        "best_of_n": {"n": 3, "max_tokens": 10},
        "prefix_reuse": {"max_tokens": 12},
        "json_output": {"max_tokens": 48},
    }
    for name, args in few.items():
        with anyio.fail_after(120):
            result = await run(engine, name, **args)
        print(f"{name}: {json.dumps(result)[:400]}")
    person = await run(engine, "json_output", max_tokens=48)
    jsonschema.validate(person, json_output.DEFAULT_SCHEMA)
