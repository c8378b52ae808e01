"""Bad input to the engine is a clear error at the call that made it, and changes nothing."""

from __future__ import annotations

import math
from typing import Any

import pytest

from asynclm.engine.engine import Engine
from asynclm.engine.loader import LoadedModel
from asynclm.engine.sampling import SEED_LIMIT, Sampler

pytestmark = pytest.mark.anyio

BAD_SAMPLERS: list[tuple[dict[str, Any], str]] = [
    ({"temperature": math.nan}, "temperature must be a finite number"),
    ({"temperature": math.inf}, "temperature must be a finite number"),
    ({"temperature": -0.1}, "temperature must be a finite number >= 0"),
    ({"temperature": "0.5"}, "temperature must be a number"),
    ({"temperature": True}, "temperature must be a number"),
    ({"top_k": 2.5}, "top_k must be an integer"),
    ({"top_k": 3.0}, "top_k must be an integer"),
    ({"top_k": True}, "top_k must be an integer"),
    ({"top_k": -1}, "top_k must be >= 0"),
    ({"top_p": math.nan}, "top_p must be a finite number in"),
    ({"top_p": 0.0}, "top_p must be a finite number in"),
    ({"top_p": 1.5}, "top_p must be a finite number in"),
    ({"min_p": 1.0}, "min_p must be a finite number in"),
    ({"min_p": -math.inf}, "min_p must be a finite number in"),
    ({"seed": -1}, "seed must be in"),
    ({"seed": SEED_LIMIT}, "seed must be in"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": "7"}, "seed must be an integer"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SAMPLERS)
def test_sampler_parameters_are_checked_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sampler(**kwargs)


def test_every_problem_of_a_sampler_is_reported_at_once() -> None:
    with pytest.raises(ValueError, match=r"temperature.*top_k.*seed"):
        Sampler(temperature=math.nan, top_k=0.5, seed=-3)  # type: ignore[arg-type]


def test_valid_extremes_are_accepted() -> None:
    Sampler(temperature=0, top_k=0, top_p=1.0, min_p=0.0, seed=0)
    Sampler(temperature=1e6, top_k=10**9, top_p=1e-9, min_p=0.999, seed=SEED_LIMIT - 1)


@pytest.fixture
def engine(tiny: LoadedModel) -> Engine:
    return Engine.from_loaded(tiny, num_pages=64, page_size=4)


@pytest.mark.parametrize(
    ("ban", "error", "message"),
    [
        ([-1], ValueError, "out of the vocabulary"),
        ([10**9], ValueError, "out of the vocabulary"),
        ([1.5], TypeError, "must be integers"),
        ([True], TypeError, "must be integers"),
        (["a"], TypeError, "must be integers"),
        ("abc", TypeError, "expected token ids"),
        (None, ValueError, "bans all"),  # replaced by the whole vocabulary below
    ],
)
async def test_a_bad_ban_list_is_an_error(
    engine: Engine, ban: Any, error: type, message: str
) -> None:
    if ban is None:
        ban = list(range(engine.config.vocab_size))
    async with engine.context() as ctx:
        ctx.append("hello")
        with pytest.raises(error, match=message):
            ctx.generate(ban=ban)
        assert ctx.num_tokens == 1 and ctx.num_cached == 0  # nothing happened


async def test_a_ban_list_may_leave_one_token(engine: Engine) -> None:
    async with engine.context() as ctx:
        ctx.append("hello")
        vocab = engine.config.vocab_size
        gen = ctx.generate(max_tokens=3, ban=list(range(1, vocab)), stop_at_eos=False)
        assert (await gen.collect()).tokens == (0, 0, 0)


@pytest.mark.parametrize(
    ("stop", "message"),
    [([1.5], "stop entries"), ([-2], "stop entries"), ([None], "stop entries"), ([10**9], "stop")],
)
async def test_bad_stop_entries_are_errors(engine: Engine, stop: list, message: str) -> None:
    async with engine.context() as ctx:
        ctx.append("hello")
        with pytest.raises(ValueError, match=message):
            ctx.generate(stop=stop)


@pytest.mark.parametrize("max_tokens", [-1, 1.5, "3", None])
async def test_bad_max_tokens_is_an_error(engine: Engine, max_tokens: Any) -> None:
    async with engine.context() as ctx:
        ctx.append("hello")
        with pytest.raises(ValueError, match="max_tokens must be an integer"):
            ctx.generate(max_tokens=max_tokens)


async def test_forward_of_no_tokens_is_a_clear_error(engine: Engine) -> None:
    async with engine.context() as ctx:
        ctx.append("pending")
        for empty in ([], (), range(0)):
            with pytest.raises(ValueError, match="forward\\(\\) needs a non-empty list"):
                await ctx.forward(empty)
        assert ctx.num_cached == 0 and ctx.num_tokens > 0  # nothing lost, nothing computed
        logits = await ctx.forward([5])
        assert logits.shape == (1, engine.config.vocab_size)


@pytest.mark.parametrize(
    ("tokens", "error"),
    [([1.0], TypeError), ([True], TypeError), (["x"], TypeError), ([-1], ValueError)],
)
async def test_bad_token_ids_are_errors_and_queue_nothing(
    engine: Engine, tokens: list, error: type
) -> None:
    async with engine.context() as ctx:
        with pytest.raises(error):
            ctx.append(tokens)
        with pytest.raises(TypeError, match="positions"):
            ctx.append([1], positions=[0.5])
        assert ctx.num_tokens == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kv_bytes": 0}, "less than one KV page"),
        ({"kv_bytes": -5}, "less than one KV page"),
        ({"kv_bytes": 10}, "less than one KV page"),
        ({"page_size": 0, "kv_bytes": 1 << 20}, "page_size must be >= 1"),
        ({"num_pages": 0}, "num_pages >= 1"),
    ],
)
def test_an_engine_without_room_for_one_page_is_an_error(
    tiny: LoadedModel, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Engine.from_loaded(tiny, **kwargs)
