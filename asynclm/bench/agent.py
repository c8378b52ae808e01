"""`asynclm bench agent`: end-to-end latency of sync, sync-parallel and async calling.

The model is the scripted model (asynclm.backends.scripted) on the real engine, writing at a
fixed token rate; tools are `simulated` (deterministic FNV-1a latencies of 30-500 ms, as in the
AsyncLM evaluation). Two tasks:
- parallel: 4 independent calls, then an answer;
- multistep: 3 chains of 3 dependent calls (a call needs its predecessor's result), then an answer.
The scripted model behaves like a tuned model: it writes every call that is ready (the one with
the most latency left on its chain first), waits with a trap when nothing is ready, and answers
once every result is in.

Ideal lower bound of a task (no mode can beat it): the model writes one token at a time, so
    ideal = prompt_prefill + min over orders [ schedule(order) ] + answer_tokens * t_token
where an order lists the calls with each chain's calls in sequence, and schedule() writes the
call blocks one after another (block_tokens * t_token each; a call can only be written once its
predecessor's result is in; its result arrives `latency` after its block) and ends when the last
result is in; the best order is found by an exact search (`asynclm.trace.schedule`). Trap
tokens, interrupt prefill and the runtime's own work are left out, so it is a true lower bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from typing import Any

import anyio

from asynclm.bench.common import machine, table, write_json
from asynclm.trace import schedule
from asynclm.trace.schedule import ideal_makespan

MODES = ("sync", "sync-parallel", "async")


@dataclass(frozen=True, slots=True)
class Step:
    call_id: str
    name: str
    args: str  # Python keyword arguments as written in the call


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    prompt: str
    chains: tuple[tuple[Step, ...], ...]
    answer: str

    @property
    def steps(self) -> list[Step]:
        return [s for chain in self.chains for s in chain]


PARALLEL = Task(
    "parallel",
    "Plan my trip: weather in Paris, the AAPL price, flights to Paris and the news.",
    tuple(
        (s,)
        for s in (
            Step("c1", "get_weather", 'city="Paris"'),
            Step("c2", "get_stock_price", 'symbol="AAPL"'),
            Step("c3", "search_flights", 'destination="CDG"'),
            Step("c4", "get_news", 'topic="Paris"'),
        )
    ),
    " Paris is sunny, AAPL is up, a morning flight fits, and the news is quiet.",
)
MULTISTEP = Task(
    "multistep",
    "For user 7 get the latest invoice; route and traffic from home to work; citations of the "
    "top paper on KV caches.",
    (
        (
            Step("a1", "lookup_user", "user_id=7"),
            Step("a2", "get_orders", 'user="u7"'),
            Step("a3", "get_invoice", 'order="o1"'),
        ),
        (
            Step("b1", "geocode", 'address="home"'),
            Step("b2", "get_route", 'start="p1", end="p2"'),
            Step("b3", "get_traffic", 'route="r1"'),
        ),
        (
            Step("d1", "search_papers", 'query="KV cache"'),
            Step("d2", "get_abstract", 'paper="x1"'),
            Step("d3", "get_citations", 'paper="x1"'),
        ),
    ),
    " The invoice is ready, the route is clear, and the paper has 42 citations.",
)
TASKS = {"parallel": PARALLEL, "multistep": MULTISTEP}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token-rate", type=float, default=50.0, help="tokens/s the model writes")
    p.add_argument("--prefill-rate", type=float, default=1000.0, help="tokens/s of prefill")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument(
        "--text-markers",
        action="store_true",
        help="spell CML markers in plain text (an untuned model) instead of special tokens",
    )
    p.add_argument("--json", default=None)


def call_text(step: Step) -> str:
    return f"[CALL] {step.call_id} [HEAD] {step.name}({step.args}) [END]"


def make_policy(task: Task, latency: dict[str, float]):
    """The scripted model's behaviour: ready calls, longest-running first (by the latency left on
    the call's chain, as the AsyncLM model learns to), traps, then the answer."""
    from asynclm.backends.scripted import TurnState

    remaining = {
        step.call_id: sum(latency[s.name] for s in chain[k:])
        for chain in task.chains
        for k, step in enumerate(chain)
    }

    def policy(state: TurnState) -> str:
        done = {i.id for i in state.interrupts}
        written = state.written
        ready = [
            chain[k]
            for chain in task.chains
            for k in range(len(chain))
            if call_text(chain[k]) not in written and (k == 0 or chain[k - 1].call_id in done)
        ]
        if ready:
            return call_text(max(ready, key=lambda s: remaining[s.call_id]))
        if len(done & {s.call_id for s in task.steps}) < len(task.steps):
            return "[TRAP][END]"
        return task.answer if task.answer not in written else ""

    return policy


def make_tools(task: Task) -> list[Any]:
    from asynclm.tools.simulated import fnv1a_32, simulated

    def doc(step: Step) -> dict[str, Any]:
        keys = [a.split("=")[0].strip() for a in step.args.split(",")]
        props = {k: {"type": "integer" if "_id" in k else "string"} for k in keys}
        return {
            "name": step.name,
            "description": f"Simulated {step.name}.",
            "parameters": {"type": "object", "properties": props, "required": keys},
        }

    def result(name: str) -> Any:
        return lambda **args: f"{name} ok #{fnv1a_32(name + repr(sorted(args.items()))) % 1000}"

    return [simulated(doc(s), result=result(s.name)) for s in task.steps]


def ideal_seconds(
    task: Task, tokenizer: Any, t_token: float, prompt_prefill: float, latency: dict[str, float]
) -> dict[str, float]:
    """The best any mode could do: the optimal single-writer schedule of the call graph."""
    # the model writes each marker as its special token (one token) where the tokenizer has it
    block = {
        s.call_id: len(tokenizer.encode(call_text(s), special=True)) * t_token for s in task.steps
    }
    answer = len(tokenizer.encode(task.answer, special=True)) * t_token
    best = ideal_makespan(
        [[schedule.Step(block[s.call_id], latency[s.name]) for s in chain] for chain in task.chains]
    )
    return {
        "ideal_s": prompt_prefill + best + answer,
        "writing_s": sum(block.values()),
        "answer_s": answer,
        "prompt_prefill_s": prompt_prefill,
    }


async def run_once(task: Task, mode: str, timing: Any, text_markers: bool = False) -> Any:
    from asynclm.agent import Agent
    from asynclm.backends.scripted import scripted_engine
    from asynclm.cml.tokens import MARKERS
    from asynclm.tools.simulated import simulated_latency

    latency = {s.name: simulated_latency(s.name) for s in task.steps}
    engine = scripted_engine(make_policy(task, latency), timing=timing)
    if not text_markers:  # as a CML-tuned model has them
        engine.add_special_tokens(MARKERS)
    agent = Agent(make_tools(task), model=engine, mode=mode, max_tokens=2000)  # type: ignore[arg-type]
    await agent.warm()  # the system prompt is cached before the clock starts
    result = await agent.run(task.prompt)
    return result, engine


def bench_task(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    from asynclm.backends.scripted import Timing
    from asynclm.tools.simulated import simulated_latency

    timing = Timing(step_s=1 / args.token_rate, prefill_token_s=1 / args.prefill_rate)
    latency = {s.name: simulated_latency(s.name) for s in task.steps}
    out: dict[str, Any] = {"latencies_s": latency}
    runs: dict[str, list[Any]] = {m: [] for m in MODES}
    engine = None
    for _ in range(args.reps):
        for mode in MODES:  # interleaved: drifts of the machine hit every mode alike
            result, engine = anyio.run(run_once, task, mode, timing, args.text_markers)
            _check(task, result)
            runs[mode].append(result)
        print(f"{task.name}: repetition done", file=sys.stderr)
    for mode in MODES:
        rs = runs[mode]
        out[mode] = {
            "latency_s": statistics.median(r.elapsed for r in rs),
            "generated_tokens": rs[0].usage.generated_tokens,
            "injected_tokens": rs[0].usage.injected_tokens,
            "interrupts": rs[0].usage.interrupts,
        }
    first = runs["async"][0]
    assert engine is not None  # set by the first run (reps >= 1)
    ideal = ideal_seconds(
        task,
        engine.tokenizer,
        timing.step_s,
        first.usage.prompt_tokens * timing.prefill_token_s + timing.step_s,
        latency,
    )
    out.update(ideal)
    sync, par, asy = (out[m]["latency_s"] for m in MODES)
    out["speedup_async_vs_sync"] = sync / asy
    out["speedup_sync_parallel_vs_sync"] = sync / par
    out["async_over_ideal"] = asy / ideal["ideal_s"]
    out["speedup_bound_vs_sync"] = sync / ideal["ideal_s"]  # no mode can do better than this
    out["interrupt"] = _interrupt_cost(runs["async"], timing)
    return out


def _interrupt_cost(results: list[Any], timing: Any) -> dict[str, float]:
    tokens = statistics.median(
        r.usage.injected_tokens / max(1, r.usage.interrupts) for r in results
    )
    runtime_ms = statistics.median(
        1000 * r.usage.inject_seconds / max(1, r.usage.interrupts) for r in results
    )
    return {
        "tokens": tokens,
        "prefill_ms": tokens * timing.prefill_token_s * 1000,
        "runtime_ms": runtime_ms,
    }


def _check(task: Task, result: Any) -> None:
    ids = [c.id for c in result.calls if c.ok]
    if (
        sorted(ids) != sorted(s.call_id for s in task.steps)
        or task.answer.strip() not in result.output
    ):
        raise RuntimeError(
            f"{task.name} ({result.mode}) did not complete: calls {ids}, output {result.output!r}"
        )


def main(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {
        "machine": machine(),
        "token_rate": args.token_rate,
        "prefill_rate": args.prefill_rate,
        "reps": args.reps,
    }
    rows = []
    for name in args.tasks:
        r = bench_task(TASKS[name], args)
        results[name] = r
        rows.append(
            (
                name,
                *(f"{r[m]['latency_s']:.3f} s" for m in MODES),
                f"{r['ideal_s']:.3f} s",
                f"{r['speedup_async_vs_sync']:.2f}x",
                f"{r['speedup_sync_parallel_vs_sync']:.2f}x",
                f"{r['async_over_ideal']:.3f}",
                f"{r['speedup_bound_vs_sync']:.2f}x",
            )
        )
    print(
        f"scripted model at {args.token_rate:g} tok/s (prefill {args.prefill_rate:g} tok/s), "
        f"simulated tools 30-500 ms, median of {args.reps}"
    )
    print(
        table(
            rows,
            (
                "task",
                "sync",
                "sync-parallel",
                "async",
                "ideal",
                "async vs sync",
                "sync-par vs sync",
                "async/ideal",
                "best possible (sync/ideal)",
            ),
        )
    )
    for name in args.tasks:
        c = results[name]["interrupt"]
        print(
            f"{name}: cost per interrupt {c['tokens']:.1f} tokens = "
            f"{c['prefill_ms']:.1f} ms of prefill "
            f"+ {c['runtime_ms']:.2f} ms of runtime work"
        )
    print("AsyncLM paper: async 1.6x (parallel), 5.4x (multi-step); sync-parallel 1.3x, 3.2x")
    write_json(args.json, results)
    return 0
