"""Chat turns on any context: `system`, `user`, `assistant` (no torch here).

Every context class — the engine's, a remote server's, the inferlet process's view of one —
renders a turn the same way: the chat format's pieces encoded with their special tokens, the
turn's text as plain text, the conversation's opening text before its first turn. They share
this mixin, so the rule lives in one place.
"""

from __future__ import annotations

from typing import Protocol

from asynclm.engine.chat import ChatFormat


class _HasChat(Protocol):
    @property
    def chat(self) -> ChatFormat: ...


class _TurnTarget(Protocol):
    """What a context offers the mixin."""

    @property
    def tokenizer(self) -> _HasChat: ...

    @property
    def num_tokens(self) -> int: ...

    def append(self, content: str, *, special: bool = ...) -> None: ...


class ChatTurns:
    """`system`, `user` and `assistant` turns for a context with `tokenizer` (with its `chat`
    format), `num_tokens` and `append(text, special=...)`."""

    __slots__ = ()

    def system(self: _TurnTarget, text: str) -> None:
        """A system turn saying `text` (plain text, whatever it holds)."""
        _turn(self, "system", text)

    def user(self: _TurnTarget, text: str) -> None:
        """A user turn saying `text` (plain text, whatever it holds)."""
        _turn(self, "user", text)

    def assistant(self: _TurnTarget, text: str | None = None) -> None:
        """A whole assistant turn, or (with no text) the opening of one to generate into."""
        if text is None:
            self.append(self.tokenizer.chat.generation_prompt, special=True)
        else:
            _turn(self, "assistant", text)


def _turn(ctx: _TurnTarget, role: str, text: str) -> None:
    """A turn: the template's pieces with special tokens, the text as plain text."""
    for piece, special in ctx.tokenizer.chat.turn(role, text, opening=not ctx.num_tokens):
        ctx.append(piece, special=special)
