"""Constrained decoding of an agent's turn: the whole turn (`"turn"`, for models not
fine-tuned on CML) or only its call blocks (`"calls"`, see `asynclm.agent.call_blocks`).

The turn grammar makes the model write one or more call blocks with ids `c1, c2, ...` (only known
tools, their parameters, literals of the right types — see `asynclm.cml.grammar`), then a trap,
then a plain-text answer. Interrupts injected by the runtime are not part of the grammar: they
are prefilled, not sampled, so the matcher never sees them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from asynclm.cml.grammar import call_grammar
from asynclm.cml.tokens import CALL, END, HEAD, TRAP
from asynclm.tooling import Tool

DEFAULT_MAX_CALLS = 8

Constrained = Literal["turn", "calls"]
"""What a grammar holds the model to: its whole turn, or only the call blocks it writes."""


def constrained_kind(value: bool | str | None) -> Constrained | None:
    """`Agent(constrained=...)` read as a kind: True is `"turn"`; False and None are none.

    Raises:
        ValueError: For any other value.
    """
    if value is True:
        return "turn"
    if value is False or value is None:
        return None
    if value in ("turn", "calls"):
        return value  # type: ignore[return-value]
    raise ValueError(f"constrained must be True, False, 'turn' or 'calls', got {value!r}")


def tool_specs(tools: Iterable[Tool]) -> list[dict[str, Any]]:
    """The tools as `call_grammar` takes them."""
    return [{"name": t.name, "parameters": t.parameters} for t in tools]


def calls_grammar(tools: Iterable[Tool]) -> str | None:
    """EBNF of one call block's text after `[CALL]` for these tools; None without tools."""
    specs = tool_specs(tools)
    return call_grammar(specs) if specs else None


def turn_grammar(tools: Iterable[Tool], *, max_calls: int | None = None) -> str:
    """EBNF of a turn: calls `c1..cN` (1 <= N <= max_calls), `[TRAP][END]`, an answer."""
    specs = tool_specs(tools)
    if not specs:
        raise ValueError("a constrained turn needs at least one tool")
    n = max_calls or DEFAULT_MAX_CALLS
    if n < 1:
        raise ValueError(f"max_calls must be >= 1, got {n}")
    body = call_grammar(specs).replace("root ::=", "call_block ::=", 1)
    rules = ["root ::= call_1"]
    for k in range(1, n + 1):
        after = f"(call_{k + 1} | turn_end)" if k < n else "turn_end"
        rules.append(f'call_{k} ::= ws "{CALL} c{k} {HEAD} " call " {END}" {after}')
    rules += [f'turn_end ::= ws "{TRAP}{END}" answer', "ws ::= [ \\n]?", "answer ::= [^\\[]*"]
    return "\n".join(rules) + "\n" + body
