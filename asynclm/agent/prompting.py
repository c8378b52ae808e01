"""The agent's prompt, rendered: the one renderer the runtime and fine-tuning share.

An agent's prompt is its system turn — instructions with the CML protocol, one part per tool's
documentation, an optional worked example — then the user's turn and the opening of the
assistant's turn, in the model's chat template. `prompt_pieces` lists the texts exactly as the
runtime encodes them, piece by piece (each piece is encoded on its own: piece boundaries are
token boundaries), so training data rendered with it matches what the model sees at run time
token for token.

Pure: no torch, no engine; the chat template is anything with the `ChatTemplate` shape (the
engine tokenizer's `chat`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.tooling import Tool, clean_text, describe_tool, xml_text

__all__ = [
    "EXAMPLE",
    "PROTOCOL",
    "ChatTemplate",
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
        name: The part's name: "instructions", "tool.<i>.<tool name>" or "example".
        text: Its text.
    """

    name: str
    text: str


def system_parts(
    tools: Sequence[Tool],
    instructions: str | None = None,
    *,
    example: bool = True,
    output_schema: Mapping[str, Any] | None = None,
) -> list[PromptPart]:
    """The system prompt as named parts: instructions + protocol, one per tool, the example,
    the answer's format.

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
    head = [instructions.strip()] if instructions else []
    if not tools:
        parts = [PromptPart("instructions", xml_text("\n\n".join(head) or DEFAULT_INSTRUCTIONS))]
    else:
        protocol = PROTOCOL if output_schema is None else PROTOCOL.replace(_PLAIN, _FORMATTED)
        text = "\n\n".join([*head, protocol, "Tools:\n"])
        parts = [PromptPart("instructions", xml_text(text))]
        parts += [
            PromptPart(f"tool.{i}.{t.name}", xml_text(describe_tool(t)) + "\n")
            for i, t in enumerate(tools)
        ]
        if example:
            parts.append(PromptPart("example", "\n" + EXAMPLE))
    if output_schema is not None:
        parts.append(PromptPart("output", output_instructions(output_schema)))
    return parts


def output_instructions(schema: Mapping[str, Any]) -> str:
    """The part of the system prompt that states a structured answer's JSON schema."""
    return "\n\n" + xml_text(OUTPUT_FORMAT + json.dumps(schema, separators=(",", ":")))


def system_pieces(chat: ChatTemplate, parts: Sequence[PromptPart]) -> list[str]:
    """The system turn as the texts the runtime encodes: one per part, then the turn's end.

    The turn's opening goes into the first piece and its closing into a last one of its own,
    so a part's K/V depends only on what comes before it (agents whose prompts share a
    beginning share its cached K/V).

    Raises:
        ValueError: If `parts` is empty.
    """
    if not parts:
        raise ValueError("a system prompt needs at least one part")
    first = chat.begin + chat.role_prefix("system") + parts[0].text
    return [first, *(part.text for part in parts[1:]), chat.role_suffix("system")]


def user_pieces(chat: ChatTemplate, user: str) -> list[str]:
    """The user's turn and the opening of the assistant's, as the texts the runtime encodes."""
    return [*_turn(chat, "user", user), chat.generation_prompt]


def history_pieces(
    chat: ChatTemplate, history: Sequence[UserMessage | AssistantMessage]
) -> list[str]:
    """Earlier turns of a conversation as the texts the runtime encodes: each turn's opening,
    its text (an assistant turn's whole transcript, calls and interrupts included), its
    closing."""
    pieces: list[str] = []
    for message in history:
        if isinstance(message, UserMessage):
            pieces += _turn(chat, "user", message.content)
        else:
            pieces += _turn(chat, "assistant", message.transcript)
    return pieces


def _turn(chat: ChatTemplate, role: str, text: str) -> list[str]:
    return [chat.role_prefix(role), clean_text(text), chat.role_suffix(role)]


def prompt_pieces(
    chat: ChatTemplate,
    parts: Sequence[PromptPart],
    user: str,
    history: Sequence[UserMessage | AssistantMessage] = (),
) -> list[str]:
    """The agent's whole prompt as the texts it prefills, in order, each encoded on its own.

    `[begin + system prefix + parts[0], parts[1], ..., system suffix, <history>, user prefix,
    user, user suffix, generation prompt]`: concatenating `tokenizer.encode(piece)` over the
    pieces gives exactly the tokens of a run's context at its first generation step.

    Args:
        chat: The model's chat template.
        parts: The system prompt's parts (`system_parts`).
        user: The user's message.
        history: Earlier turns of the conversation (see `history_pieces`).

    Returns:
        The pieces.
    """
    return system_pieces(chat, parts) + history_pieces(chat, history) + user_pieces(chat, user)
