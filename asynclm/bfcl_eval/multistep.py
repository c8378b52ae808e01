"""multistep_parallel: three independent call chains from multi_turn_base in one task.

Construction (deterministic; as in the AsyncLM evaluation, three first-turn samples of
multi_turn_base combined into one task):
1. A *sample* is the first turn of a multi_turn_base entry: its user message and its
   ground-truth calls, a chain (`cd(folder='document')`, then `mkdir(...)`, then `mv(...)`).
   Only multi-step samples are kept: first turns of at least `MIN_CALLS` calls whose calls all
   name a documented function of the entry and give every required parameter.
2. The samples are shuffled with `random.Random(SEED)`.
3. Tasks are formed greedily in that order: the first unused sample opens a task, which takes the
   next unused samples whose API classes (the classes of the functions their calls use) are
   disjoint from those already in the task, until it has three. A sample that cannot be
   completed into a task is skipped. Disjoint classes make the chains independent: no call of
   one chain can change the state another chain works on.

Dependency graph of a task: three chains; inside a chain each call depends on the one before it
(the multi-turn APIs are stateful — `cd` changes the folder the next call works in — so a
later call may need an earlier one's effect or result); calls of different chains are
independent. Checking: each chain's calls must match its ground truth in order; the chains may
interleave in any way.

The task's prompt lists the three requests; its functions are the documents of the functions the
chains call (the full API classes would be 3-6 x ~3,500 tokens of documentation, beyond the
default model's context). Each ground-truth call becomes a possible answer: the values it gives
(positional ones bound to the parameters in the document's order), and "" (may be omitted) or the
documented default for every optional parameter it leaves out.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asynclm.bfcl_eval.entry import Entry

__all__ = ["CHAINS", "MIN_CALLS", "SEED", "Sample", "Task", "build_multistep", "plan_multistep"]

SEED = 7
CHAINS = 3
MIN_CALLS = 2
PROMPT_HEAD = "Please take care of these three independent requests."


@dataclass(frozen=True, slots=True)
class Sample:
    """The first turn of a multi_turn_base entry: one chain of dependent calls."""

    source_id: str
    question: str
    calls: tuple[str, ...]  # BFCL's ground-truth call strings, in order
    answers: tuple[dict, ...]  # one possible answer per call
    functions: tuple[dict, ...]  # documents of the functions the calls use
    classes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Task:
    """One multistep_parallel task: three samples whose chains are independent."""

    id: str
    samples: tuple[Sample, ...]

    def entry(self) -> Entry:
        """The task as a BFCL-style entry (ground truth: one list of answers per chain)."""
        lines = [f"{i}. {s.question}" for i, s in enumerate(self.samples, 1)]
        functions = _unique_by_name(f for s in self.samples for f in s.functions)
        return Entry(
            id=self.id,
            category="multistep_parallel",
            question=[[{"role": "user", "content": "\n".join([PROMPT_HEAD, *lines])}]],
            functions=functions,
            ground_truth=[list(s.answers) for s in self.samples],
        )


def build_multistep(
    multi_turn: Sequence[Entry], owners: Mapping[str, str], *, seed: int = SEED
) -> list[Entry]:
    """The multistep_parallel entries built from multi_turn_base entries.

    Args:
        multi_turn: multi_turn_base entries (all of them, in BFCL's order).
        owners: Function name → multi-turn API class (`asynclm.bfcl_eval.data.function_classes`).
        seed: Shuffling seed (the published figures use `SEED`).

    Returns:
        The tasks as entries, `multistep_parallel_0`, `multistep_parallel_1`, ...
    """
    return [task.entry() for task in plan_multistep(multi_turn, owners, seed=seed)]


def plan_multistep(
    multi_turn: Sequence[Entry], owners: Mapping[str, str], *, seed: int = SEED
) -> list[Task]:
    """The multistep_parallel tasks with their source samples (see the module docstring)."""
    samples = [s for e in multi_turn if (s := sample_of(e, owners)) is not None]
    random.Random(seed).shuffle(samples)
    tasks: list[Task] = []
    used: set[str] = set()
    for first in samples:
        if first.source_id in used:
            continue
        group = [first]
        for other in samples:
            if len(group) == CHAINS:
                break
            taken = frozenset().union(*(s.classes for s in group))
            if other.source_id not in used and other not in group and not other.classes & taken:
                group.append(other)
        if len(group) == CHAINS:
            used.update(s.source_id for s in group)
            tasks.append(Task(f"multistep_parallel_{len(tasks)}", tuple(group)))
    return tasks


def sample_of(entry: Entry, owners: Mapping[str, str]) -> Sample | None:
    """The entry's first turn as a sample, or None if it is not an eligible multi-step chain."""
    if not entry.ground_truth or not entry.question or len(entry.question[0]) != 1:
        return None
    calls = tuple(entry.ground_truth[0])
    docs = {f["name"]: f for f in entry.functions}
    try:
        parsed = [parse_call_string(c) for c in calls]
    except ValueError:
        return None
    if len(calls) < MIN_CALLS or any(name not in docs or name not in owners for name, _ in parsed):
        return None
    answers = [call_answer(docs[name], args) for name, args in parsed]
    if any(a is None for a in answers):
        return None
    return Sample(
        source_id=entry.id,
        question=entry.question[0][0]["content"],
        calls=calls,
        answers=tuple(a for a in answers if a is not None),
        functions=tuple(_unique_by_name(docs[name] for name, _ in parsed)),
        classes=frozenset(owners[name] for name, _ in parsed),
    )


def parse_call_string(text: str) -> tuple[str, tuple[tuple[Any, ...], dict[str, Any]]]:
    """`name(1, key='v')` → `("name", ((1,), {"key": "v"}))`; literal arguments only.

    Raises:
        ValueError: Not a call with literal arguments.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not isinstance(node, ast.Call):
            raise ValueError(f"not a call: {text!r}")
        name = ast.unparse(node.func)
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"cannot parse the call {text!r}: {e}") from None
    return name, (args, kwargs)


def call_answer(doc: dict, arguments: tuple[tuple[Any, ...], dict[str, Any]]) -> dict | None:
    """A ground-truth call as a possible answer `{name: {parameter: [accepted values]}}`.

    Returns None when the call leaves out a required parameter or names an unknown one.
    """
    args, kwargs = arguments
    params = doc["parameters"].get("properties", {})
    required = set(doc["parameters"].get("required", []))
    given = dict(zip(params, args, strict=False)) | kwargs
    if len(args) > len(params) or not required <= set(given) or not set(given) <= set(params):
        return None
    accepted: dict[str, list] = {name: [value] for name, value in given.items()}
    for name, spec in params.items():
        if name not in given:
            accepted[name] = ["", spec["default"]] if "default" in spec else [""]
    return {doc["name"]: accepted}


def _unique_by_name(docs: Any) -> list[dict]:
    seen: dict[str, dict] = {}
    for doc in docs:
        seen.setdefault(doc["name"], doc)
    return list(seen.values())


def markdown(tasks: Sequence[Task]) -> str:
    """A table of the tasks: sources, classes and chains (for docs/BFCL.md)."""
    rows = ["| task | chain | source | API class | calls (each depends on the one before) |"]
    rows.append("|---|---|---|---|---|")
    for task in tasks:
        for k, s in enumerate(task.samples):
            calls = " → ".join(f"`{c}`" for c in s.calls).replace("|", "\\|")
            label = task.id if k == 0 else ""
            classes = ", ".join(sorted(s.classes))
            rows.append(f"| {label} | {'abc'[k]} | {s.source_id} | {classes} | {calls} |")
    return "\n".join(rows)
