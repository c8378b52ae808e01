"""One BFCL test entry: the type shared by the data loader, the task builders and the runner."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Entry"]


@dataclass(frozen=True)
class Entry:
    """One BFCL test entry.

    Attributes:
        id: BFCL's id, e.g. `parallel_3`.
        category: The category, e.g. `parallel`.
        question: The turns; each a list of chat messages `{"role", "content"}`.
        functions: The function documents `{"name", "description", "parameters"}`.
        ground_truth: The possible answers: for the AST categories a list of
            `{function: {parameter: [accepted values]}}` (an accepted "" marks an optional
            parameter); for multi_turn_base a list per turn of call strings; for
            multistep_parallel a list of chains, each a list of possible answers in order.
            None where BFCL has no answer (irrelevance: no call is the right answer).
    """

    id: str
    category: str
    question: list[list[dict]]
    functions: list[dict]
    ground_truth: list | None
