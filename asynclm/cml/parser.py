"""Streaming CML parser: turns the text the model samples into events as it arrives.

States: Normal → CallId → CallBody → Normal, and Normal → Trap → Normal; a parser reading a
whole transcript (`interrupts=True`) also has Normal → InterruptId → InterruptBody → Normal,
where the model's own parser refuses `[INTR]` as a forgery. The parser is fed
pieces of any size (one special token's text, or arbitrary fragments: a marker may arrive as
"[", "CA", "LL]"). It holds back only a possible marker prefix at the end of what it has seen
and releases it as text once it cannot be a marker.

Every input character is accounted for by exactly one event's `raw`: `BlockStart` carries the
opening marker, the closing `Call`, `Trap` or `Malformed` carries the rest of the block, so
`"".join(e.raw for e in events)` is always everything fed. The parser never raises on input.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from asynclm.cml.ids import CallIds
from asynclm.cml.tokens import CALL, END, HEAD, INTR, MARKERS, TRAP, is_identifier

DEFAULT_MAX_BODY_CHARS = 4096
_MAX_MARKER_LEN = max(len(marker) for marker in MARKERS)
_MARKER_RE = re.compile("|".join(re.escape(marker) for marker in MARKERS))


@dataclass(frozen=True, slots=True)
class Text:
    """Plain text outside any block: the model's answer."""

    raw: str


@dataclass(frozen=True, slots=True)
class BlockStart:
    """An opening `[CALL]`, `[TRAP]` (or, reading interrupts, `[INTR]`) was recognised; a
    critical section begins."""

    kind: Literal["call", "trap", "interrupt"]
    raw: str


@dataclass(frozen=True, slots=True)
class Call:
    """A complete call block; emitted the moment its `[END]` is complete.

    Attributes:
        id: The call id (assigned as `call_<n>` for an anonymous call).
        body: The call text between `[HEAD]` (or `[CALL]`) and `[END]`, stripped.
        anonymous: Whether the id was assigned by the parser.
        raw: The block's text after the opening marker, `[END]` included.
    """

    id: str
    body: str
    anonymous: bool
    raw: str


@dataclass(frozen=True, slots=True)
class Trap:
    """A complete `[TRAP][END]` block: the model waits for a pending call."""

    raw: str


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A complete `[INTR] <id> [HEAD] <value> [END]` block (read with `interrupts=True`).

    Attributes:
        id: The id of the call it answers (or the runtime's own, such as `user`).
        value: The text between `[HEAD]` and `[END]`, stripped.
        raw: The block's text after the opening marker, `[END]` included.
    """

    id: str
    value: str
    raw: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """Input that breaks the protocol; the parser is back in Normal state after it.

    Attributes:
        reason: A short explanation, fit to show to the model.
        raw: The characters this event accounts for (possibly empty, e.g. for `[TRAP]`
            followed by text, where the text is reported as `Text` after it).
    """

    reason: str
    raw: str


Event = Text | BlockStart | Call | Trap | Interrupt | Malformed


class State(enum.Enum):
    """Where the parser is in the CML grammar."""

    NORMAL = "normal"
    CALL_ID = "call_id"
    CALL_BODY = "call_body"
    TRAP = "trap"
    INTERRUPT_ID = "interrupt_id"
    INTERRUPT_BODY = "interrupt_body"


_BLOCK_KINDS = {
    State.CALL_ID: "call",
    State.CALL_BODY: "call",
    State.TRAP: "trap",
    State.INTERRUPT_ID: "interrupt",
    State.INTERRUPT_BODY: "interrupt",
}


def _is_marker_prefix(text: str) -> bool:
    """Whether `text` is a proper prefix of some marker (so more input may complete it)."""
    return any(marker.startswith(text) and marker != text for marker in MARKERS)


def _next_marker(buf: str, start: int) -> tuple[int, str | None]:
    """Finds the next marker, or the held-back marker prefix, in `buf` from `start`.

    Returns:
        `(index, marker)` for a complete marker, `(index, None)` for a marker prefix that
        ends `buf`, `(len(buf), None)` when there is neither.
    """
    found = _MARKER_RE.search(buf, start)
    if found is not None:
        return found.start(), found.group()
    # A marker prefix holds a single "[", so only the last one can start a held-back prefix.
    last = buf.rfind("[", max(start, len(buf) - _MAX_MARKER_LEN + 1))
    if last != -1 and _is_marker_prefix(buf[last:]):
        return last, None
    return len(buf), None


class CMLParser:
    """Streaming CML parser.

    Example:
        >>> parser = CMLParser()
        >>> events = parser.feed("Hi [CALL] w1 [HEAD] f(x=1) [E")
        >>> events += parser.feed("ND] bye")
        >>> [type(e).__name__ for e in events]
        ['Text', 'BlockStart', 'Call', 'Text']

    Args:
        max_body_chars: Longest block content (everything between the opening marker and
            `[END]`) accepted; a longer block becomes `Malformed` as soon as it exceeds it.
        call_ids: The turn's call-id registry (a call with an invalid, duplicate or reserved id
            is `Malformed`; anonymous calls get their ids from it); a fresh one by default.
        interrupts: Read `[INTR]` blocks as `Interrupt` events: for a transcript that holds
            the runtime's interrupts too. By default `[INTR]` is a forgery (`Malformed`).
    """

    def __init__(
        self,
        max_body_chars: int = DEFAULT_MAX_BODY_CHARS,
        *,
        call_ids: CallIds | None = None,
        interrupts: bool = False,
    ) -> None:
        if max_body_chars < 1:
            raise ValueError(f"max_body_chars must be positive, got {max_body_chars}")
        self.max_body_chars = max_body_chars
        self.call_ids = call_ids if call_ids is not None else CallIds()
        self.reads_interrupts = interrupts
        self._state = State.NORMAL
        self._pending = ""  # unprocessed input: at most a marker prefix between calls
        self._block = ""  # block content seen so far, opening marker excluded
        self._call_id: str | None = None
        self._body_start = 0  # where the body starts in _block (0: no [HEAD] yet)
        self._error: str | None = None  # a doomed block is reported at its [END]
        self._text: list[str] = []
        self._out: list[Event] = []

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def in_block(self) -> bool:
        """Whether the model is inside a CML block (a critical section: no interrupts)."""
        return self._state is not State.NORMAL

    @property
    def safe_to_inject(self) -> bool:
        """Whether an interrupt may be injected now: Normal state, nothing held back."""
        return self._state is State.NORMAL and not self._pending

    def feed(self, piece: str) -> list[Event]:
        """Consumes the next piece of sampled text.

        Args:
            piece: Any text: one token's text, a fragment of a marker, or many blocks.

        Returns:
            The events completed by this piece, in order.
        """
        buf = self._pending + piece
        self._pending = ""
        pos = 0
        while pos < len(buf):
            index, marker = _next_marker(buf, pos)
            if index > pos:
                pos += self._take_content(buf[pos:index])
                continue
            if marker is None:
                self._pending = buf[index:]
                break
            pos = index + self._take_marker(marker)
        return self._drain()

    def close(self) -> list[Event]:
        """Ends the stream: releases held-back text and reports an unfinished block.

        The parser is back in Normal state afterwards and may be fed again.

        Returns:
            The final events.
        """
        rest, self._pending = self._pending, ""
        if self._state is State.NORMAL:
            self._text.append(rest)
        else:
            kind = _BLOCK_KINDS[self._state]
            self._fail(f"the stream ended inside a {kind} block", self._block + rest)
        return self._drain()

    # --- content between markers -------------------------------------------------------

    def _take_content(self, content: str) -> int:
        """Consumes a marker-free run of text; returns how many characters were used."""
        if self._state is State.NORMAL:
            self._text.append(content)
            return len(content)
        if self._state is State.TRAP:
            return self._take_trap_content(content)
        room = self.max_body_chars + 1 - len(self._block)
        if len(content) < room:
            self._block += content
            return len(content)
        self._fail(self._too_long(_BLOCK_KINDS[self._state]), self._block + content[:room])
        return room

    def _take_trap_content(self, content: str) -> int:
        stripped = content.lstrip()
        used = len(content) - len(stripped)
        room = self.max_body_chars + 1 - len(self._block)
        if used >= room:
            self._fail(self._too_long("trap"), self._block + content[:room])
            return room
        self._block += content[:used]
        if stripped:
            self._fail("[TRAP] must be followed directly by [END]", self._block)
        return used

    def _too_long(self, kind: str) -> str:
        return f"{kind} block longer than {self.max_body_chars} characters"

    # --- markers -----------------------------------------------------------------------

    def _take_marker(self, marker: str) -> int:
        """Handles a complete marker; returns how many characters were used (0: re-read)."""
        handler = _HANDLERS[self._state]
        return handler(self, marker)

    def _marker_in_normal(self, marker: str) -> int:
        if marker == CALL:
            self._start_block(State.CALL_ID, "call", marker)
        elif marker == TRAP:
            self._start_block(State.TRAP, "trap", marker)
        elif marker == INTR and self.reads_interrupts:
            self._start_block(State.INTERRUPT_ID, "interrupt", marker)
        elif marker == INTR:
            self._fail("[INTR] is written by the runtime only; the model may not write it", marker)
        else:
            self._fail(f"{marker} outside a block", marker)
        return len(marker)

    def _marker_in_call(self, marker: str) -> int:
        if marker == END:
            self._finish_call(self._block + marker)
        elif marker == HEAD:
            self._take_head()
        elif marker == INTR:
            reason = "[INTR] inside a call block: the model may not write it"
            self._fail(reason, self._block + marker)
        else:
            self._fail(f"{marker} inside a call block: end the call with [END] first", self._block)
            return 0
        return len(marker)

    def _marker_in_interrupt(self, marker: str) -> int:
        if marker == END:
            self._finish_interrupt(self._block + marker)
        elif marker == HEAD:
            self._take_interrupt_head()
        else:
            self._fail(f"{marker} inside an interrupt block", self._block)
            return 0
        return len(marker)

    def _marker_in_trap(self, marker: str) -> int:
        if marker == END:
            self._emit(Trap(self._block + marker))
            self._reset_block()
        elif marker in (CALL, TRAP):
            self._fail("[TRAP] must be followed directly by [END]", self._block)
            return 0
        else:
            self._fail("[TRAP] must be followed directly by [END]", self._block + marker)
        return len(marker)

    def _take_head(self) -> None:
        if self._state is State.CALL_BODY:
            self._error = self._error or "a call block has only one [HEAD]"
        else:
            self._call_id = self._block.strip()
            self._error = self.call_ids.problem(self._call_id)
            self._state = State.CALL_BODY
        self._block += HEAD
        self._body_start = self._body_start or len(self._block)

    def _take_interrupt_head(self) -> None:
        if self._state is State.INTERRUPT_BODY:
            self._error = self._error or "an interrupt block has only one [HEAD]"
        else:
            self._call_id = self._block.strip()
            if not is_identifier(self._call_id):
                self._error = f"invalid interrupt id {self._call_id[:40]!r}"
            self._state = State.INTERRUPT_BODY
        self._block += HEAD
        self._body_start = self._body_start or len(self._block)

    def _finish_interrupt(self, raw: str) -> None:
        if self._state is State.INTERRUPT_ID:
            self._fail("an interrupt block needs [HEAD]", raw)
        elif self._error is not None:
            self._fail(self._error, raw)
        else:
            value = self._block[self._body_start :].strip()
            self._emit(Interrupt(self._call_id or "", value, raw))
            self._reset_block()

    def _finish_call(self, raw: str) -> None:
        anonymous = self._state is State.CALL_ID
        body = self._block[self._body_start :].strip()
        error = self._error or (None if body else "empty call")
        if error is not None:
            self._fail(error, raw)
            return
        if self._call_id is None:
            call_id = self.call_ids.new_anonymous()
        else:
            call_id = self._call_id
            self.call_ids.add(call_id)
        self._emit(Call(call_id, body, anonymous, raw))
        self._reset_block()

    # --- bookkeeping -------------------------------------------------------------------

    def _start_block(
        self, state: State, kind: Literal["call", "trap", "interrupt"], marker: str
    ) -> None:
        self._emit(BlockStart(kind, marker))
        self._state = state

    def _fail(self, reason: str, raw: str) -> None:
        self._emit(Malformed(reason, raw))
        self._reset_block()

    def _reset_block(self) -> None:
        self._state = State.NORMAL
        self._block = ""
        self._call_id = None
        self._body_start = 0
        self._error = None

    def _emit(self, event: Event) -> None:
        self._flush_text()
        self._out.append(event)

    def _flush_text(self) -> None:
        text = "".join(self._text)
        self._text.clear()
        if text:
            self._out.append(Text(text))

    def _drain(self) -> list[Event]:
        self._flush_text()
        events, self._out = self._out, []
        return events


_HANDLERS: dict[State, Callable[[CMLParser, str], int]] = {
    State.NORMAL: CMLParser._marker_in_normal,
    State.CALL_ID: CMLParser._marker_in_call,
    State.CALL_BODY: CMLParser._marker_in_call,
    State.TRAP: CMLParser._marker_in_trap,
    State.INTERRUPT_ID: CMLParser._marker_in_interrupt,
    State.INTERRUPT_BODY: CMLParser._marker_in_interrupt,
}
