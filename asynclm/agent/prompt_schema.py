"""The agent's prompt as a Prompt Cache schema: each system part a prefix-encoded module.

The modules hold `system_pieces` (the template's pieces as `<special>` text) and the user's turn
is a `<user>` role, so the Prompt Cache encodes exactly the pieces `prompt_pieces` lists (the
renderer fine-tuning uses too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from asynclm.agent.prompting import ChatTemplate, Piece, PromptPart, system_pieces
from asynclm.promptcache.schema import Module, Prompt, Schema, Select, Special, User

__all__ = ["SYSTEM_END", "agent_prompt", "agent_schema"]

SYSTEM_END = "system.end"  # the module holding the system turn's closing text


def agent_schema(chat: ChatTemplate, parts: Sequence[PromptPart]) -> Schema:
    """A prefix-encoded schema of the system parts, named by a digest of their pieces.

    Agents with the same system prompt get the same schema (and share its cached K/V). The
    template's pieces and the runtime's parts (protocol, example) are `<special>` text; the
    user's instructions and tool documents are plain text.
    """
    opening, *texts, closing = system_pieces(chat, parts)

    def body(piece: Piece) -> str | Special:
        return Special(piece.text) if piece.special else piece.text

    bodies: list[list[str | Special]] = [[Special(opening.text), body(texts[0])]]
    bodies += [[body(p)] for p in texts[1:]]
    bodies.append([Special(closing.text)])
    names = [part.name for part in parts] + [SYSTEM_END]
    digest = hashlib.sha256(repr(list(zip(names, bodies, strict=True))).encode()).hexdigest()
    modules = [Module(name, body) for name, body in zip(names, bodies, strict=True)]
    return Schema(f"agent-{digest[:16]}", modules, encoding="prefix")


def agent_prompt(schema: Schema, user: str | None = None) -> Prompt:
    """A prompt selecting every module of `schema`, then the user's turn (if any)."""
    selections = [Select(module.name) for module in schema.children if isinstance(module, Module)]
    turns = [User([user])] if user is not None else []
    return Prompt(schema.name, selections, turns)
