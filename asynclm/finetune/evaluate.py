"""Evaluation on held-out tasks: tools never seen in training, run through the real `Agent`.

Each held-out task becomes an agent whose tools sleep their call's latency and return the
task's result (or raise its error) when called with the task's arguments, and answer "no data
for these arguments" otherwise. The model runs unconstrained (no grammar) in each mode unless
`EvalConfig.constrained` names one of the agent's grammars; the run is scored by
`metrics.score`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import anyio

from asynclm.finetune.bank import DEFAULT_MIX, bank_tasks
from asynclm.finetune.metrics import RunRecord, Score, canonical, score, summarize
from asynclm.finetune.simulate import MODES, Mode
from asynclm.finetune.task import USER, Task, tool_name
from asynclm.tooling import Tool, ToolError

if TYPE_CHECKING:
    from asynclm.agent.constrained import Constrained

EVAL_MIX = {k: v for k, v in DEFAULT_MIX.items() if k != "user_interrupt"}
NO_DATA = "no data for these arguments"


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """Held-out evaluation.

    Attributes:
        tasks: Held-out tasks (each run in every mode).
        modes: Calling modes.
        seed: Seed of the held-out tasks (distinct from training seeds).
        max_tokens: Most tokens the model may write per run.
        latency_scale: Multiplies every tool's sleep (1.0: the task's latencies).
        constrained: None (the model writes freely: what the targets are measured on), or
            the agent's grammar to hold it to ("calls": only inside call blocks; "turn").
    """

    tasks: int = 12
    modes: tuple[Mode, ...] = MODES
    seed: int = 10_000
    max_tokens: int = 200
    latency_scale: float = 1.0
    constrained: Constrained | None = None


def held_out_tasks(cfg: EvalConfig) -> list[Task]:
    """Tasks on held-out tool families only (user interrupts are exercised in training)."""
    return bank_tasks(cfg.tasks, seed=cfg.seed, held_out=True, mix=EVAL_MIX, per_session=(1, 1))


def task_agent_tools(task: Task, latency_scale: float = 1.0) -> list[Tool]:
    """Runnable tools for a task: the expected calls get their results, others "no data"."""
    tools = []
    for doc in task.tools:
        name = tool_name(doc)
        calls = {canonical(c.name, c.arguments): c for c in task.calls if c.name == name}
        responder = _responder(name, calls, latency_scale)
        latency = task.estimates.get(name) if task.latency_stated else None
        tools.append(Tool.from_schema(doc, responder, latency=latency))
    return tools


def _responder(name: str, calls: dict[str, Any], scale: float) -> Callable[..., Any]:
    async def respond(**arguments: Any) -> str:
        call = calls.get(canonical(name, arguments))
        if call is None:
            await anyio.sleep(0.05 * scale)
            return NO_DATA
        await anyio.sleep(call.latency * scale)
        if not call.ok:
            raise ToolError(call.result.removeprefix("error: "))
        return str(call.result)

    return respond


def record_of(result: Any) -> RunRecord:
    """The plain-data record of an agent `RunResult`."""
    calls = tuple((c.id, c.name, dict(c.arguments)) for c in result.calls if c.name)
    return RunRecord(result.output, result.transcript, calls, tuple(result.errors))


async def run_task(engine: Any, task: Task, mode: Mode, cfg: EvalConfig) -> tuple[Any, Score]:
    """Runs one task in one mode on `engine`; returns the run result and its score."""
    from asynclm.agent import Agent

    if any(USER in c.after for c in task.calls):
        raise ValueError(f"{task.id}: user interrupts are not evaluated")
    agent = Agent(
        task_agent_tools(task, cfg.latency_scale),
        model=engine,
        mode=mode,
        system=task.instructions,
        example=task.example,
        max_tokens=cfg.max_tokens,
        constrained=cfg.constrained,
    )
    await agent.warm()
    result = await agent.run(task.prompt)
    return result, score(task, record_of(result))


def evaluate(
    engine: Any,
    cfg: EvalConfig,
    tasks: Sequence[Task] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = iter,
) -> dict[str, Any]:
    """Runs every held-out task in every mode; returns the summary and each run's details."""
    tasks = list(tasks) if tasks is not None else held_out_tasks(cfg)
    runs: list[dict[str, Any]] = []
    by_mode: dict[str, list[Score]] = {m: [] for m in cfg.modes}
    started = time.perf_counter()
    for task, mode in progress([(t, m) for t in tasks for m in cfg.modes]):
        result, s = anyio.run(run_task, engine, task, mode, cfg)
        by_mode[mode].append(s)
        runs.append(
            {
                "task": task.id,
                "kind": task.kind,
                "mode": mode,
                **asdict(s),
                "elapsed_s": round(result.elapsed, 3),
                "output": result.output,
                "transcript": result.transcript,
            }
        )
    all_scores = [s for scores in by_mode.values() for s in scores]
    return {
        **summarize(all_scores),
        "modes": {m: summarize(scores) for m, scores in by_mode.items()},
        "latency_s_median": {
            m: _median([r["elapsed_s"] for r in runs if r["mode"] == m]) for m in cfg.modes
        },
        "tasks": len(tasks),
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "details": runs,
    }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
