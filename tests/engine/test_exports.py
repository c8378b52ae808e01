"""The exports registry on the tiny model: token ranges, K/V out and in, names, scopes."""

from __future__ import annotations

import pytest
import torch

from asynclm.engine.engine import Engine

pytestmark = pytest.mark.anyio


def _tokens(n: int, seed: int) -> list[int]:
    return torch.randint(100, 40000, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


async def _save(engine: Engine, name: str, tokens: list[int], *, start: int = 0) -> None:
    async with engine.context() as ctx:
        ctx.append(tokens)
        await ctx.flush()
        ctx.save(name, start=start)


async def test_a_saved_token_range_continues_its_parent_exactly(engine: Engine) -> None:
    head, body, tail = _tokens(10, 1), _tokens(13, 2), _tokens(5, 3)  # pages of 4: 10 splits one
    await _save(engine, "head", head)
    await _save(engine, "body", head + body, start=len(head))
    body_export = engine.exports.open("body")
    assert body_export.tokens == tuple(body) and body_export.positions == tuple(range(10, 23))
    async with engine.context() as ctx:
        ctx.attach("head", "body")  # the chain, entry by entry
        cached = await ctx.forward(tail)
    async with engine.context() as ref:
        full = await ref.forward(head + body + tail)
    assert (cached - full[-len(tail) :]).abs().max().item() < 1e-4
    engine.drop_export("head")
    engine.drop_export("body")
    assert engine.pool.num_used == 0


async def test_export_kv_copies_only_the_range_and_import_restores_it(engine: Engine) -> None:
    tokens = _tokens(30, 4)
    await _save(engine, "all", tokens)
    _, _, whole = engine.exports.export_kv("all")
    part_tokens, part_positions, part = engine.exports.export_kv("all", start=7, end=19)
    assert part_tokens == tokens[7:19] and part_positions == list(range(7, 19))
    assert torch.equal(part, whole[:, :, 7:19])
    engine.exports.import_kv("copy", *engine.exports.export_kv("all"))
    async with engine.context() as a, engine.context() as b:
        a.attach("all")
        b.attach("copy")
        assert a.slots != b.slots  # own pages, same K/V
        assert torch.equal(await a.forward([42]), await b.forward([42]))
    with pytest.raises(ValueError, match="does not fit"):
        engine.exports.import_kv("bad", tokens[:3], [0, 1, 2], part)
    with pytest.raises(ValueError, match="exists"):
        engine.exports.import_kv("copy", part_tokens, part_positions, part)
    for name in ("all", "copy"):
        engine.exports.drop(name)
    assert engine.pool.num_used == 0 and len(engine.exports) == 0


async def test_names_are_scoped_and_overwriting_is_explicit(engine: Engine) -> None:
    await _save(engine, "manual", _tokens(6, 5))
    scope = engine.scope("job", shared=["manual"])
    async with engine.context(scope) as ctx:
        ctx.attach("manual")  # shared with the scope
        ctx.save("mine")
        with pytest.raises(ValueError, match="overwrite=True"):
            ctx.save("mine")
        ctx.save("mine", start=2, overwrite=True)
    assert engine.exports.names(scope) == ["manual", "mine"]
    assert engine.exports.names() == ["manual"]
    assert engine.exports.open("mine", scope).num_tokens == 4
    with pytest.raises(KeyError, match="visible"):
        engine.exports.open("mine")
    engine.exports.drop_scope(scope)
    assert engine.exports.names(scope) == ["manual"]
    engine.exports.drop("manual")
    assert engine.pool.num_used == 0
