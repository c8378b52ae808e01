"""A conversation as typed messages: what `RunResult.messages` holds, JSON both ways.

A user turn is its text. An assistant turn is its transcript — the model's text, its call
blocks and traps, and the interrupts the runtime injected into it — as parts, in order; the
parts' `raw` texts joined give the transcript exactly, so a conversation read back from JSON
renders to the same prompt. The agent's system prompt is not a message: every run renders its
own (its tools may have changed).

Pure: no torch, no engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from asynclm.cml.call import CallSyntaxError, parse_call
from asynclm.cml.ids import CallIds
from asynclm.cml.parser import BlockStart, Call, CMLParser, Event, Interrupt, Malformed, Trap

__all__ = [
    "ERROR_ID",
    "OUTPUT_ID",
    "RUNTIME_IDS",
    "USER_ID",
    "AssistantMessage",
    "CallPart",
    "InterruptPart",
    "MalformedPart",
    "Message",
    "Part",
    "TextPart",
    "TrapPart",
    "UserMessage",
    "messages_from_json",
    "messages_to_json",
    "parse_transcript",
]

USER_ID = "user"  # the id of user interrupts
ERROR_ID = "error"  # the id of errors not tied to a call (a malformed block)
OUTPUT_ID = "output"  # the id of a structured answer's validation errors
RUNTIME_IDS = (USER_ID, ERROR_ID, OUTPUT_ID)  # reserved: the model may not name a call so

_NO_LIMIT = 1 << 40  # read blocks of any length back


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text the model wrote outside CML blocks."""

    text: str
    kind: Literal["text"] = "text"

    @property
    def raw(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class CallPart:
    """A call block the model wrote.

    Attributes:
        call_id: Its id.
        tool: The tool it names ("" when the call does not parse).
        arguments: Its keyword arguments ({} when it does not parse).
        raw: The block as written, markers included.
    """

    call_id: str
    tool: str
    arguments: dict[str, Any]
    raw: str
    kind: Literal["call"] = "call"


@dataclass(frozen=True, slots=True)
class TrapPart:
    """A trap: the model waited for results."""

    raw: str
    kind: Literal["trap"] = "trap"


@dataclass(frozen=True, slots=True)
class InterruptPart:
    """An interrupt the runtime injected: a call's result or error, a user message (id
    `user`), a structured answer's validation error (id `output`)."""

    call_id: str
    content: str
    raw: str
    kind: Literal["interrupt"] = "interrupt"


@dataclass(frozen=True, slots=True)
class MalformedPart:
    """Text that broke the protocol (the model was told, with an error interrupt)."""

    reason: str
    raw: str
    kind: Literal["malformed"] = "malformed"


Part = Annotated[
    TextPart | CallPart | TrapPart | InterruptPart | MalformedPart, Field(discriminator="kind")
]


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A user's turn."""

    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    """The model's turn, as parts in order."""

    parts: tuple[Part, ...]
    role: Literal["assistant"] = "assistant"

    @classmethod
    def from_transcript(cls, transcript: str) -> AssistantMessage:
        """The message of a turn's transcript (see `parse_transcript`)."""
        return cls(tuple(parse_transcript(transcript)))

    @property
    def transcript(self) -> str:
        """The turn exactly as the model saw it."""
        return "".join(part.raw for part in self.parts)

    @property
    def answer(self) -> str:
        """The answer: the text after the turn's last block or call interrupt (see
        `split_text`), stripped."""
        return split_text(self.parts)[1]

    @property
    def interim(self) -> tuple[str, ...]:
        """The text the model wrote before its answer: one entry per stretch between blocks
        and call interrupts (stripped, empty ones left out)."""
        return split_text(self.parts)[0]


Message = Annotated[UserMessage | AssistantMessage, Field(discriminator="role")]

_MESSAGES: TypeAdapter[list[Message]] = TypeAdapter(list[Message])


def messages_to_json(messages: Iterable[UserMessage | AssistantMessage]) -> str:
    """The messages as a JSON array (`messages_from_json` reads it back)."""
    return _MESSAGES.dump_json(list(messages)).decode()


def messages_from_json(data: str | bytes) -> list[UserMessage | AssistantMessage]:
    """Messages from `messages_to_json`'s JSON.

    Raises:
        pydantic.ValidationError: The JSON is not a list of messages (every problem listed).
    """
    return _MESSAGES.validate_json(data)


AnyPart = TextPart | CallPart | TrapPart | InterruptPart | MalformedPart


def parse_transcript(transcript: str) -> list[AnyPart]:
    """An assistant turn's transcript as parts; their `raw` texts joined give it back."""
    parser = CMLParser(_NO_LIMIT, call_ids=CallIds(reserved=RUNTIME_IDS), interrupts=True)
    parts: list[AnyPart] = []
    opening = ""
    for event in [*parser.feed(transcript), *parser.close()]:
        if isinstance(event, BlockStart):
            opening += event.raw
            continue
        part = _part(event, opening)
        opening = ""
        last = parts[-1] if parts else None
        if isinstance(part, TextPart) and isinstance(last, TextPart):
            parts.pop()
            part = TextPart(last.text + part.text)
        if part.raw:
            parts.append(part)
    return parts


def _part(event: Event, opening: str) -> AnyPart:
    raw = opening + event.raw
    if isinstance(event, Call):
        tool, arguments = _call_name(event.body)
        return CallPart(event.id, tool, arguments, raw)
    if isinstance(event, Trap):
        return TrapPart(raw)
    if isinstance(event, Interrupt):
        return InterruptPart(event.id, event.value, raw)
    if isinstance(event, Malformed):
        return MalformedPart(event.reason, raw)
    return TextPart(raw)  # Text: the parser's other events were handled above


def _call_name(body: str) -> tuple[str, dict[str, Any]]:
    try:
        parsed = parse_call(body)
    except CallSyntaxError:
        return "", {}
    return parsed.name, dict(parsed.kwargs) if not parsed.args else {}


def split_text(parts: Sequence[Any]) -> tuple[tuple[str, ...], str]:
    """(interim texts, answer) of a turn's parts.

    The answer is the text after the model's last block (call, trap, malformed) or the last
    error the runtime injected (a malformed block's, a rejected answer's); each stretch of text
    before it is an interim text. A call's result does not split the text around it: in async
    mode results arrive while the model writes, often mid-sentence. Nor does a user's message:
    the model answers it in the same stretch.
    """
    stretches: list[str] = [""]
    for part in parts:
        if isinstance(part, TextPart):
            stretches[-1] += part.text
        elif not isinstance(part, InterruptPart) or part.call_id in (ERROR_ID, OUTPUT_ID):
            stretches.append("")
    *before, answer = stretches
    return tuple(s.strip() for s in before if s.strip()), answer.strip()
