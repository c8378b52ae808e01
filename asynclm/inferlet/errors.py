"""Errors of inferlets, and exceptions sent between an inferlet's process and the engine's.

An exception crosses the process boundary as data: its type's name, its arguments (when they
are plain data) and the traceback text. It is rebuilt as the same type when that type is a
built-in exception or one of asynclm's own; any other type arrives as an `InferletError` naming
it. Nothing is unpickled.
"""

from __future__ import annotations

import builtins
import sys
import traceback
from typing import Any

from asynclm.engine.context import ContextClosedError
from asynclm.engine.pages import PoolExhaustedError
from asynclm.engine.scope import QuotaExceededError

if sys.version_info < (3, 11):  # pragma: no cover - depends on the interpreter
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = [
    "InferletError",
    "InferletKilledError",
    "exception_data",
    "exception_from_data",
    "unwrap_quota_group",
]


class InferletError(RuntimeError):
    """An inferlet could not be loaded, started or run (or failed with an error of a type that
    cannot cross the process boundary as itself)."""


class InferletKilledError(InferletError):
    """The inferlet's process ended without reporting (a signal, a resource limit, a crash)."""


_OWN: dict[str, type[BaseException]] = {
    cls.__name__: cls
    for cls in (
        QuotaExceededError,
        PoolExhaustedError,
        ContextClosedError,
        InferletError,
        InferletKilledError,
    )
}
_PLAIN = (str, int, float, bool, type(None))


def exception_data(error: BaseException) -> dict[str, Any]:
    """An exception as plain data (groups with their members)."""
    data: dict[str, Any] = {
        "type": type(error).__name__,
        "args": [a for a in error.args if isinstance(a, _PLAIN)]
        if all(isinstance(a, _PLAIN) for a in error.args)
        else [str(error)],
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error))[-20_000:],
    }
    members = getattr(error, "exceptions", None)
    if isinstance(members, tuple):
        data["group"] = [exception_data(e) for e in members]
    return data


def exception_from_data(data: object) -> BaseException:
    """The exception `exception_data` described (an `InferletError` for unknown types)."""
    if not isinstance(data, dict):
        return InferletError(f"the inferlet reported a malformed error: {data!r:.200}")
    name, message = str(data.get("type", "")), str(data.get("message", ""))[:20_000]
    members = data.get("group")
    if isinstance(members, list) and members:
        rebuilt = [exception_from_data(member) for member in members]
        error: BaseException = _group(message, rebuilt)
    else:
        error = _rebuild(name, data.get("args"), message)
    trace = data.get("traceback")
    if isinstance(trace, str) and trace and hasattr(error, "add_note"):
        error.add_note(f"in the inferlet's process:\n{trace}")
    return error


def _rebuild(name: str, args: object, message: str) -> BaseException:
    cls = _OWN.get(name) or _builtin_exception(name)
    if cls is None:
        return InferletError(f"{name}: {message}")
    if not isinstance(args, list) or not all(isinstance(a, _PLAIN) for a in args):
        args = [message]
    try:
        return cls(*args)
    except Exception:  # a constructor wanting other arguments
        return InferletError(f"{name}: {message}")


def _builtin_exception(name: str) -> type[BaseException] | None:
    cls = getattr(builtins, name, None)
    is_error = isinstance(cls, type) and issubclass(cls, Exception)
    if not is_error or issubclass(cls, BaseExceptionGroup):  # type: ignore[arg-type]
        return None
    return cls  # type: ignore[return-value]


def _group(message: str, members: list[BaseException]) -> BaseException:
    head = message.split(" (", 1)[0] or "errors in the inferlet"
    errors = [member for member in members if isinstance(member, Exception)]
    if len(errors) == len(members):
        return ExceptionGroup(head, errors)
    return BaseExceptionGroup(head, members)


def unwrap_quota_group(error: BaseException) -> BaseException:
    """A group of only quota errors (tasks of one task group that hit the quota together) as
    its first one; anything else as it is."""
    if isinstance(error, BaseExceptionGroup):
        quota = error.subgroup(QuotaExceededError)
        others = error.subgroup(
            lambda e: (
                not isinstance(e, (BaseExceptionGroup, QuotaExceededError)) and not _is_cancel(e)
            )
        )
        if quota is not None and others is None:
            return _first_leaf(quota)
    return error


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _is_cancel(error: BaseException) -> bool:
    """Cancellation of a sibling task (asyncio's or trio's), outside any event loop too."""
    return type(error).__name__ in ("CancelledError", "Cancelled")
