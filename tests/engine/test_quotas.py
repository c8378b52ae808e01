"""A scope's quotas hold whatever its code does: random forks, writes, exports and releases.

The invariant checked after every operation: the pages the pool lent out since the scope began
never pass its page quota, and the scope's count is exactly what its end gives back.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asynclm.engine.context import Context
from asynclm.engine.engine import Engine
from asynclm.engine.loader import LoadedModel
from asynclm.engine.pages import PoolExhaustedError
from asynclm.engine.scope import Namespace, Quota, QuotaExceededError, Scope

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["new", "fork", "write", "save", "drop", "release", "attach", "truncate", "open"]
        ),
        st.integers(0, 7),
        st.integers(1, 9),
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def engine(tiny: LoadedModel) -> Engine:
    return Engine.from_loaded(tiny, num_pages=64, page_size=4)


class Player:
    """Plays random operations in one quota'd scope."""

    def __init__(self, engine: Engine, scope: Scope) -> None:
        self.engine, self.scope = engine, scope
        self.contexts: list[Context] = []
        self.saved = 0

    def pick(self, i: int) -> Context | None:
        live = [c for c in self.contexts if not c.is_released]
        return live[i % len(live)] if live else None

    async def play(self, op: str, i: int, n: int) -> None:
        ctx = self.pick(i)
        if op == "new" or ctx is None:
            self.contexts.append(self.engine.context(self.scope))
        elif op == "fork":
            self.contexts.append(ctx.fork())
        elif op == "write":
            ctx.append(list(range(10, 10 + n)))
            await ctx.flush()
        elif op == "save" and ctx.num_cached:
            await ctx.flush()
            ctx.save(f"e{self.saved}", start=n % (ctx.num_cached + 1))
            self.saved += 1
        elif op == "drop" and self.engine.exports.names(self.scope):
            names = self.engine.exports.names(self.scope)
            self.engine.exports.drop(names[i % len(names)], self.scope)
        elif op == "release":
            ctx.release()
        elif op in ("attach", "open") and self.engine.exports.names(self.scope):
            names = self.engine.exports.names(self.scope)
            await ctx.flush()
            if op == "attach":
                ctx.attach(names[i % len(names)])
            else:
                self.contexts.append(Context.open(self.engine, names[i % len(names)], self.scope))
        elif op == "truncate":
            ctx.truncate(ctx.num_tokens // 2)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, max_pages=st.integers(0, 12), max_contexts=st.integers(1, 6))
def test_no_sequence_of_operations_passes_the_page_or_context_quota(
    engine: Engine, ops: list[tuple[str, int, int]], max_pages: int, max_contexts: int
) -> None:
    base = engine.pool.num_used
    quota = Quota(max_pages=max_pages, max_contexts=max_contexts)
    scope = engine.scope("random", quota)
    player = Player(engine, scope)

    async def play_all() -> None:
        for op, i, n in ops:
            with contextlib.suppress(QuotaExceededError, ValueError):  # refused: nothing leaks
                await player.play(op, i, n)
            lent = engine.pool.num_used - base
            assert lent <= max_pages, (op, lent, max_pages)
            assert scope.pages_in_use <= max_pages
            assert lent <= scope.pages_in_use
            assert scope.num_contexts <= max_contexts

    anyio.run(play_all)
    scope.release_all(engine.pool)
    engine.drop_scope_exports(scope)
    assert engine.pool.num_used == base and scope.pages_in_use == 0


@pytest.mark.anyio
async def test_forks_cost_no_page_until_they_write(engine: Engine) -> None:
    scope = engine.scope("forks", Quota(max_pages=4))
    ctx = engine.context(scope)
    ctx.append(list(range(10, 22)))  # 3 full pages
    await ctx.flush()
    forks = [ctx.fork() for _ in range(100)]  # pages shared: nothing new
    assert scope.pages_in_use == 3
    forks[0].append([1])
    await forks[0].flush()  # one fresh page
    with pytest.raises(QuotaExceededError, match="page quota of 4 exceeded"):
        forks[1].append([1])
        await forks[1].flush()
    scope.release_all(engine.pool)
    assert engine.pool.num_used == 0


@pytest.mark.anyio
async def test_exports_keep_counting_after_their_context_is_released(engine: Engine) -> None:
    scope = engine.scope("exports", Quota(max_pages=5))
    for k in range(2):
        async with engine.context(scope) as ctx:
            ctx.append(list(range(10 + k, 18 + k)))  # 2 pages each
            await ctx.flush()
            ctx.save(f"doc{k}")
    assert scope.pages_in_use == 4  # the contexts are gone; their exports hold the pages
    with pytest.raises(QuotaExceededError, match="page quota of 5"):
        async with engine.context(scope) as ctx:
            ctx.append(list(range(50, 58)))
            await ctx.flush()
    engine.drop_export("doc0", scope)
    assert scope.pages_in_use == 2
    engine.drop_scope_exports(scope)
    assert engine.pool.num_used == 0


def test_a_namespace_is_an_identity_not_a_name(engine: Engine) -> None:
    first, second = engine.scope("same"), engine.scope("same")
    assert first.namespace != second.namespace
    assert engine.scope("other", namespace=first.namespace).namespace is first.namespace
    with pytest.raises(ValueError, match="export name"):
        first.export_key("")
    assert Namespace("x").id != Namespace("x").id


@pytest.mark.anyio
async def test_the_context_quota_counts_forks(engine: Engine) -> None:
    scope = engine.scope("few", Quota(max_contexts=2))
    ctx = engine.context(scope)
    ctx.append([1, 2, 3])
    await ctx.flush()
    child = ctx.fork()
    used = engine.pool.num_used
    with pytest.raises(QuotaExceededError, match="context quota of 2"):
        ctx.fork()
    with pytest.raises(QuotaExceededError, match="context quota of 2"):
        engine.context(scope)
    assert engine.pool.num_used == used  # a refused fork shares nothing
    child.release()
    ctx.fork().release()  # room again
    scope.release_all(engine.pool)
    assert engine.pool.num_used == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_pages": -1}, {"max_tokens": 1.5}, {"max_seconds": 0}, {"max_contexts": True}],
)
def test_quota_values_are_checked(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Quota(**kwargs)


def test_pool_exhaustion_is_not_a_quota_problem(engine: Engine) -> None:
    assert not issubclass(PoolExhaustedError, QuotaExceededError)
