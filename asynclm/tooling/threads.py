"""Worker threads for sync tools, with a hard cap that holds even after timeouts.

Python cannot stop a thread. When a sync tool runs past its timeout (or its run is cancelled)
the call is abandoned — its result will be ignored — but its thread runs on until the function
returns. `ToolThreads` counts such a thread as busy until it has really finished, so the number
of tool threads alive never exceeds `max_threads`: when every slot is taken (by running calls or
by abandoned ones that have not returned yet), a new sync call waits for a slot, and that wait
counts against the call's own timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.to_thread

__all__ = ["ToolThreads"]

T = TypeVar("T")

_FIRST_POLL_S = 0.002
_MAX_POLL_S = 0.05


class _GivenUp(Exception):
    """The call was given up before its thread started (nobody reads this)."""


@dataclass(slots=True)
class _Slot:
    state: str = "waiting"  # "running" once the thread took it, "done" once it is free again
    abandoned: bool = False


class ToolThreads:
    """A cap on the worker threads of sync tools, abandoned ones included.

    Args:
        max_threads: The most threads alive at once (running or abandoned).

    Raises:
        ValueError: `max_threads` is not a positive int.
    """

    def __init__(self, max_threads: int) -> None:
        if not isinstance(max_threads, int) or isinstance(max_threads, bool) or max_threads < 1:
            raise ValueError(f"max_threads must be an int >= 1, got {max_threads!r}")
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self._busy = 0
        self._abandoned = 0
        self._limiter = anyio.CapacityLimiter(max_threads)  # never waits: slots come first

    @property
    def num_busy(self) -> int:
        """Threads alive now: running calls plus abandoned ones that have not returned."""
        return self._busy

    @property
    def num_abandoned(self) -> int:
        """Threads whose call was given up (timeout, cancellation) but that still run."""
        return self._abandoned

    @property
    def is_full(self) -> bool:
        """Whether a new call would have to wait for a slot."""
        return self._busy >= self.max_threads

    async def run(self, function: Callable[[], T]) -> T:
        """Run `function` in a worker thread once a slot is free; the slot is held until the
        function returns, even if this call is cancelled (the thread is then abandoned)."""
        await self._acquire()
        slot = _Slot()

        def work() -> T:
            with self._lock:
                if slot.state == "done":  # given up before the thread started: do nothing
                    raise _GivenUp
                slot.state = "running"
            try:
                return function()
            finally:
                self._release(slot)

        try:
            return await anyio.to_thread.run_sync(
                work, abandon_on_cancel=True, limiter=self._limiter
            )
        except BaseException:
            self._give_up(slot)
            raise

    def _give_up(self, slot: _Slot) -> None:
        with self._lock:
            if slot.state == "waiting":  # the thread never started: free the slot now
                slot.state = "done"
                self._busy -= 1
            elif slot.state == "running":
                slot.abandoned = True
                self._abandoned += 1

    async def _acquire(self) -> None:
        delay = _FIRST_POLL_S
        while True:
            with self._lock:
                if self._busy < self.max_threads:
                    self._busy += 1
                    return
            # Slots are freed by worker threads, which cannot wake this event loop: poll.
            await anyio.sleep(delay)
            delay = min(2 * delay, _MAX_POLL_S)

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            self._busy -= 1
            slot.state = "done"
            if slot.abandoned:
                self._abandoned -= 1

    def describe(self) -> str:
        """The state of the slots, for error messages."""
        return (
            f"{self._busy} of {self.max_threads} tool threads busy, "
            f"{self._abandoned} of them abandoned after a timeout or cancellation"
        )

    def __repr__(self) -> str:
        return f"ToolThreads({self.describe()})"
