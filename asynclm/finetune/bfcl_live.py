"""Training tasks from BFCL's live_* categories (user-contributed questions, functions, answers).

An entry becomes a task: its question (one turn: an optional system message, one user
message), its functions as the tools offered, its ground truth as the calls (for each
parameter the first accepted value; a parameter BFCL lets be omitted, "" among its accepted
values, is left out), and results as the benchmark's simulated tools return them. live_irrelevance
entries become tasks that call nothing. Entries the runtime could not run as given (several
turns, arguments that fail the tool's schema) are skipped and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from random import Random
from typing import Any, Protocol

from asynclm.bfcl_eval.tasks import INSTRUCTIONS, simulated_result
from asynclm.finetune.render import tools_for
from asynclm.finetune.task import AnswerPart, Call, Task, draw_estimate, draw_latency, tool_name
from asynclm.tooling import CallArgumentError

LIVE_CATEGORIES = (
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
)
SAYS = (
    "{name} returned {value}.",
    "The result of {name} is {value}.",
    "Done: {name} gave {value}.",
)
# The harness's agent instructions and its simulated results ("ok #0427"), so that live tasks
# look like the benchmark's runs: imported from it, so the two can never drift apart.
HARNESS_INSTRUCTIONS = INSTRUCTIONS
harness_result = simulated_result


REFUSALS = (
    "None of the available functions can help with this request.",
    "Sorry, I have no function that can do that.",
    "I can't help with that using the functions I have.",
)


class EntryLike(Protocol):
    """What is read of a BFCL entry (`asynclm.bfcl_eval.data.Entry`)."""

    @property
    def id(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def question(self) -> list[list[dict]]: ...
    @property
    def functions(self) -> list[dict]: ...
    @property
    def ground_truth(self) -> list | None: ...


@dataclass(slots=True)
class LiveReport:
    """What became of the entries: tasks per category and skips per reason."""

    tasks: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


def live_tasks(
    entries: Iterable[EntryLike], *, seed: int, report: LiveReport | None = None
) -> list[Task]:
    """Tasks from BFCL live_* entries (others are rejected: they may be evaluation data).

    Args:
        entries: Entries of live_* categories.
        seed: Seed of the drawn latencies and phrasings.
        report: Filled with counts of tasks and skipped entries, if given.

    Returns:
        The tasks, with ids equal to the entries' ids.

    Raises:
        ValueError: An entry of a category that is not live_*.
    """
    report = report if report is not None else LiveReport()
    rng = Random(seed)
    tasks = []
    for entry in entries:
        if not entry.category.startswith("live_"):
            raise ValueError(f"{entry.id}: only live_* categories train, not {entry.category}")
        task, reason = entry_task(entry, rng)
        if task is None:
            report.skipped[reason] += 1
        else:
            report.tasks[entry.category] += 1
            tasks.append(task)
    return tasks


def entry_task(entry: EntryLike, rng: Random) -> tuple[Task | None, str]:
    """The task of one entry, or (None, why it was skipped)."""
    if len(entry.question) != 1:
        return None, "several turns"
    roles = [m.get("role") for m in entry.question[0]]
    if roles.count("user") != 1 or set(roles) - {"user", "system"} or roles[-1] != "user":
        return None, "not a single user message"
    prompt = str(entry.question[0][-1].get("content", "")).strip()
    system = "\n".join(
        str(m.get("content", "")) for m in entry.question[0] if m["role"] == "system"
    )
    names = [tool_name(doc) for doc in entry.functions]
    if not prompt or len(set(names)) != len(names):
        return None, "empty question or duplicate function names"
    try:
        tools = {t.name: t for t in tools_for(entry.functions)}
    except ValueError:
        return None, "a function document the agent cannot read"
    estimates = {name: draw_estimate(rng) for name in names}
    calls, reason = _calls(entry.ground_truth or [], tools, estimates, rng)
    if reason:
        return None, reason
    answer = _answer(calls, rng)
    return Task(
        id=entry.id,
        kind=_kind(entry.category, len(calls)),
        source=f"bfcl:{entry.category}",
        prompt=prompt,
        tools=tuple(entry.functions),
        estimates=estimates,
        calls=tuple(calls),
        answer=tuple(answer),
        instructions="\n\n".join(filter(None, [HARNESS_INSTRUCTIONS, system])),
        example=rng.random() < 0.5,
        latency_stated=rng.random() < 0.8,
    ), ""


def _calls(ground_truth: list, tools, estimates, rng: Random) -> tuple[list[Call], str]:
    calls = []
    for i, item in enumerate(ground_truth):
        if not isinstance(item, dict) or len(item) != 1:
            return [], "ground truth is not one call per item"
        ((name, params),) = item.items()
        if name not in tools:
            return [], "ground truth names an unknown function"
        args = {p: _first(values) for p, values in params.items() if not _omissible(values)}
        try:
            tools[name].validate(args)
        except CallArgumentError:
            return [], "ground truth fails the function's schema"
        text = harness_result(name, args)
        calls.append(Call(f"k{i + 1}", name, args, text, draw_latency(rng, estimates[name])))
    return calls, ""


def _omissible(values: Any) -> bool:
    """BFCL accepts "" for a parameter that may be left out: leave it out (write no more than
    the question asks for)."""
    return isinstance(values, list) and "" in values


def _first(values: Any) -> Any:
    """The first accepted value."""
    return values[0] if isinstance(values, list) and values else values


def _answer(calls: list[Call], rng: Random) -> list[AnswerPart]:
    if not calls:
        return [AnswerPart(rng.choice(REFUSALS))]
    parts = []
    for call in calls:
        parts.append(
            AnswerPart(rng.choice(SAYS).format(name=call.name, value=call.result), (call.key,))
        )
    return parts


def _kind(category: str, num_calls: int) -> str:
    if num_calls == 0:
        return "irrelevant"
    return "single" if num_calls == 1 else "parallel"
