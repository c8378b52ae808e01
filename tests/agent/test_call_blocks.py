"""Constrained call blocks: free text outside blocks, the tools' grammar inside them."""

from __future__ import annotations

from typing import Literal

import pytest
import torch

from asynclm.agent import Agent
from asynclm.agent.call_blocks import CallBlocks
from asynclm.agent.constrained import calls_grammar, constrained_kind
from asynclm.engine.grammar import GrammarCompiler
from asynclm.engine.loader import default_tokenizer
from asynclm.tooling import tool


def pick(alpha: int, beta: bool = False, gamma: Literal["x", "y"] = "x") -> str:
    """Picks one.

    Args:
        alpha: A number.
        beta: A flag.
        gamma: A letter.
    """
    return f"{alpha}{beta}{gamma}"


def choose(letter: Literal["x", "y"], flag: bool = False) -> str:
    """Chooses a letter.

    Args:
        letter: The letter.
        flag: A flag.
    """
    return letter * (2 if flag else 1)


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()  # plain text: the markers are spelled in pieces


@pytest.fixture(scope="module")
def grammar(tokenizer):
    ebnf = calls_grammar([tool(pick)])
    assert ebnf is not None
    return GrammarCompiler(tokenizer, tokenizer.vocab_size).compile(ebnf=ebnf)


def _write(blocks: CallBlocks, tokenizer, text: str) -> int:
    ids = tokenizer.encode(text)
    for token in ids:
        blocks.advance(token)
    return len(ids)


def _allowed_texts(blocks: CallBlocks, tokenizer) -> list[str]:
    logits = torch.zeros(tokenizer.vocab_size)
    blocks.mask(logits)
    ids = torch.isfinite(logits).nonzero().flatten().tolist()
    return [tokenizer.hf.decode([i]) for i in ids]


def test_only_the_inside_of_a_call_block_is_masked(tokenizer, grammar) -> None:
    blocks = CallBlocks(grammar, tokenizer)
    _write(blocks, tokenizer, "Let me look. ")
    assert not blocks.in_block
    assert len(_allowed_texts(blocks, tokenizer)) == tokenizer.vocab_size  # free text
    _write(blocks, tokenizer, "[CALL]")
    assert blocks.in_block
    _write(blocks, tokenizer, " c1 [HEAD] pick(alpha=3, ")
    allowed = _allowed_texts(blocks, tokenizer)
    # each parameter at most once, in declared order: alpha is done, beta or gamma may follow
    assert not any(t.lstrip().startswith("a") for t in allowed)
    assert any(t.lstrip().startswith("b") for t in allowed)
    assert any(t.lstrip().startswith("g") for t in allowed)
    _write(blocks, tokenizer, "gamma='y') [END]")
    assert not blocks.in_block
    assert len(_allowed_texts(blocks, tokenizer)) == tokenizer.vocab_size


def test_unknown_tools_and_bad_literals_are_masked_in_a_block(tokenizer, grammar) -> None:
    blocks = CallBlocks(grammar, tokenizer)
    _write(blocks, tokenizer, "[CALL] c1 [HEAD] ")
    assert all(
        "pick".startswith(t.strip()) or t.strip() == "" for t in _allowed_texts(blocks, tokenizer)
    )
    _write(blocks, tokenizer, "pick(alpha=")
    allowed = _allowed_texts(blocks, tokenizer)
    assert "'" not in allowed and '"' not in allowed  # an int, not a string
    assert any(t.startswith("7") for t in allowed)


def test_rollback_undoes_opening_closing_and_inside_tokens(tokenizer, grammar) -> None:
    blocks = CallBlocks(grammar, tokenizer)
    opened = _write(blocks, tokenizer, "[CALL]")
    inside = _write(blocks, tokenizer, " c1 [HEAD] pick(alpha=3")
    closing = _write(blocks, tokenizer, ") [END]")
    assert not blocks.in_block
    blocks.rollback(closing)  # the block is open again, right after `alpha=3`
    assert blocks.in_block
    allowed = _allowed_texts(blocks, tokenizer)
    assert ")" in allowed and "'" not in allowed
    _write(blocks, tokenizer, ", beta=True) [END]")  # the matcher goes on from there
    assert not blocks.in_block
    blocks.rollback(len(tokenizer.encode(", beta=True) [END]")) + inside)
    assert blocks.in_block
    blocks.rollback(opened)  # before `[CALL]`: free text again
    assert not blocks.in_block
    assert len(_allowed_texts(blocks, tokenizer)) == tokenizer.vocab_size
    with pytest.raises(ValueError, match="cannot roll back 1 tokens"):
        blocks.rollback(1)


def test_a_reset_leaves_any_block_and_forgets_the_tail(tokenizer, grammar) -> None:
    blocks = CallBlocks(grammar, tokenizer)
    _write(blocks, tokenizer, "[CALL] c1")
    blocks.reset()
    assert not blocks.in_block
    _write(blocks, tokenizer, "[CA")
    blocks.reset()  # injected text in between: "[CA" + "LL]" is no marker the model wrote
    _write(blocks, tokenizer, "LL]")
    assert not blocks.in_block


def test_constrained_kinds() -> None:
    assert constrained_kind(True) == "turn"
    assert constrained_kind("calls") == "calls"
    assert constrained_kind(False) is None and constrained_kind(None) is None
    with pytest.raises(ValueError, match="constrained must be"):
        constrained_kind("json")
    with pytest.raises(ValueError, match="constrained must be"):
        Agent([pick], constrained="everything")  # type: ignore[arg-type]
    assert calls_grammar([]) is None


@pytest.mark.anyio
@pytest.mark.parametrize("constrained", [None, "calls"])
async def test_a_random_model_writes_only_valid_calls_under_the_call_grammar(
    tiny, constrained
) -> None:
    """The tiny random model is made to open a block; inside, it writes noise on its own and
    well-formed calls only under `constrained="calls"`."""
    from asynclm.engine.engine import Engine

    engine = Engine.from_loaded(tiny, num_pages=512, page_size=16)
    opening = engine.grammar(regex=r"\[CALL\] c1 \[HEAD\] [\s\S]*")
    agent = Agent(
        [choose],
        model=engine,
        mode="sync",
        max_tokens=60,
        max_calls=1,
        constrained=constrained,
        constraint=lambda _agent: opening.matcher(),
    )
    result = await agent.run("go")
    if constrained is None:
        assert not any(c.ok for c in result.calls)  # noise: malformed or invalid
        assert any("malformed" in str(e) for e in result.errors)
    else:
        assert result.calls and result.calls[0].name == "choose" and result.calls[0].ok
        assert "malformed" not in " ".join(str(e) for e in result.errors)
