"""The call-id registry: which ids a stream of CML has used, and which the runtime keeps.

One registry per assistant turn decides whether an id may be used (a Python identifier, not
used before, not one of the runtime's own ids such as `user`) and hands out ids for anonymous
calls. The streaming parser consults it; the agent runtime passes in its reserved ids, so a
call named like a user interrupt can never resolve the wrong result.
"""

from __future__ import annotations

from collections.abc import Iterable

from asynclm.cml.tokens import is_identifier

ANONYMOUS_PREFIX = "call_"


class CallIds:
    """Call ids seen so far in one turn, plus ids reserved for the runtime.

    Args:
        reserved: Ids the model may not use (the runtime's own interrupt ids).
    """

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self.reserved = frozenset(reserved)
        self._used: set[str] = set()
        self._num_anonymous = 0

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._used

    def __len__(self) -> int:
        return len(self._used)

    def problem(self, call_id: str) -> str | None:
        """Why `call_id` cannot be used now, or None if it can."""
        if not is_identifier(call_id):
            return f"invalid call id {_clip(call_id)!r}: use a Python identifier"
        if call_id in self.reserved:
            return f"call id {call_id!r} is reserved for the runtime; use another id"
        if call_id in self._used:
            return f"duplicate call id {call_id!r}"
        return None

    def add(self, call_id: str) -> None:
        """Record `call_id` as used.

        Raises:
            ValueError: If `problem(call_id)` is not None.
        """
        problem = self.problem(call_id)
        if problem is not None:
            raise ValueError(problem)
        self._used.add(call_id)

    def new_anonymous(self) -> str:
        """A fresh id `call_<n>` for a call written without one (recorded as used)."""
        while True:
            self._num_anonymous += 1
            call_id = f"{ANONYMOUS_PREFIX}{self._num_anonymous}"
            if self.problem(call_id) is None:
                self._used.add(call_id)
                return call_id


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
