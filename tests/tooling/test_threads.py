"""The cap on sync tools' threads holds when calls are abandoned at their timeout."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from asynclm.tooling import ToolThreads, ToolTimeoutError, tool

pytestmark = pytest.mark.anyio


async def test_abandoned_threads_keep_their_slot_until_they_return() -> None:
    release = threading.Event()
    threads = ToolThreads(2)

    @tool(timeout=0.05)
    def stuck() -> str:
        release.wait(10)
        return "late"

    @tool(timeout=0.2)
    def quick() -> str:
        return "quick"

    before = threading.active_count()
    for _ in range(2):  # both slots end up held by abandoned threads
        with pytest.raises(ToolTimeoutError):
            await stuck.invoke({}, limiter=threads)
    assert (threads.num_busy, threads.num_abandoned) == (2, 2)
    with pytest.raises(ToolTimeoutError, match=r"waited for a worker thread .*2 of 2 tool threads"):
        await quick.invoke({}, limiter=threads)  # no third thread is started
    assert threading.active_count() - before <= 2
    release.set()
    deadline = time.monotonic() + 5
    while threads.num_busy and time.monotonic() < deadline:
        await anyio.sleep(0.01)
    assert (threads.num_busy, threads.num_abandoned) == (0, 0)
    assert await quick.invoke({}, limiter=threads) == "quick"


async def test_a_call_given_up_before_its_thread_starts_frees_its_slot() -> None:
    threads = ToolThreads(1)
    ran = []
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled at the first checkpoint, before any thread starts
        await threads.run(lambda: ran.append(1))
    await anyio.sleep(0.05)
    assert threads.num_busy == 0 and ran == []


def test_the_cap_must_be_positive() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_threads must be an int >= 1"):
            ToolThreads(bad)  # type: ignore[arg-type]
