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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from asynclm.tooling import Tool, describe_tool

__all__ = [
    "EXAMPLE",
    "PROTOCOL",
    "ChatTemplate",
    "Piece",
    "PromptPart",
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
        name: The part's name: "instructions", "protocol", "tool.<i>.<tool name>" or
            "example".
        text: Its text.
        special: Whether the runtime wrote it (the protocol, the example): encoded with the
            CML markers as the model's special tokens, the same tokens the model writes. The
            user's instructions and tool documents are plain text, whatever they contain.
    """

    name: str
    text: str
    special: bool = False


def system_parts(
    tools: Sequence[Tool], instructions: str | None = None, *, example: bool = True
) -> list[PromptPart]:
    """The system prompt as named parts: instructions + protocol, one per tool, the example.

    Agents that share instructions and leading tools share those parts' cached K/V.

    Args:
        tools: The agent's tools, in order.
        instructions: What the user of the agent tells the model first; None for none.
        example: Whether to end with a worked CML example (helps untuned models).

    Returns:
        The parts, in order. An agent without tools gets only its instructions.
    """
    if not tools:
        text = instructions.strip() if instructions else DEFAULT_INSTRUCTIONS
        return [PromptPart("instructions", text)]
    parts = [PromptPart("instructions", instructions.strip() + "\n\n")] if instructions else []
    parts.append(PromptPart("protocol", PROTOCOL + "\n\nTools:\n", special=True))
    parts += [
        PromptPart(f"tool.{i}.{t.name}", describe_tool(t) + "\n") for i, t in enumerate(tools)
    ]
    if example:
        parts.append(PromptPart("example", "\n" + EXAMPLE, special=True))
    return parts


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
    return [
        Piece(chat.role_prefix("user"), special=True),
        Piece(user),
        Piece(chat.role_suffix("user"), special=True),
        Piece(chat.generation_prompt, special=True),
    ]


def prompt_pieces(chat: ChatTemplate, parts: Sequence[PromptPart], user: str) -> list[Piece]:
    """The agent's whole prompt as the pieces it prefills, in order, each encoded on its own.

    `[begin + system prefix, parts[0], ..., parts[-1], system suffix, user prefix, user, user
    suffix, generation prompt]`: concatenating `tokenizer.encode(p.text, special=p.special)`
    over the pieces gives exactly the tokens of a run's context at its first generation step.

    Args:
        chat: The model's chat template.
        parts: The system prompt's parts (`system_parts`).
        user: The user's message.

    Returns:
        The pieces.
    """
    return system_pieces(chat, parts) + user_pieces(chat, user)
