"""A training task: the user's request, the tools offered, the call graph and the answer.

A task says *what* must happen (which calls, which depends on which, what each returns, what the
answer says); the simulator (`simulate.py`) decides *when* — in which order the model writes
the calls and where each result arrives — for a given calling mode. Tasks are pure data (no
tokenizer, no torch) so sources and the simulator are tested in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any

USER = "user"  # the key of a user interrupt in `AnswerPart.needs` and `Call.after`

KINDS = (
    "single",  # one call
    "parallel",  # independent calls
    "chain",  # a call needs an earlier call's result
    "multistep",  # several independent chains
    "no_call",  # the question needs no tool
    "irrelevant",  # no offered tool fits: say so, call nothing
    "error",  # a call fails; the answer acknowledges it
    "user_interrupt",  # the user adds a request while the model works
    "repeated",  # one tool, several values of one argument asked in one list
)


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a task's call graph.

    Attributes:
        key: The task's own name for the call (`k1`, ...); the id the model writes (`c1`, ...)
            follows the order it writes the calls in, which depends on the mode.
        name: The tool's name.
        arguments: Keyword arguments (JSON-like values), in the order they are written.
        result: The text the runtime injects: the tool's formatted result, or `error: ...`.
        latency: The call's actual duration in seconds.
        after: Keys of the calls whose results its arguments use (or `USER`: it answers the
            user's interrupt and cannot be written before that arrives).
        ok: False for a call that fails (its result is an error).
    """

    key: str
    name: str
    arguments: Mapping[str, Any]
    result: str
    latency: float
    after: tuple[str, ...] = ()
    ok: bool = True


@dataclass(frozen=True, slots=True)
class AnswerPart:
    """A piece of the final answer and the results it needs (call keys, or `USER`)."""

    text: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A message the user sends while the model works: it arrives `at` seconds after start."""

    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Task:
    """Everything about one task but its timing.

    Attributes:
        id: Unique id (`bank-chain-17`, `live_simple_0-0-0`).
        kind: One of `KINDS`.
        source: Where it comes from (`bank`, `bfcl:live_simple`, ...).
        prompt: The user's message.
        tools: Function documents offered (BFCL or OpenAI form), in prompt order.
        estimates: Estimated latency in seconds per tool name, stated in the tool docs.
        calls: The call graph.
        answer: The final answer, in order.
        instructions: The agent's own instructions (`Agent(system=...)`), if any.
        interrupt: A user message arriving mid-run, if any.
        example: Whether the agent's prompt carries its worked CML example
            (`Agent(example=...)`).
        latency_stated: Whether the tool docs state the estimates (tools made without a
            latency do not; the model then writes its calls in the order asked).
        meta: Anything the source wants to keep (not rendered).
    """

    id: str
    kind: str
    source: str
    prompt: str
    tools: tuple[Mapping[str, Any], ...]
    estimates: Mapping[str, float]
    calls: tuple[Call, ...]
    answer: tuple[AnswerPart, ...]
    instructions: str | None = None
    interrupt: UserMessage | None = None
    example: bool = True
    latency_stated: bool = True
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = task_problems(self)
        if problems:
            raise ValueError(f"invalid task {self.id!r}: " + "; ".join(problems))

    def call(self, key: str) -> Call:
        """The call with this key."""
        for call in self.calls:
            if call.key == key:
                return call
        raise KeyError(key)


def tool_name(doc: Mapping[str, Any]) -> str:
    """The name in a function document (BFCL or OpenAI form)."""
    inner = doc.get("function", doc) if doc.get("type") == "function" else doc
    return str(inner.get("name", ""))


def task_problems(task: Task) -> list[str]:
    """Every inconsistency of a task (an empty list when it is sound)."""
    problems = []
    if task.kind not in KINDS:
        problems.append(f"unknown kind {task.kind!r}")
    names = [tool_name(doc) for doc in task.tools]
    keys = [call.key for call in task.calls]
    if len(set(keys)) != len(keys):
        problems.append(f"duplicate call keys {keys}")
    known = set(keys) | ({USER} if task.interrupt else set())
    for call in task.calls:
        if call.name not in names:
            problems.append(f"call {call.key} uses {call.name!r}, which is not offered")
        if call.latency < 0:
            problems.append(f"call {call.key} has a negative latency")
        problems += [
            f"call {call.key} waits on unknown {k!r}" for k in call.after if k not in known
        ]
    for part in task.answer:
        problems += [f"answer part waits on unknown {k!r}" for k in part.needs if k not in known]
    missing = set(names) - set(task.estimates)
    if missing:
        problems.append(f"no latency estimate for {sorted(missing)}")
    if _has_cycle(task.calls):
        problems.append("the call graph has a cycle")
    return problems


def _has_cycle(calls: tuple[Call, ...]) -> bool:
    after = {call.key: [k for k in call.after if k != USER] for call in calls}
    done: set[str] = set()
    for _ in calls:
        ready = {key for key, deps in after.items() if key not in done and set(deps) <= done}
        if not ready:
            break
        done |= ready
    return len(done) != len(after)


def draw_estimate(rng: Random) -> float:
    """A tool's estimated latency in seconds: log-uniform in 1 ms - 1 s, to the millisecond."""
    return round(math.exp(rng.uniform(math.log(0.001), 0.0)), 3)


def draw_latency(rng: Random, estimate: float) -> float:
    """A call's actual latency: its tool's estimate, off by up to 25 percent either way."""
    return estimate * rng.uniform(0.8, 1.25)
