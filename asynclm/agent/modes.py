"""Calling modes: one small strategy per mode, chosen once when a run is specified.

| mode | a valid call block's `[END]` | a pause (trap, sync call, early end of turn) |
|---|---|---|
| `sync` | the call starts; generation pauses | waits for every pending call |
| `sync-parallel` | the call is held back | starts the held-back calls, waits for all |
| `async` | the call starts; generation goes on | waits for the next result, unless one is in |
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from anyio.abc import TaskGroup

from asynclm.agent.calls import CallTracker
from asynclm.agent.result import MODES, CallRecord, Mode
from asynclm.tooling import Tool

__all__ = ["AsyncMode", "CallingMode", "SyncMode", "SyncParallelMode", "calling_mode"]


class CallingMode(ABC):
    """When a mode runs calls, and what a pause waits for.

    Attributes:
        name: The mode's name ("async", "sync-parallel", "sync").
        pauses_after_rejection: Whether generation pauses after a rejected call block, so that
            its error is injected before the model writes on.
    """

    name: ClassVar[Mode]
    pauses_after_rejection: ClassVar[bool] = False

    @abstractmethod
    def dispatch(self, calls: CallTracker, tg: TaskGroup, tool: Tool, record: CallRecord) -> bool:
        """Schedule a valid call; returns whether generation must pause for it now."""

    @abstractmethod
    async def wait(self, calls: CallTracker, tg: TaskGroup) -> None:
        """At a pause: start and wait for what this mode needs before injecting."""


@dataclass(frozen=True, slots=True)
class SyncMode(CallingMode):
    """Generation stops at each call until its result is in."""

    name: ClassVar[Mode] = "sync"
    pauses_after_rejection: ClassVar[bool] = True

    def dispatch(self, calls: CallTracker, tg: TaskGroup, tool: Tool, record: CallRecord) -> bool:
        calls.start(tg, tool, record)
        return True

    async def wait(self, calls: CallTracker, tg: TaskGroup) -> None:
        calls.collect()
        if calls.pending:
            await calls.wait(all_pending=True)


@dataclass(frozen=True, slots=True)
class SyncParallelMode(CallingMode):
    """Calls wait for the model's trap, then run together; generation resumes when all are in."""

    name: ClassVar[Mode] = "sync-parallel"

    def dispatch(self, calls: CallTracker, tg: TaskGroup, tool: Tool, record: CallRecord) -> bool:
        calls.defer(tool, record)
        return False

    async def wait(self, calls: CallTracker, tg: TaskGroup) -> None:
        calls.start_deferred(tg)
        calls.collect()
        if calls.pending:
            await calls.wait(all_pending=True)


@dataclass(frozen=True, slots=True)
class AsyncMode(CallingMode):
    """Calls run while the model writes; results arrive as interrupts."""

    name: ClassVar[Mode] = "async"

    def dispatch(self, calls: CallTracker, tg: TaskGroup, tool: Tool, record: CallRecord) -> bool:
        calls.start(tg, tool, record)
        return False

    async def wait(self, calls: CallTracker, tg: TaskGroup) -> None:
        calls.collect()
        if calls.pending and not calls.ready:
            await calls.wait(all_pending=False)


_STRATEGIES: tuple[CallingMode, ...] = (AsyncMode(), SyncParallelMode(), SyncMode())
_BY_NAME: dict[str, CallingMode] = {strategy.name: strategy for strategy in _STRATEGIES}


def calling_mode(mode: Mode | CallingMode) -> CallingMode:
    """The strategy of a mode, given by name or already made.

    Raises:
        ValueError: If `mode` names no mode.
    """
    if isinstance(mode, CallingMode):
        return mode
    strategy = _BY_NAME.get(mode) if isinstance(mode, str) else None
    if strategy is None:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return strategy
