"""The scheduling policy and KV reservation, alone: plain ints, no torch, milliseconds."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynclm.engine.pages import PagePool, PageTable, PoolExhaustedError
from asynclm.engine.policy import BatchPolicy
from asynclm.engine.scope import Quota, QuotaExceededError, Scope
from asynclm.engine.sequence import Sequence


@dataclass
class Work:
    seq_id: int
    remaining: int
    done: int = 0


def test_the_pure_modules_import_without_torch() -> None:
    modules = ["policy", "sequence", "pages", "scope", "chat"]
    imports = "; ".join(f"import asynclm.engine.{m}" for m in modules)
    code = f"import sys; {imports}; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_oldest_request_of_each_sequence_is_eligible() -> None:
    a1, b1, a2, c1 = Work(1, 5), Work(2, 3), Work(1, 1), Work(3, 9)
    assert BatchPolicy().eligible([a1, b1, a2, c1]) == [a1, b1, c1]


def test_shortest_work_goes_first_and_rows_follow_each_other() -> None:
    prefill, decode, other = Work(1, 100, done=20), Work(2, 1), Work(3, 7)
    chunks = BatchPolicy(max_batch_tokens=64).form_batch([prefill, decode, other], _always)
    assert [c.request for c in chunks] == [decode, other, prefill]
    assert [(c.start, c.length, c.row) for c in chunks] == [(0, 1, 0), (0, 7, 1), (20, 56, 8)]


def test_a_prefill_is_chunked_only_when_others_wait() -> None:
    policy = BatchPolicy(max_batch_tokens=32, max_solo_tokens=1000)
    (alone,) = policy.form_batch([Work(1, 800)], _always)
    assert alone.length == 800
    chunks = policy.form_batch([Work(1, 800), Work(2, 1)], _always)
    assert [c.length for c in chunks] == [1, 31]


def test_work_that_cannot_reserve_is_skipped_and_its_budget_stays() -> None:
    blocked, big = Work(1, 2), Work(2, 40)
    chunks = BatchPolicy(max_batch_tokens=40).form_batch(
        [blocked, big], lambda work, n: work is not blocked
    )
    assert [(c.request, c.length, c.row) for c in chunks] == [(big, 40, 0)]


def test_budgets_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch_tokens"):
        BatchPolicy(max_batch_tokens=0)
    with pytest.raises(ValueError, match="max_solo_tokens"):
        BatchPolicy(max_solo_tokens=-1)


@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 300)), min_size=1, max_size=12),
    st.integers(1, 128),
)
def test_a_batch_never_passes_its_budget_nor_runs_a_sequence_twice(
    queue: list[tuple[int, int]], budget: int
) -> None:
    work = [Work(seq, remaining) for seq, remaining in queue]
    policy = BatchPolicy(max_batch_tokens=budget, max_solo_tokens=budget)
    chunks = policy.form_batch(work, _always)
    assert sum(c.length for c in chunks) <= budget
    assert len({c.request.seq_id for c in chunks}) == len(chunks)
    assert chunks[0].request is min(policy.eligible(work), key=lambda w: w.remaining)
    rows = [c.row for c in chunks]
    assert rows == [sum(c.length for c in chunks[:i]) for i in range(len(chunks))]


def _always(work: Work, n: int) -> bool:
    return True


# ---- KV reservation --------------------------------------------------------------------------


def test_reserve_takes_slots_and_charges_the_scope() -> None:
    pool, scope = PagePool(8, 4), Scope("s")
    seq = Sequence(PageTable(4), scope)
    plan = seq.reserve(pool, 6)
    assert plan.slots == list(range(6)) and not plan.copies
    assert scope.tokens_used == 6 and scope.pages_in_use == 2


def test_reserve_is_all_or_nothing_under_quota_and_pool_limits() -> None:
    pool = PagePool(4, 4)
    seq = Sequence(PageTable(4), Scope("s", Quota(max_pages=2)))
    with pytest.raises(QuotaExceededError, match="page quota"):
        seq.reserve(pool, 9)
    assert seq.table.num_tokens == 0 and pool.num_free == 4 and seq.scope.tokens_used == 0
    other = Sequence(PageTable(4), Scope())
    with pytest.raises(PoolExhaustedError):
        other.reserve(pool, 17)
    assert other.table.num_tokens == 0 and pool.num_free == 4


def test_slots_that_change_bump_the_epoch_and_appends_do_not() -> None:
    pool = PagePool(8, 4)
    seq = Sequence(PageTable(4), Scope())
    seq.reserve(pool, 3)
    seq.commit([1, 2, 3], [0, 1, 2])
    child = seq.fork(pool)
    assert (child.epoch, child.max_position) == (0, 2)
    seq.reserve(pool, 1)  # the shared last page is copied first: its slots change
    assert seq.epoch == 1
    child.reserve(pool, 1)  # now alone on the old page: a plain append
    assert child.epoch == 0
    child.truncate(pool, 2)
    assert child.epoch == 1 and child.next_position == 2


@pytest.mark.parametrize(
    ("needed", "held", "waited", "expected"),
    [
        (3, 0, 0.0, True),  # would fit once others release pages: wait
        (3, 5, 9.9, True),
        (3, 0, 10.0, False),  # waited long enough
        (8, 0, 0.0, True),  # exactly the whole pool
        (9, 0, 0.0, False),  # more than the whole pool: never fits
        (5, 4, 0.0, False),  # more than the pool minus what the sequence itself holds
    ],
)
def test_work_short_of_pages_waits_only_while_it_could_fit(
    needed: int, held: int, waited: float, expected: bool
) -> None:
    policy = BatchPolicy(pool_wait_seconds=10.0)
    kwargs = {"pages_needed": needed, "pages_held": held, "pool_pages": 8, "waited": waited}
    assert policy.should_wait(**kwargs) is expected
    assert BatchPolicy(pool_wait_seconds=0).should_wait(**kwargs) is False


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_pool_wait_must_be_finite_and_non_negative(seconds: float) -> None:
    with pytest.raises(ValueError, match="pool_wait_seconds"):
        BatchPolicy(pool_wait_seconds=seconds)
