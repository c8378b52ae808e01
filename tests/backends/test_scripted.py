"""The scripted model on the real engine: its pacing and the decode path it takes."""

from __future__ import annotations

import anyio
from torch import Tensor

from asynclm.backends.scripted import ScriptedModel, Timing, replay
from asynclm.engine.engine import Engine
from asynclm.engine.kv_cache import KVCache
from asynclm.engine.loader import default_tokenizer
from asynclm.engine.model import BatchMeta


class _Recording(ScriptedModel):
    """Notes how many keys each single-token step attended through the decode group."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decode_keys: list[int] = []
        self.one_token_steps = 0

    def __call__(self, tokens: Tensor, positions: Tensor, batch: BatchMeta, kv: KVCache) -> Tensor:
        if tokens.numel() == 1:
            self.one_token_steps += 1
            if batch.decode is not None:
                self.decode_keys.append(int(batch.decode.kv_index.shape[1]))
        return super().__call__(tokens, positions, batch, kv)


async def _generate(engine: Engine, prompt: str, max_tokens: int) -> str:
    async with engine.context() as ctx:
        ctx.user(prompt)
        ctx.assistant()
        return (await ctx.generate(max_tokens=max_tokens).collect()).text


def test_long_contexts_decode_through_the_decode_group_and_replay_right() -> None:
    tok = default_tokenizer()
    script = "one two three four five"
    model = _Recording(tok, replay(script))
    engine = Engine(model, tok, name="scripted", num_pages=4096)
    prompt = "word " * 1500  # longer than the engine's limit for gathered decode keys

    text = anyio.run(_generate, engine, prompt, 64)

    assert text == script
    assert model.one_token_steps > 3
    assert len(model.decode_keys) == model.one_token_steps  # every decode step, any length
    assert min(model.decode_keys) > 1500


def test_every_forward_takes_at_least_its_simulated_time() -> None:
    tok = default_tokenizer()
    timing = Timing(step_s=0.004, prefill_token_s=0.0005)
    engine = Engine(ScriptedModel(tok, replay("a b c d e f g h"), timing=timing), tok)
    runner = engine.scheduler.runner
    execute = runner.execute
    early: list[float] = []  # per forward: its seconds minus its simulated time (one row)

    def timed(batch):  # the runner's own measure of each forward
        logits, seconds = execute(batch)
        early.append(seconds - timing.seconds(batch.num_tokens, 1))
        return logits, seconds

    runner.execute = timed  # type: ignore[method-assign]
    text = anyio.run(_generate, engine, "hello there", 32)

    assert text == "a b c d e f g h"
    assert len(early) >= 8  # the prompt's prefill, then one step per token
    assert min(early) >= 0.0  # paced to the deadline, never shorter


def test_pacing_never_sleeps_a_negative_time_near_the_deadline() -> None:
    """Deadlines at and around the awake stretch's edge, where a second clock read would make
    the sleep negative: none may fail, none may return early."""
    import time

    from asynclm.backends import scripted

    for offset in [scripted._SPIN_S + d for d in (-2e-6, -1e-6, 0.0, 1e-6, 2e-6)] * 200:
        deadline = time.perf_counter() + offset
        scripted._pace(deadline)
        assert time.perf_counter() >= deadline
