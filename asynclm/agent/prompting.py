"""The agent's prompt, rendered: the one renderer the runtime and fine-tuning share.

An agent's prompt is its system turn — instructions with the CML protocol, one part per tool's
documentation, an optional worked example — then the user's turn and the opening of the
assistant's turn, in the model's chat template. `prompt_pieces` lists the texts exactly as the
runtime encodes them, piece by piece (each piece is encoded on its own: piece boundaries are
token boundaries; only the runtime's own pieces with special tokens recognised), so training
data rendered with it matches what the model sees at run time token for token.

Pure: no torch, no engine; the chat template is anything with the `ChatTemplate` shape (the
engine tokenizer's `chat`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.cml.tokens import marker_pieces
from asynclm.tooling import Tool, clean_text, describe_tool, xml_text

__all__ = [
    "EXAMPLE",
    "PROTOCOL",
    "ChatTemplate",
    "Piece",
    "PromptPart",
    "history_pieces",
    "output_instructions",
    "prompt_pieces",
    "system_parts",
    "system_pieces",
    "user_pieces",
]

PROTOCOL = """You can use tools. To call one, write a call block and keep writing:
[CALL] <id> [HEAD] <tool>(<name>=<value>, ...) [END]
<id> is a short name you choose (w1, w2, ...). Calls run in the background while you write; each
result arrives later as [INTR] <id> [HEAD] <result> [END]. To wait for a result that has not
arrived, write [TRAP][END]. Never write [INTR] yourself. Start every independent call first, the
slowest first (see "takes about"), then wait. Answer the user in plain text."""

EXAMPLE = """Example:
User: What is 2+3 and 10*4?
Assistant: [CALL] c1 [HEAD] calculator(expression="2+3") [END] \
[CALL] c2 [HEAD] calculator(expression="10*4") [END] [TRAP][END]\
[INTR] c1 [HEAD] 5 [END][INTR] c2 [HEAD] 40 [END] 2+3 is 5 and 10*4 is 40."""

DEFAULT_INSTRUCTIONS = "You are a helpful assistant."

_PLAIN = "Answer the user in plain text."
_FORMATTED = "Answer the user as the answer format below says."

OUTPUT_FORMAT = """Answer format: when you have what you need, write your answer as one JSON \
value matching this JSON schema, and nothing after it:
"""


class ChatTemplate(Protocol):
    """The texts that open and close chat turns (the engine tokenizer's `chat` has them)."""

    @property
    def begin(self) -> str:
        """Text that opens the conversation (e.g. a BOS text), or ""."""
        ...

    @property
    def generation_prompt(self) -> str:
        """Text that opens the assistant's turn to generate into."""
        ...

    def role_prefix(self, role: str) -> str:
        """Text that opens a turn of `role`."""
        ...

    def role_suffix(self, role: str) -> str:
        """Text that closes a turn of `role`."""
        ...


@dataclass(frozen=True, slots=True)
class PromptPart:
    """A named part of the system prompt (Prompt Cache keeps each part's K/V as a module).

    Attributes:
        name: The part's name: "instructions", "protocol", "tool.<i>.<tool name>",
            "example" or "output" (a structured answer's JSON schema).
        text: Its text.
        special: Whether the runtime wrote it (the protocol, the example): encoded with the
            CML markers as the model's special tokens, the same tokens the model writes. The
            user's instructions and tool documents are plain text, whatever they contain.
    """

    name: str
    text: str
    special: bool = False


def system_parts(
    tools: Sequence[Tool],
    instructions: str | None = None,
    *,
    example: bool = True,
    output_schema: Mapping[str, Any] | None = None,
) -> list[PromptPart]:
    """The system prompt as named parts: the instructions (when given), the protocol, one per
    tool, the example, the answer's format (with `output_schema`).

    Agents that share instructions and leading tools share those parts' cached K/V. Characters
    a prompt module cannot carry (see `asynclm.tooling.xml_text`) become U+FFFD.

    Args:
        tools: The agent's tools, in order.
        instructions: What the user of the agent tells the model first; None for none.
        example: Whether to end with a worked CML example (helps untuned models).
        output_schema: The JSON schema of a structured answer, stated last; None for text.

    Returns:
        The parts, in order. An agent without tools gets its instructions (and the answer's
        format) only.
    """
    head = [PromptPart("instructions", xml_text(instructions.strip()))] if instructions else []
    if not tools:
        parts = head or [PromptPart("instructions", DEFAULT_INSTRUCTIONS)]
    else:
        if head:
            head = [PromptPart("instructions", head[0].text + "\n\n")]
        protocol = PROTOCOL if output_schema is None else PROTOCOL.replace(_PLAIN, _FORMATTED)
        parts = [*head, PromptPart("protocol", protocol + "\n\nTools:\n", special=True)]
        parts += [
            PromptPart(f"tool.{i}.{t.name}", xml_text(describe_tool(t)) + "\n")
            for i, t in enumerate(tools)
        ]
        if example:
            parts.append(PromptPart("example", "\n" + EXAMPLE, special=True))
    if output_schema is not None:
        parts.append(PromptPart("output", output_instructions(output_schema)))
    return parts


def output_instructions(schema: Mapping[str, Any]) -> str:
    """The part of the system prompt that states a structured answer's JSON schema."""
    return "\n\n" + xml_text(OUTPUT_FORMAT + json.dumps(schema, separators=(",", ":")))


class Piece(NamedTuple):
    """A text the runtime encodes on its own.

    Attributes:
        text: The text.
        special: Whether the runtime wrote it (the chat template's role prefixes and suffixes,
            the CML protocol and example), encoded with the model's special tokens recognised;
            anything else (instructions, tool docs, the user's message) is plain text, whatever
            it contains.
    """

    text: str
    special: bool = False


def system_pieces(chat: ChatTemplate, parts: Sequence[PromptPart]) -> list[Piece]:
    """The system turn as the pieces the runtime encodes: its opening, one per part, its end.

    The turn's closing is a piece of its own, so a part's K/V depends only on what comes
    before it (agents whose prompts share a beginning share its cached K/V).

    Raises:
        ValueError: If `parts` is empty.
    """
    if not parts:
        raise ValueError("a system prompt needs at least one part")
    opening = Piece(chat.begin + chat.role_prefix("system"), special=True)
    body = [Piece(part.text, part.special) for part in parts]
    return [opening, *body, Piece(chat.role_suffix("system"), special=True)]


def user_pieces(chat: ChatTemplate, user: str) -> list[Piece]:
    """The user's turn and the opening of the assistant's, as the pieces the runtime encodes."""
    return [*_turn(chat, "user", [Piece(clean_text(user))]), Piece(chat.generation_prompt, True)]


def history_pieces(
    chat: ChatTemplate, history: Sequence[UserMessage | AssistantMessage]
) -> list[Piece]:
    """Earlier turns of a conversation as the pieces the runtime encodes: each turn's opening,
    its text, its closing.

    A user's text is plain text. An assistant turn is its whole transcript, calls and
    interrupts included: the CML markers in it are the model's special tokens (as the model
    wrote them and the runtime injected them), everything else — the model's text, call
    arguments, tool results — plain text, so that text a tool returned cannot become a control
    token in a later turn.
    """
    pieces: list[Piece] = []
    for message in history:
        if isinstance(message, UserMessage):
            pieces += _turn(chat, "user", [Piece(clean_text(message.content))])
        else:
            body = [Piece(text, special) for text, special in marker_pieces(message.transcript)]
            pieces += _turn(chat, "assistant", body)
    return pieces


def _turn(chat: ChatTemplate, role: str, body: list[Piece]) -> list[Piece]:
    return [Piece(chat.role_prefix(role), True), *body, Piece(chat.role_suffix(role), True)]


def prompt_pieces(
    chat: ChatTemplate,
    parts: Sequence[PromptPart],
    user: str,
    history: Sequence[UserMessage | AssistantMessage] = (),
) -> list[Piece]:
    """The agent's whole prompt as the pieces it prefills, in order, each encoded on its own.

    `[begin + system prefix, parts[0], ..., parts[-1], system suffix, <history>, user prefix,
    user, user suffix, generation prompt]`: concatenating
    `tokenizer.encode(p.text, special=p.special)` over the pieces gives exactly the tokens of a
    run's context at its first generation step.

    Args:
        chat: The model's chat template.
        parts: The system prompt's parts (`system_parts`).
        user: The user's message.
        history: Earlier turns of the conversation (see `history_pieces`).

    Returns:
        The pieces.
    """
    return system_pieces(chat, parts) + history_pieces(chat, history) + user_pieces(chat, user)
