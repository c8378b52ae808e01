"""No evaluation data in training: ids, questions and function documents are checked.

The BFCL categories the harness evaluates on must never reach training. The live_* source drops
the few entries whose question also appears in an evaluation category (`Fingerprints.overlaps`),
and the final training set is checked as a whole (`check_no_leakage`): any task whose id,
question or function document belongs to an evaluation entry fails the build, listing them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asynclm.finetune.bfcl_live import EntryLike
from asynclm.finetune.task import Task


class LeakageError(ValueError):
    """Training data contains evaluation data."""


def canonical_doc(doc: Mapping[str, Any]) -> str:
    """A function document's identity (key order and spacing do not matter)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def normal_text(text: str) -> str:
    """A question's identity (case and runs of whitespace do not matter)."""
    return " ".join(str(text).split()).lower()


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """The ids, questions and function documents of the evaluation entries."""

    ids: frozenset[str]
    questions: frozenset[str]
    docs: frozenset[str]

    @classmethod
    def empty(cls) -> Fingerprints:
        """No evaluation data (nothing to check against)."""
        return cls(frozenset(), frozenset(), frozenset())

    @classmethod
    def of(cls, entries: Iterable[EntryLike]) -> Fingerprints:
        ids, questions, docs = set(), set(), set()
        for entry in entries:
            ids.add(entry.id)
            questions |= {
                normal_text(m.get("content", "")) for turn in entry.question for m in turn
            }
            docs |= {canonical_doc(doc) for doc in entry.functions}
        questions.discard("")
        return cls(frozenset(ids), frozenset(questions), frozenset(docs))

    def overlaps(self, task: Task) -> list[str]:
        """What of `task` belongs to the evaluation data (empty when nothing does)."""
        found = []
        if task.id in self.ids:
            found.append(f"id {task.id}")
        if normal_text(task.prompt) in self.questions:
            found.append(f"question {task.prompt[:60]!r}")
        found += [
            f"function {doc.get('name', '?')}"
            for doc in task.tools
            if canonical_doc(doc) in self.docs
        ]
        return found


@functools.cache
def evaluation_fingerprints() -> Fingerprints:
    """Fingerprints of every evaluation category of the BFCL harness (read once per process).

    Raises:
        ImportError: The BFCL harness is not installed.
        FileNotFoundError: BFCL's data is not installed (the message says how to get it).
    """
    from asynclm.bfcl_eval.data import EVALUATION_CATEGORIES, load_category

    return Fingerprints.of(entry for c in EVALUATION_CATEGORIES for entry in load_category(c))


def check_no_leakage(tasks: Iterable[Task], fingerprints: Fingerprints) -> int:
    """Fails loudly if a training task carries evaluation data.

    Args:
        tasks: The training tasks.
        fingerprints: The evaluation data's fingerprints.

    Returns:
        How many tasks were checked.

    Raises:
        LeakageError: Listing the tasks and what of them is evaluation data.
    """
    checked = 0
    leaks = []
    for task in tasks:
        checked += 1
        found = fingerprints.overlaps(task)
        if found:
            leaks.append(f"{task.id}: " + ", ".join(found))
    if leaks:
        shown = "\n  ".join(leaks[:20])
        more = f"\n  ... and {len(leaks) - 20} more" if len(leaks) > 20 else ""
        raise LeakageError(
            f"{len(leaks)} training task(s) contain BFCL evaluation data:\n  {shown}{more}"
        )
    return checked
