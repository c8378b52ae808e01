"""Scoring an agent run against its task: pure functions over what the run recorded.

- `cml_wellformed`: every CML block the model wrote parsed (no malformed block or call body).
- `call_exact_match`: the model's calls, as a multiset of (tool, arguments), equal the task's.
- `result_use`: the share of the values the task's answer reports (numbers, names, error
  messages) that the model's answer contains.
- `trap_discipline`: no trap while a call could still be dispatched, and none with nothing
  pending.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asynclm.finetune.task import Task

_BLOCK = re.compile(
    r"\[CALL\]\s*(\S+?)\s*\[HEAD\](.*?)\[END\]|\[TRAP\]\s*\[END\]|\[INTR\]\s*(\S+?)\s*\[HEAD\].*?\[END\]",
    re.S,
)
_ACKNOWLEDGE = ("could not", "couldn't", "can't", "cannot", "unable", "error", "failed", "sorry")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a run left behind, in plain data.

    Attributes:
        output: The answer text.
        transcript: Everything written and injected, in order.
        calls: (id, tool name, arguments) of each call the runtime dispatched.
        errors: The run's error messages (malformed blocks, rejected calls).
    """

    output: str
    transcript: str
    calls: tuple[tuple[str, str, Mapping[str, Any]], ...]
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Score:
    """One run's scores (None where a score does not apply to the task)."""

    cml_wellformed: bool
    call_exact_match: bool
    result_use: float | None
    trap_discipline: bool | None
    num_traps: int


def canonical(name: str, arguments: Mapping[str, Any]) -> str:
    """A call's identity: tool and arguments, key order and int/float spelling aside."""
    return json.dumps([name, _plain(arguments)], sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def cml_wellformed(record: RunRecord) -> bool:
    """No malformed block and no call body that failed to parse."""
    return not any("malformed" in error for error in record.errors)


def call_exact_match(task: Task, record: RunRecord) -> bool:
    """The model made exactly the task's calls (any order, arguments compared as values)."""
    made = Counter(canonical(name, args) for _, name, args in record.calls)
    wanted = Counter(canonical(c.name, c.arguments) for c in task.calls)
    return made == wanted


def expected_values(task: Task) -> list[str]:
    """What the answer must contain: each result value the task's answer reports, and each
    failing call's error message."""
    values: list[str] = []
    answer = " ".join(part.text for part in task.answer)
    for call in task.calls:
        if not call.ok:
            values.append(call.result.removeprefix("error: "))
            continue
        values += [v for v in _leaves(call.result) if v in answer and v not in values]
    return values


def _leaves(result: str) -> list[str]:
    try:
        value = json.loads(result)
    except ValueError:
        return [result.strip()]
    if not isinstance(value, (dict, list)):
        return [result.strip()]
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
        elif not isinstance(item, bool) and item is not None:
            out.append(str(item))
    return out


def result_use(task: Task, record: RunRecord) -> float | None:
    """Share of the expected values found in the answer (None for a task without calls).

    A failing call counts as used when the answer names its error or says that something
    failed ("could not", "error", ...).
    """
    if not task.calls:
        return None
    output = record.output
    errors = {c.result.removeprefix("error: ") for c in task.calls if not c.ok}
    acknowledged = any(word in output.lower() for word in _ACKNOWLEDGE)
    values = expected_values(task)
    found = sum(v in output or (v in errors and acknowledged) for v in values)
    return found / len(values) if values else 1.0


def trap_discipline(task: Task, record: RunRecord) -> tuple[bool | None, int]:
    """(no premature or idle trap, number of traps); None for a task without calls.

    Premature: a trap while one of the task's calls whose inputs are all in was not yet made.
    Idle: a trap with no call in flight.
    """
    if not task.calls:
        return None, record.transcript.count("[TRAP]")
    made: dict[str, str] = {}  # call id -> canonical call
    injected: set[str] = set()
    deps = {canonical(c.name, c.arguments): c.after for c in task.calls}
    keys = {c.key: canonical(c.name, c.arguments) for c in task.calls}
    good, traps = True, 0
    for match in _BLOCK.finditer(record.transcript):
        text = match.group(0)
        if text.startswith("[CALL]"):
            made[match.group(1)] = _body_key(match.group(2))
        elif text.startswith("[INTR]"):
            injected.add(match.group(3))
        else:
            traps += 1
            seen = {made[i] for i in injected if i in made}
            ready = [k for k, after in deps.items() if {keys.get(a) for a in after} <= seen]
            pending = set(made) - injected
            if any(k not in made.values() for k in ready) or not pending:
                good = False
    return good, traps


def _body_key(body: str) -> str:
    from asynclm.cml.call import CallSyntaxError, parse_call

    try:
        call = parse_call(body.strip())
    except CallSyntaxError:
        return ""
    return canonical(call.name, dict(call.kwargs))


def score(task: Task, record: RunRecord) -> Score:
    """All scores of one run."""
    discipline, traps = trap_discipline(task, record)
    return Score(
        cml_wellformed=cml_wellformed(record),
        call_exact_match=call_exact_match(task, record),
        result_use=result_use(task, record),
        trap_discipline=discipline,
        num_traps=traps,
    )


def summarize(scores: Iterable[Score]) -> dict[str, float | int | None]:
    """Means over runs (each score over the runs it applies to)."""
    scores = list(scores)
    return {
        "runs": len(scores),
        "cml_wellformed": _mean(s.cml_wellformed for s in scores),
        "call_exact_match": _mean(s.call_exact_match for s in scores),
        "result_use": _mean(s.result_use for s in scores),
        "trap_discipline": _mean(s.trap_discipline for s in scores),
        "traps_per_run": _mean(s.num_traps for s in scores),
    }


def _mean(values: Iterable[float | bool | int | None]) -> float | None:
    kept: Sequence[float] = [float(v) for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None
