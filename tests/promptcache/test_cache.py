"""PromptCache and ModuleStore on the tiny model: exactness, reuse, the store, errors, cleanup."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import torch

from asynclm.engine.context import Context
from asynclm.engine.engine import Engine
from asynclm.engine.loader import LoadedModel, load_model
from asynclm.engine.pages import PoolExhaustedError
from asynclm.engine.policy import BatchPolicy
from asynclm.promptcache import (
    Encoding,
    Module,
    ModuleStoreWarning,
    Parameter,
    PMLError,
    Prompt,
    PromptCache,
    Schema,
    Select,
    System,
    Union,
    User,
)

pytestmark = pytest.mark.anyio

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_model("tiny")


@pytest.fixture
def engine(tiny: LoadedModel) -> Iterator[Engine]:
    engine = Engine.from_loaded(tiny, num_pages=1024, page_size=4, max_batch_tokens=64)
    yield engine
    assert engine.scheduler.num_pending == 0


def travel(
    encoding: Encoding = "modular", paris: str = "Paris is the capital of France."
) -> Schema:
    return Schema(
        "travel",
        [
            System("You are a travel agent. Answer briefly."),
            Module("tools", "Tools: search(query) finds places; book(hotel, nights) books."),
            Union(
                [
                    Module("doc-paris", paris),
                    Module("doc-tokyo", "Tokyo is the capital of Japan, known for sushi."),
                ]
            ),
            Module("trip", ["Plan a trip of ", Parameter("days", 4), " days in spring."]),
        ],
        encoding=encoding,
    )


def ask(*selections: Select, question: str = "What should I see first?") -> Prompt:
    return Prompt("travel", selections, [User(question)])


TOKYO_TRIP = ask(Select("tools"), Select("doc-tokyo"), Select("trip", {"days": "3"}))


async def prompt_logits(ctx: Context) -> torch.Tensor:
    """Logits of the context's pending tokens (computes them)."""
    n = ctx.num_cached
    pending, positions = ctx.tokens[n:], ctx.positions[n:]
    ctx.truncate(n)
    return await ctx.forward(pending, positions)


async def greedy(ctx: Context, n: int = 8) -> tuple[int, ...]:
    return (await ctx.generate(max_tokens=n, stop_at_eos=False).collect()).tokens


async def full_prefill(engine: Engine, tokens: list[int], positions: list[int]) -> torch.Tensor:
    async with engine.context() as ref:
        return await ref.forward(tokens, positions)


async def full_greedy(engine: Engine, tokens: list[int], positions: list[int]) -> tuple[int, ...]:
    async with engine.context() as ref:
        ref.append(tokens, positions)
        return await greedy(ref)


async def cached_logits(cache: PromptCache, prompt: Prompt) -> torch.Tensor:
    async with await cache.context(prompt) as ctx:
        return await prompt_logits(ctx)


async def cached_greedy(cache: PromptCache, prompt: Prompt) -> tuple[int, ...]:
    async with await cache.context(prompt) as ctx:
        return await greedy(ctx)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---- exactness -------------------------------------------------------------------------------


async def test_prefix_mode_equals_a_full_prefill(engine: Engine) -> None:
    cache = PromptCache(engine)
    cache.register(travel("prefix"))
    tokens, positions = cache.plan(TOKYO_TRIP).flatten()
    full = await full_prefill(engine, tokens, positions)
    reference = await full_greedy(engine, tokens, positions)
    async with await cache.context(TOKYO_TRIP) as ctx:
        assert ctx.tokens == tokens and ctx.positions == positions
        assert ctx.next_position == max(positions) + 1
        cold = await prompt_logits(ctx)
    assert cache.stats.misses == 4 and cache.stats.hits == 0  # schema text, tools, doc, trip
    warm = await cached_logits(cache, TOKYO_TRIP)
    assert cache.stats.hits == 4 and cache.stats.computed_tokens == cache.stats.reused_tokens
    n = len(cold)
    assert max_diff(cold, full[-n:]) < TOL and max_diff(warm, full[-n:]) < TOL
    assert await cached_greedy(cache, TOKYO_TRIP) == reference


async def test_prefix_mode_attaches_the_longest_cached_chain(engine: Engine) -> None:
    cache = PromptCache(engine)
    cache.register(travel("prefix"))
    await cached_logits(cache, ask(Select("tools"), Select("doc-paris")))
    before = cache.stats
    prompt = ask(Select("tools"), Select("doc-tokyo"))
    logits = await cached_logits(cache, prompt)
    assert cache.stats.hits - before.hits == 2  # schema text and tools reused
    assert cache.stats.misses - before.misses == 1  # doc-tokyo follows tools: computed
    full = await full_prefill(engine, *cache.plan(prompt).flatten())
    assert max_diff(logits, full[-len(logits) :]) < TOL


async def test_modular_mode_equals_modules_computed_alone(engine: Engine) -> None:
    cache = PromptCache(engine)
    cache.register(travel("modular"))
    plan = cache.plan(TOKYO_TRIP)
    names = []
    for i, segment in enumerate(s for s in plan.modules if s.tokens):
        async with engine.context() as alone:
            alone.append(segment.tokens, segment.positions)
            await alone.flush()
            alone.save(f"ref-{i}")
        names.append(f"ref-{i}")
    rest = [*plan.parameters, *plan.text]
    tail = [t for s in rest for t in s.tokens], [p for s in rest for p in s.positions]
    async with engine.context() as ref:
        for name in names:
            ref.attach(name)
        expected = await ref.forward(*tail)
    async with engine.context() as ref:
        for name in names:
            ref.attach(name)
        ref.append(*tail)
        expected_tokens = await greedy(ref)
    for name in names:
        engine.drop_export(name)
    assert max_diff(await cached_logits(cache, TOKYO_TRIP), expected) < TOL
    assert await cached_greedy(cache, TOKYO_TRIP) == expected_tokens
    assert cache.stats.misses == 4 and cache.stats.hits == 4


async def test_modular_union_members_share_their_start_and_reuse_the_rest(engine: Engine) -> None:
    cache = PromptCache(engine)
    layout = cache.register(travel("modular"))
    paris, tokyo = layout.module(["doc-paris"]), layout.module(["doc-tokyo"])
    assert paris.start == tokyo.start
    for doc in (paris, tokyo):
        async with await cache.context(ask(Select("tools"), Select(doc.path[0]))) as ctx:
            at = dict(zip(ctx.positions, ctx.tokens, strict=True))
            assert [at[p] for p in doc.positions] == list(doc.tokens)
    assert cache.stats.hits == 2 and cache.stats.misses == 4  # schema text and tools reused
    with pytest.raises(PMLError, match="union"):
        await cache.context(ask(Select("doc-paris"), Select("doc-tokyo")))


async def test_parameters_fill_their_slots_and_generation_follows_the_text(engine: Engine) -> None:
    cache = PromptCache(engine)
    layout = cache.register(travel("modular"))
    slot = layout.module(["trip"]).parameter("days")
    assert slot is not None
    value = engine.tokenizer.encode("12")
    async with await cache.context(ask(Select("trip", {"days": "12"}))) as ctx:
        start = ctx.num_cached
        assert ctx.tokens[start : start + len(value)] == value
        assert ctx.positions[start : start + len(value)] == list(
            range(slot.start, slot.start + len(value))
        )
        last = ctx.positions[-1]
        await greedy(ctx, 2)
        assert ctx.positions[-2:] == [last + 1, last + 2]
    assert cache.stats.appended_tokens == len(value) + len(cache.plan(ask()).text[0].tokens)


@pytest.mark.parametrize("encoding", ["prefix", "modular"])
async def test_a_prompt_of_modules_only_is_ready_to_generate(engine: Engine, encoding) -> None:
    cache = PromptCache(engine)
    cache.register(travel(encoding))
    prompt = Prompt("travel", [Select("tools")])
    tokens, positions = cache.plan(prompt).flatten()
    async with await cache.context(prompt) as ctx:
        assert ctx.num_tokens == ctx.num_cached + 1
        got = await greedy(ctx)
    if encoding == "prefix":
        assert got == await full_greedy(engine, tokens, positions)


async def test_concurrent_requests_compute_each_module_once(engine: Engine) -> None:
    for encoding in ("prefix", "modular"):
        cache = PromptCache(engine)
        cache.register(travel(encoding))
        contexts: list[Context] = []

        async def request(cache: PromptCache = cache, contexts: list[Context] = contexts) -> None:
            contexts.append(await cache.context(TOKYO_TRIP))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(request)
        assert cache.stats.misses == 4 and cache.stats.hits == 12, encoding
        for ctx in contexts:
            ctx.release()
        cache.clear()
    assert engine.pool.num_used == 0


async def test_warm_precomputes_every_module(engine: Engine) -> None:
    cache = PromptCache(engine)
    cache.register(travel("modular"))
    assert await cache.warm("travel") == 5  # schema text, tools, two docs, trip
    assert await cache.warm("travel") == 0
    await cached_logits(cache, TOKYO_TRIP)
    assert cache.stats.misses == 5 and cache.stats.hits == 4

    prefix = PromptCache(engine)
    prefix.register(travel("prefix"))
    assert await prefix.warm("travel") == 5  # schema text, then each module after it
    await cached_logits(prefix, ask(Select("doc-paris")))
    assert prefix.stats.misses == 5 and prefix.stats.hits == 2


# ---- the store -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["prefix", "modular"])
async def test_disk_round_trip_starts_a_second_engine_warm(
    tiny: LoadedModel, tmp_path: Path, encoding: Encoding
) -> None:
    first = Engine.from_loaded(tiny, num_pages=1024, page_size=4)
    cold = PromptCache(first, disk_dir=tmp_path)
    cold.register(travel(encoding))
    expected = await cached_logits(cold, TOKYO_TRIP)
    assert cold.store.stats.disk_writes == 4 and len(list(tmp_path.iterdir())) == 4

    second = Engine.from_loaded(tiny, num_pages=1024, page_size=4)
    warm = PromptCache(second, disk_dir=tmp_path)
    warm.register(travel(encoding))
    got = await cached_logits(warm, TOKYO_TRIP)
    assert warm.stats.computed_tokens == 0 and warm.stats.disk_loads == 4
    assert max_diff(got, expected) < TOL
    assert await cached_greedy(warm, TOKYO_TRIP) == await cached_greedy(cold, TOKYO_TRIP)


async def test_a_prefix_chain_is_stored_module_by_module(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each entry holds its own tokens only, and writing the chain to disk reads each module's
    K/V out of the pool once (not the whole chain per module)."""
    read: list[int] = []
    read_slots = engine.kv.read_slots
    monkeypatch.setattr(engine.kv, "read_slots", lambda s: read.append(len(s)) or read_slots(s))
    cache = PromptCache(engine, disk_dir=tmp_path)
    cache.register(travel("prefix"))
    await cached_logits(cache, TOKYO_TRIP)
    entries = cache.store.entries
    assert len(entries) == 4 and sorted(read) == sorted(e.num_tokens for e in entries)
    for entry in entries:
        export = engine.exports.open(entry.name)
        assert export.num_tokens == entry.num_tokens
        assert entry.nbytes == export.num_pages * engine.kv.page_bytes
    cache.clear()
    assert engine.pool.num_used == 0


async def test_lru_eviction_under_a_small_budget(engine: Engine) -> None:
    probe = PromptCache(engine)
    probe.register(travel("modular"))
    await probe.warm("travel")
    sizes = {e.key: e.nbytes for e in probe.store.entries}
    probe.clear()
    budget = sum(sorted(sizes.values())[-3:])  # room for three modules, not five
    cache = PromptCache(engine, memory_bytes=budget)
    layout = cache.register(travel("modular"))
    key = {m.path: m.key for m in layout.modules}
    await cached_logits(cache, ask(Select("tools"), Select("doc-paris")))
    await cached_logits(cache, ask(Select("doc-tokyo")))
    assert cache.store.nbytes <= budget and cache.stats.evictions >= 1
    assert key[("doc-tokyo",)] in cache.store and key[("tools",)] not in cache.store  # LRU first

    held = await cache.context(ask(Select("doc-paris"), Select("trip")))  # pins its modules
    await cached_logits(cache, ask(Select("tools"), Select("doc-tokyo")))
    for path in [(), ("doc-paris",), ("trip",)]:
        assert key[path] in cache.store  # a live context's modules are never evicted
    held.release()
    await cached_logits(cache, ask(Select("tools")))
    assert cache.store.nbytes <= budget
    cache.clear()
    assert engine.pool.num_used == 0


async def test_prefix_chains_evict_leaves_first_and_stay_exact(engine: Engine) -> None:
    probe = PromptCache(engine)
    probe.register(travel("prefix"))
    await cached_logits(probe, TOKYO_TRIP)
    budget = probe.store.nbytes  # one full chain
    probe.clear()
    cache = PromptCache(engine, memory_bytes=budget)
    cache.register(travel("prefix"))
    prompts = [TOKYO_TRIP, ask(Select("doc-paris")), ask(Select("tools")), TOKYO_TRIP]
    for prompt in prompts:
        logits = await cached_logits(cache, prompt)
        full = await full_prefill(engine, *cache.plan(prompt).flatten())
        assert max_diff(logits, full[-len(logits) :]) < TOL
        entries = {e.key: e for e in cache.store.entries}
        assert all(e.parent is None or e.parent in entries for e in entries.values())
    assert cache.stats.evictions >= 1 and cache.store.nbytes <= budget
    cache.clear()
    assert engine.pool.num_used == 0


async def test_changed_text_or_model_never_serves_stale_kv(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    engine = Engine.from_loaded(tiny, num_pages=1024, page_size=4)
    old = PromptCache(engine, disk_dir=tmp_path)
    old_key = old.register(travel()).module(["doc-paris"]).key
    await cached_logits(old, ask(Select("doc-paris")))
    old.clear()

    edited = PromptCache(engine, disk_dir=tmp_path)
    new_key = edited.register(travel(paris="Paris is the capital of France!")).module(["doc-paris"])
    assert new_key.key != old_key
    await cached_logits(edited, ask(Select("doc-paris")))
    assert edited.stats.disk_loads == 1 and edited.stats.misses == 1  # schema text read; doc not

    other = Engine(tiny.model, tiny.tokenizer, num_pages=1024, page_size=4, fingerprint="other")
    moved = PromptCache(other, disk_dir=tmp_path)
    moved.register(travel())
    await cached_logits(moved, ask(Select("doc-paris")))
    assert moved.stats.disk_loads == 0 and moved.stats.misses == 2


async def test_corrupt_or_mismatched_files_are_skipped_with_a_warning(
    engine: Engine, tmp_path: Path
) -> None:
    cache = PromptCache(engine, disk_dir=tmp_path)
    layout = cache.register(travel())
    await cached_logits(cache, ask(Select("doc-paris"), Select("tools")))
    cache.clear()
    paris = cache.store.path(layout.module(["doc-paris"]).key)
    tools = cache.store.path(layout.module(["tools"]).key)
    assert paris is not None and tools is not None
    paris.write_bytes(b"not a safetensors file")
    tools.write_bytes(cache.store.path(layout.module([]).key).read_bytes())  # type: ignore[union-attr]
    with pytest.warns(ModuleStoreWarning) as caught:
        expected = await cached_logits(cache, ask(Select("doc-paris"), Select("tools")))
    assert len(caught) == 2 and cache.store.stats.disk_errors == 2
    assert cache.stats.disk_loads == 1  # only the schema's own text was valid
    cache.clear()
    again = await cached_logits(cache, ask(Select("doc-paris"), Select("tools")))
    assert cache.stats.disk_loads == 4 and max_diff(again, expected) < TOL  # files rewritten


async def test_two_caches_on_one_engine_keep_apart(engine: Engine) -> None:
    a, b = PromptCache(engine), PromptCache(engine)
    a.register(travel())
    b.register(travel())
    await cached_logits(a, TOKYO_TRIP)
    await cached_logits(b, TOKYO_TRIP)
    assert a.store.namespace != b.store.namespace and b.stats.misses == 4
    a.clear()
    await cached_logits(b, TOKYO_TRIP)
    assert b.stats.hits == 4
    b.clear()
    assert engine.export_names() == [] and engine.pool.num_used == 0


# ---- errors and cleanup ----------------------------------------------------------------------


def bad_prompts() -> list[tuple[str | Prompt, str]]:
    return [
        (Prompt("nowhere", [Select("tools")]), "unknown schema"),
        (ask(Select("museum")), "unknown module"),
        (ask(Select("trip", {"weeks": "2"})), "no parameter 'weeks'"),
        (ask(Select("trip", {"days": "one two three four five six"})), "longer than its reserved"),
        (ask(Select("doc-paris"), Select("doc-tokyo")), "union"),
        (ask(question="word " * 5000), "beyond the window"),
        ('<prompt schema="travel"><tools>', "PML|XML|syntax|closed|unclosed"),
    ]


@pytest.mark.parametrize("encoding", ["prefix", "modular"])
async def test_bad_prompts_fail_before_any_kv_is_touched(engine: Engine, encoding) -> None:
    cache = PromptCache(engine)
    cache.register(travel(encoding))
    await cached_logits(cache, TOKYO_TRIP)
    used, exports = engine.pool.num_used, engine.export_names()
    for prompt, message in bad_prompts():
        with pytest.raises(PMLError, match=message):
            await cache.context(prompt)
        assert engine.pool.num_used == used and engine.export_names() == exports
    assert cache.stats.requests == 1
    with pytest.raises(PMLError, match="unknown schema"):
        await cache.warm("nowhere")


def test_a_schema_beyond_the_window_is_refused_at_register(engine: Engine) -> None:
    cache = PromptCache(engine)
    huge = Schema("huge", [Module("m", ["x", Parameter("p", engine.config.max_position)])])
    with pytest.raises(PMLError, match="beyond the window"):
        cache.register(huge)
    with pytest.raises(PMLError, match="unknown schema"):
        cache.layout("huge")
    assert engine.pool.num_used == 0


async def test_pages_return_once_contexts_are_released_and_the_cache_cleared(
    engine: Engine, tmp_path: Path
) -> None:
    before = engine.pool.num_used
    for encoding in ("prefix", "modular"):
        cache = PromptCache(engine, disk_dir=tmp_path / encoding)
        cache.register(travel(encoding))
        held = [await cache.context(TOKYO_TRIP), await cache.context(ask(Select("doc-paris")))]
        await greedy(held[0], 3)
        for ctx in held:
            ctx.release()
        cache.clear()
        fresh = PromptCache(engine, disk_dir=tmp_path / encoding)  # reads the files back
        fresh.register(travel(encoding))
        (await fresh.context(TOKYO_TRIP)).release()
        assert fresh.stats.disk_loads == 4
        fresh.clear()
    assert engine.pool.num_used == before and engine.export_names() == []


@pytest.mark.parametrize("encoding", ["prefix", "modular"])
async def test_pool_exhaustion_is_raised_plainly_and_leaks_nothing(
    tiny: LoadedModel, encoding: Encoding
) -> None:
    engine = Engine.from_loaded(tiny, num_pages=12, page_size=4)
    engine.scheduler.policy = BatchPolicy(pool_wait_seconds=0.05)  # nothing else will free pages
    cache = PromptCache(engine)
    cache.register(travel(encoding))
    with pytest.raises(PoolExhaustedError, match=r"waited \d+\.\d s for other contexts"):
        await cache.context(TOKYO_TRIP)
    cache.clear()
    assert engine.pool.num_used == 0 and engine.export_names() == []


def test_the_package_imports_without_torch() -> None:
    code = "import sys, asynclm.promptcache as p; p.Prompt; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
