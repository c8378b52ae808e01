"""The model's own thread: forwards run off the event loop (tools keep it), handed over cheaply.

`anyio.to_thread.run_sync` takes ~100 µs of CPU per call (a generic pool with a capacity
limiter, a cancel scope and a context copy per call); a decode step of the default model takes
~10 ms, so that hop alone was 1% of it. Here one daemon thread per runner takes forwards from a
queue and hands results back with `call_soon_threadsafe` (~40 µs); on anyio backends other than
asyncio it falls back to `anyio.to_thread.run_sync`. One thread also means one OpenMP team for
every forward. The thread ends when its owner is garbage-collected, or at interpreter exit
(joined there: a thread woken during finalization would abort the process).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")
_STOP = object()
_running: set[tuple[threading.Thread, queue.SimpleQueue[Any]]] = set()


class ForwardThread:
    """Runs calls in order on one thread; `await run(fn, *args)` from the event loop."""

    def __init__(self, name: str = "asynclm-forward") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the thread; its result or exception.

        A caller cancelled meanwhile is cancelled once the call has ended, as with
        `anyio.to_thread.run_sync`: a forward is never abandoned half-way.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (e.g. trio): anyio's own worker threads
            return await anyio.to_thread.run_sync(fn, *args)
        self._start()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, loop, future))
        with anyio.CancelScope(shield=True):  # like to_thread: a cancelled caller waits for
            result = await future  # the call to end (it still writes the KV pool meanwhile)
        await anyio.lowlevel.checkpoint_if_cancelled()
        return result

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_serve, args=(self._jobs,), name=self.name, daemon=True
                )
                self._thread.start()
                _running.add((self._thread, self._jobs))
                weakref.finalize(self, self._jobs.put, _STOP).atexit = False


def _serve(jobs: queue.SimpleQueue[Any]) -> None:
    while (job := jobs.get()) is not _STOP:
        fn, args, loop, future = job
        try:
            result = fn(*args)
        except BaseException as e:  # handed to the awaiting task, which re-raises it
            _settle(loop, future, e, failed=True)
        else:
            _settle(loop, future, result, failed=False)


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, failed: bool
) -> None:
    def settle() -> None:
        if future.done():  # the awaiting task was cancelled meanwhile
            return
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
        loop.call_soon_threadsafe(settle)


@atexit.register
def _stop_all() -> None:
    for _, jobs in list(_running):
        jobs.put(_STOP)
    for thread, _ in list(_running):
        thread.join(timeout=10)
