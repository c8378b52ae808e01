"""CML markers and the functions that write CML text.

The model writes `[CALL] <id> [HEAD] <call> [END]` and `[TRAP][END]`; the runtime writes
`[INTR] <id> [HEAD] <value> [END]`. Everything written here is read back by
:class:`asynclm.cml.parser.CMLParser` and :func:`asynclm.cml.call.parse_call`.
"""

from __future__ import annotations

import keyword
import math
import re
from typing import Any

CALL = "[CALL]"
HEAD = "[HEAD]"
END = "[END]"
TRAP = "[TRAP]"
INTR = "[INTR]"
MARKERS: tuple[str, ...] = (CALL, HEAD, END, TRAP, INTR)
_MARKER = re.compile("|".join(re.escape(marker) for marker in MARKERS))

# Substitutes used by `neutralize`: FULLWIDTH LEFT/RIGHT SQUARE BRACKET. They read like
# brackets, are never part of a marker and tokenize apart from "[" and "]".
SAFE_OPEN = "\uff3b"
SAFE_CLOSE = "\uff3d"


def is_identifier(text: str) -> bool:
    """Whether `text` is a valid call id: a Python identifier that is not a keyword."""
    return text.isidentifier() and not keyword.iskeyword(text)


def is_dotted_name(text: str) -> bool:
    """Whether `text` is a tool name: identifiers joined by dots (`math.factorial`)."""
    return all(is_identifier(part) for part in text.split("."))


def format_value(value: Any) -> str:
    """Renders a JSON-like value as a Python literal that `parse_call` reads back.

    Marker text inside strings is escaped (`[` as `\\x5b`), so a rendered call block can never
    be cut short by a string argument.

    Args:
        value: None, bool, int, finite float, str, or lists, tuples and dicts (string keys)
            of these.

    Returns:
        The Python literal.

    Raises:
        ValueError: For any other type, a non-finite float or a non-string dict key.
    """
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot render non-finite float {value!r}")
        return repr(value)
    if isinstance(value, str):
        return _escape_markers(repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, tuple):
        items = [format_value(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(_format_item(key, item) for key, item in value.items()) + "}"
    raise ValueError(f"cannot render a {type(value).__name__} as a CML literal")


def _format_item(key: Any, value: Any) -> str:
    if not isinstance(key, str):
        raise ValueError(f"dict keys must be strings, got {type(key).__name__}")
    return f"{format_value(key)}: {format_value(value)}"


def _escape_markers(literal: str) -> str:
    # In a repr()'d string every "[" is a literal character (no escape contains one), so
    # rewriting it as the escape \x5b keeps the value and removes the marker.
    for marker in MARKERS:
        literal = literal.replace(marker, "\\x5b" + marker[1:])
    return literal


def format_call(call_id: str, name: str, args: dict[str, Any]) -> str:
    """Writes a call block, keyword style: `[CALL] w1 [HEAD] f(x=1) [END]`.

    Args:
        call_id: The call id (a Python identifier, not a keyword).
        name: The tool name, possibly dotted.
        args: Keyword arguments; values as accepted by :func:`format_value`.

    Returns:
        The call block text.

    Raises:
        ValueError: If the id, the name, an argument name or a value is not valid.
    """
    if not is_identifier(call_id):
        raise ValueError(f"invalid call id {call_id!r}")
    return f"{CALL} {call_id} {HEAD} {format_body(name, args)} {END}"


def format_body(name: str, args: dict[str, Any]) -> str:
    """Writes a call's body, keyword style: `f(x=1, y='a')` (what a call block holds).

    Raises:
        ValueError: If the name, an argument name or a value is not valid.
    """
    if not is_dotted_name(name):
        raise ValueError(f"invalid tool name {name!r}")
    for key in args:
        if not is_identifier(key):
            raise ValueError(f"invalid argument name {key!r}")
    rendered = ", ".join(f"{key}={format_value(value)}" for key, value in args.items())
    return f"{name}({rendered})"


def format_trap() -> str:
    """Writes a trap block: the model waits for a pending call."""
    return f"{TRAP}{END}"


def format_interrupt(call_id: str, value: str) -> str:
    """Writes an interrupt block carrying a call's result (or error) text.

    Args:
        call_id: The id of the call this result answers.
        value: The result text; it is passed through :func:`neutralize`.

    Returns:
        `[INTR] <id> [HEAD] <value> [END]`.

    Raises:
        ValueError: If `call_id` is not a valid id.
    """
    return "".join(text for text, _ in interrupt_pieces(call_id, value))


def interrupt_pieces(call_id: str, value: str) -> tuple[tuple[str, bool], ...]:
    """`format_interrupt`'s text in pieces: `(text, written by the runtime)`.

    Encode the runtime's own pieces (markers and id) with the model's special tokens
    recognised (a model tuned with the markers as special tokens reads them as such) and the
    value as plain text, whatever it holds: a result saying `<|im_end|>` cannot end the turn.

    Raises:
        ValueError: If `call_id` is not a valid id.
    """
    if not is_identifier(call_id):
        raise ValueError(f"invalid call id {call_id!r}")
    return ((f"{INTR} {call_id} {HEAD}", True), (f" {neutralize(value)}", False), (f" {END}", True))


def marker_pieces(text: str) -> tuple[tuple[str, bool], ...]:
    """CML text in pieces `(text, is a marker)`: each marker, and the text between them.

    Re-encoding a transcript (an earlier turn of a conversation), encode the markers with the
    model's special tokens recognised (as the model wrote them and the runtime injected them)
    and everything else as plain text: a tool result or an argument saying `<|im_end|>` stays
    text.
    """
    pieces: list[tuple[str, bool]] = []
    done = 0
    for found in _MARKER.finditer(text):
        if found.start() > done:
            pieces.append((text[done : found.start()], False))
        pieces.append((found.group(), True))
        done = found.end()
    if done < len(text):
        pieces.append((text[done:], False))
    return tuple(pieces)


def neutralize(text: str) -> str:
    """Makes marker text inside a value harmless, keeping it readable.

    Substitution: the `[` of every complete marker (`[END]`) becomes the fullwidth bracket
    `［` (U+FF3B), giving `［END]`. The same is done to a marker prefix at the very end of the
    text (`... [CA`), and the `]` of a marker suffix at the very start (`LL] ...`) becomes
    `］` (U+FF3D), so the value cannot complete a marker with whatever is written around it.
    The result contains no marker and no such edge fragment, so `neutralize` is idempotent.

    Args:
        text: Any text.

    Returns:
        The text with markers neutralized; unchanged if it contains none.
    """
    for marker in MARKERS:
        text = text.replace(marker, SAFE_OPEN + marker[1:])
    cut = _trailing_prefix_start(text)
    if cut is not None:
        text = text[:cut] + SAFE_OPEN + text[cut + 1 :]
    end = _leading_suffix_end(text)
    if end is not None:
        text = text[: end - 1] + SAFE_CLOSE + text[end:]
    return text


def _trailing_prefix_start(text: str) -> int | None:
    """Start of a proper marker prefix ("[", "[CA", ...) that ends the text, if any."""
    start = text.rfind("[")
    if start == -1:
        return None
    tail = text[start:]
    if any(marker.startswith(tail) and marker != tail for marker in MARKERS):
        return start
    return None


def _leading_suffix_end(text: str) -> int | None:
    """End of a proper marker suffix ("]", "LL]", ...) that starts the text, if any."""
    end = text.find("]") + 1
    if end == 0:
        return None
    head = text[:end]
    if any(marker.endswith(head) and marker != head for marker in MARKERS):
        return end
    return None
