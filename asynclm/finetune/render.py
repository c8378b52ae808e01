"""Rendering a simulated turn into token ids with a loss mask, exactly as the runtime sees it.

The prompt comes from the agent's own renderer (`asynclm.agent.prompting`) and is tokenised
piece by piece as the Prompt Cache does; the turn is the model's chunks, each encoded on its
own, with the runtime's `[INTR]` blocks inserted at their token positions (encoded as the
runtime encodes them: markers and ids as special tokens, the value as plain text). Only what
the model writes carries loss: its text, call blocks, traps and the final end-of-turn token —
never the prompt and never an injected interrupt.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asynclm.agent.prompting import Piece, prompt_pieces, system_parts
from asynclm.cml.tokens import MARKERS, interrupt_pieces
from asynclm.engine.chat import ChatFormat
from asynclm.engine.tokenizer import Tokenizer
from asynclm.finetune.simulate import Turn
from asynclm.finetune.task import Task, tool_name
from asynclm.tooling import Tool


@dataclass(frozen=True, slots=True)
class Example:
    """One training sequence.

    Attributes:
        input_ids: Prompt, then the turn (written tokens and injected interrupts).
        loss: True where the model itself writes the token (it learns to predict it).
        num_prompt: How many of `input_ids` are the prompt.
    """

    input_ids: tuple[int, ...]
    loss: tuple[bool, ...]
    num_prompt: int

    @property
    def num_loss(self) -> int:
        return sum(self.loss)


def add_cml_tokens(tokenizer: Tokenizer) -> list[int]:
    """Adds the CML markers as special tokens (if missing); returns their ids."""
    return tokenizer.add_special_tokens(MARKERS)


def task_tools(task: Task) -> list[Tool]:
    """The task's tools as the agent holds them, each stating its estimated latency (documents
    only: nothing runs in training)."""
    return tools_for(task.tools, task.estimates if task.latency_stated else None)


def tools_for(
    docs: Sequence[Mapping[str, Any]], estimates: Mapping[str, float] | None = None
) -> list[Tool]:
    """Tools for function documents (BFCL or OpenAI form), as `Tool.from_schema` reads them.

    Raises:
        ToolDefinitionError: A document the agent cannot read (a ValueError).
    """
    estimates = estimates or {}
    return [_tool(json.dumps(doc), estimates.get(tool_name(doc))) for doc in docs]


@functools.lru_cache(maxsize=4096)
def _tool(doc: str, latency: float | None) -> Tool:
    return Tool.from_schema(json.loads(doc), latency=latency)


def task_prompt(chat: ChatFormat, task: Task) -> list[Piece]:
    """The agent's prompt for `task`, as the text pieces it prefills (the shared renderer)."""
    parts = system_parts(task_tools(task), task.instructions, example=task.example)
    return prompt_pieces(chat, parts, task.prompt)


class Renderer:
    """Turns tasks and their simulated turns into training sequences for one tokenizer.

    Args:
        tokenizer: The model's tokenizer, with the CML markers added (`add_cml_tokens`).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        missing = [m for m in MARKERS if len(tokenizer.encode(m, special=True)) != 1]
        if missing:
            raise ValueError(
                f"the tokenizer lacks the CML tokens {missing}: add_cml_tokens() first"
            )
        self.tokenizer = tokenizer
        self.eos = end_of_turn(tokenizer)
        self._pieces: dict[Piece, tuple[int, ...]] = {}

    def encode(self, piece: Piece) -> tuple[int, ...]:
        """Token ids of a prompt piece (cached: tool documents repeat across tasks)."""
        ids = self._pieces.get(piece)
        if ids is None:
            ids = self._pieces[piece] = tuple(
                self.tokenizer.encode(piece.text, special=piece.special)
            )
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The text of each token of `text` as the runtime streams it (the simulator's view)."""
        decoder = self.tokenizer.stream_decoder()
        pieces = [decoder.push(token) for token in self.tokenizer.encode(text, special=True)]
        if pieces:
            pieces[-1] += decoder.flush()
        return pieces

    def prompt_ids(self, task: Task) -> list[int]:
        """The prompt's token ids, as the agent prefills them."""
        return [t for piece in task_prompt(self.tokenizer.chat, task) for t in self.encode(piece)]

    def turn_ids(self, turn: Turn) -> tuple[list[int], list[bool]]:
        """The turn's token ids and which of them the model writes."""
        ids: list[int] = []
        loss: list[bool] = []
        for chunk in turn.chunks:
            tokens = self.tokenizer.encode(chunk.text, special=True)
            done = 0
            for at, text in (*chunk.injections, (len(tokens), "")):
                ids += tokens[done:at]
                loss += [True] * (at - done)
                injected = self.injected_ids(text)
                ids += injected
                loss += [False] * len(injected)
                done = at
        ids.append(self.eos)
        loss.append(True)
        return ids, loss

    def injected_ids(self, text: str) -> list[int]:
        """Token ids of injected `[INTR]` blocks, encoded piece by piece as the runtime does."""
        ids: list[int] = []
        for piece, special in injection_pieces(text):
            ids += self.tokenizer.encode(piece, special=special)
        return ids

    def render(self, task: Task, turn: Turn) -> Example:
        """The training sequence of `turn` (a simulation of `task`)."""
        if turn.task_id != task.id:
            raise ValueError(f"turn of task {turn.task_id!r} rendered with task {task.id!r}")
        prompt = self.prompt_ids(task)
        ids, loss = self.turn_ids(turn)
        return Example(tuple(prompt + ids), tuple([False] * len(prompt) + loss), len(prompt))


def end_of_turn(tokenizer: Tokenizer) -> int:
    """The token that ends an assistant turn (ChatML: `<|im_end|>`)."""
    first = tokenizer.encode(tokenizer.chat.role_suffix("assistant"), special=True)[:1]
    if first and first[0] in tokenizer.eos_token_ids:
        return first[0]
    if not tokenizer.eos_token_ids:
        raise ValueError("the tokenizer has no end-of-turn token")
    return tokenizer.eos_token_ids[0]


_INTERRUPT = re.compile(r"\[INTR\] (\S+) \[HEAD\] (.*?) \[END\]", re.S)


def injection_pieces(text: str) -> list[tuple[str, bool]]:
    """The `(text, special)` pieces the runtime encodes for injected `[INTR]` blocks.

    `text` is `format_interrupt` output, one block or several in a row (their values hold no
    marker); anything outside a block is plain text.
    """
    pieces: list[tuple[str, bool]] = []
    done = 0
    for block in _INTERRUPT.finditer(text):
        if block.start() > done:
            pieces.append((text[done : block.start()], False))
        pieces += interrupt_pieces(block[1], block[2])
        done = block.end()
    if done < len(text):
        pieces.append((text[done:], False))
    return pieces
