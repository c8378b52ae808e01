"""The page allocator and page tables, alone (no torch: see test_policy.py)."""

from __future__ import annotations

import contextlib
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.engine.pages import PagePool, PageTable, PoolExhaustedError


def test_allocate_release_refcounts() -> None:
    pool = PagePool(4, 8)
    pages = pool.allocate(3)
    assert pool.num_free == 1 and all(pool.refcount(p) == 1 for p in pages)
    pool.retain(pages[:1])
    pool.release(pages)
    assert pool.num_free == 3 and pool.refcount(pages[0]) == 1
    pool.release(pages[:1])
    assert pool.num_free == 4


def test_exhaustion_is_an_error_and_changes_nothing() -> None:
    pool = PagePool(2, 4)
    table = PageTable(4)
    table.plan_append(pool, 5)  # two pages
    with pytest.raises(PoolExhaustedError, match="KV pool exhausted"):
        table.plan_append(pool, 4)
    assert table.num_tokens == 5 and pool.num_free == 0
    assert table.slots == [*range(0, 4), 4]


def test_double_release_is_refused() -> None:
    pool = PagePool(2, 4)
    (p,) = pool.allocate(1)
    pool.release([p])
    with pytest.raises(ValueError, match="released more often"):
        pool.release([p])


def test_append_fills_pages_in_order() -> None:
    pool = PagePool(8, 4)
    t = PageTable(4)
    assert t.plan_append(pool, 3).slots == [0, 1, 2]
    assert t.plan_append(pool, 3).slots == [3, 4, 5]
    assert t.fills == [4, 2] and t.num_tokens == 6


def test_shared_tail_is_copied_before_writing() -> None:
    pool = PagePool(8, 4)
    a = PageTable(4)
    a.plan_append(pool, 6)  # pages 0 (full), 1 (2 of 4)
    b = a.share(pool)
    plan = b.plan_append(pool, 1)
    assert plan.copies == [(1, 2)]  # b's partial page is copied, then written
    assert plan.slots == [2 * 4 + 2]
    assert b.pages == [0, 2] and a.pages == [0, 1]
    assert pool.refcount(0) == 2 and pool.refcount(1) == 1


def test_truncate_releases_whole_pages() -> None:
    pool = PagePool(8, 4)
    t = PageTable(4)
    t.plan_append(pool, 10)
    t.truncate(pool, 5)
    assert t.fills == [4, 1] and pool.num_free == 6
    t.truncate(pool, 0)
    assert t.pages == [] and pool.num_free == 8
    with pytest.raises(ValueError):
        t.truncate(pool, 1)


def test_extend_concatenates_without_copy() -> None:
    pool = PagePool(8, 4)
    a, b = PageTable(4), PageTable(4)
    a.plan_append(pool, 3)
    b.plan_append(pool, 2)
    a.extend(pool, b)
    assert a.slots == [0, 1, 2, 4, 5] and pool.refcount(1) == 2
    plan = a.plan_append(pool, 1)  # b's page is shared: copy it, then write
    assert plan.copies and a.slots[:3] == [0, 1, 2]


def test_a_token_range_shares_whole_pages_and_copies_a_split_one() -> None:
    pool = PagePool(8, 4)
    t = PageTable(4)
    t.plan_append(pool, 10)  # pages 0, 1 (full), 2 (2 of 4)
    aligned, copies = t.share_range(pool, 4, 10)
    assert (aligned.pages, aligned.fills, copies) == ([1, 2], [4, 2], [])
    split, copies = t.share_range(pool, 6, 9)  # starts inside page 1: its part is copied
    assert split.pages == [3, 2] and split.fills == [2, 1]
    assert copies == [(6, 12), (7, 13)] and split.slots == [12, 13, 8]
    assert [pool.refcount(p) for p in range(4)] == [1, 2, 3, 1]
    with pytest.raises(ValueError, match="no token range"):
        t.share_range(pool, 5, 11)


def test_a_split_range_needs_a_free_page_and_changes_nothing_without_one() -> None:
    pool = PagePool(2, 4)
    t = PageTable(4)
    t.plan_append(pool, 8)
    with pytest.raises(PoolExhaustedError):
        t.share_range(pool, 2, 8)
    assert [pool.refcount(p) for p in t.pages] == [1, 1]


class _Simulation:
    """Page tables plus simulated KV contents: what each table reads back must be what was
    written to it, whatever the sharing."""

    page_size = 4

    def __init__(self) -> None:
        self.pool = PagePool(64, self.page_size)
        self.tables: dict[int, PageTable] = {0: PageTable(self.page_size)}
        self.expected: dict[int, list[int]] = {0: []}
        self.kv: dict[int, int] = {}
        self.counter = iter(range(sys.maxsize))
        self.next_name = 1

    def apply(self, op: str, who: int, n: int) -> None:
        if not self.tables:
            self._add(PageTable(self.page_size), [])
            return
        name = sorted(self.tables)[who % len(self.tables)]
        with contextlib.suppress(PoolExhaustedError):
            getattr(self, f"_{op}")(name, n)
        for key, table in self.tables.items():
            assert [self.kv[s] for s in table.slots] == self.expected[key]

    def _add(self, table: PageTable, expected: list[int]) -> None:
        self.tables[self.next_name], self.expected[self.next_name] = table, expected
        self.next_name += 1

    def _append(self, name: int, n: int) -> None:
        plan = self.tables[name].plan_append(self.pool, n)
        ps = self.page_size
        for src, dst in plan.copies:
            for i in range(ps):
                if src * ps + i in self.kv:
                    self.kv[dst * ps + i] = self.kv[src * ps + i]
        for slot in plan.slots:
            assert self.pool.refcount(slot // ps) == 1  # never write a shared page
            self.kv[slot] = next(self.counter)
        self.expected[name] += [self.kv[s] for s in plan.slots]

    def _fork(self, name: int, n: int) -> None:
        self._add(self.tables[name].share(self.pool), list(self.expected[name]))

    def _truncate(self, name: int, n: int) -> None:
        keep = min(n, self.tables[name].num_tokens)
        self.tables[name].truncate(self.pool, keep)
        del self.expected[name][keep:]

    def _extend(self, name: int, n: int) -> None:
        other = sorted(self.tables)[n % len(self.tables)]
        if other != name:
            self.tables[name].extend(self.pool, self.tables[other])
            self.expected[name] += self.expected[other]

    def _range(self, name: int, n: int) -> None:
        table, expected = self.tables[name], self.expected[name]
        start = n % (table.num_tokens + 1)
        end = start + (table.num_tokens - start) * n // 12
        part, copies = table.share_range(self.pool, start, end)
        for src, dst in copies:
            assert self.pool.refcount(dst // self.page_size) == 1  # written only when private
            self.kv[dst] = self.kv[src]
        self._add(part, expected[start:end])

    def _release(self, name: int, n: int) -> None:
        self.tables.pop(name).release(self.pool)
        del self.expected[name]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["append", "fork", "truncate", "extend", "range", "release"]),
            st.integers(0, 9),
            st.integers(0, 12),
        ),
        max_size=60,
    )
)
def test_random_operations_never_corrupt_shared_pages(ops: list[tuple[str, int, int]]) -> None:
    sim = _Simulation()
    for op, who, n in ops:
        sim.apply(op, who, n)
    for table in sim.tables.values():
        table.release(sim.pool)
    assert sim.pool.num_free == sim.pool.num_pages


def test_random_operations_smoke_many_seeds() -> None:
    rng = random.Random(0)
    pool = PagePool(32, 2)
    tables = [PageTable(2) for _ in range(4)]
    for _ in range(2000):
        t = rng.choice(tables)
        action = rng.random()
        try:
            if action < 0.5:
                t.plan_append(pool, rng.randint(0, 5))
            elif action < 0.7:
                t.truncate(pool, rng.randint(0, t.num_tokens))
            elif action < 0.8:
                shared = t.share(pool)
                idx = rng.randrange(4)
                tables[idx].release(pool)
                tables[idx] = shared
            else:
                t.release(pool)
        except PoolExhaustedError:
            continue
    for t in tables:
        t.release(pool)
    assert pool.num_free == 32


def test_reallocation_after_release_is_ascending() -> None:
    pool = PagePool(8, 4)
    t = PageTable(4)
    t.plan_append(pool, 20)
    t.release(pool)
    again = PageTable(4)
    assert again.plan_append(pool, 20).slots == list(range(20))  # contiguous, in order
