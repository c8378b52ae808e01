"""The best possible speedup of tasks' call graphs at any token rate, without running them.

For the oracle's way of writing (the ground-truth call blocks, then a short answer):
    sync  = prefill + sum over calls of (block + latency) + answer      (no overlap at all)
    ideal = prefill + optimal single-writer schedule of the calls + answer
with blocks and the answer at the token rate and the prefill at the prefill rate. sync / ideal
bounds what any calling mode can gain over synchronous calling, before any runtime overhead.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence

from asynclm.bfcl_eval.oracle import ANSWER, NO_CALL_ANSWER, call_block
from asynclm.bfcl_eval.tasks import LatencyModel, Task, cheat_sheet, latencies
from asynclm.trace.schedule import Step, ideal_makespan

__all__ = ["best_possible", "bounds_table"]


def best_possible(
    task: Task,
    count_tokens: Callable[[str], int],
    *,
    token_rate: float,
    prefill_rate: float,
    latency: LatencyModel,
    with_cheat_sheet: bool = True,
) -> float:
    """sync / ideal for one task (see the module docstring)."""
    t_token = 1 / token_rate
    prompt = task.prompt + ("\n\n" + cheat_sheet(task) if with_cheat_sheet else "")
    prefill = count_tokens(prompt) / prefill_rate + t_token
    answer = count_tokens(ANSWER if task.chains else NO_CALL_ANSWER) * t_token
    seconds = latencies(task, latency)
    chains = [
        [Step(count_tokens(call_block(c)) * t_token, seconds[c.name]) for c in chain]
        for chain in task.chains
    ]
    sync = sum(s.write_s + s.latency_s for chain in chains for s in chain)
    return (prefill + sync + answer) / (prefill + ideal_makespan(chains) + answer)


def bounds_table(
    categories: Mapping[str, Sequence[Task]],
    count_tokens: Callable[[str], int],
    token_rates: Sequence[float],
    *,
    prefill_rate: float,
    latency: LatencyModel,
) -> str:
    """A markdown table: per category, the median (and largest) best possible speedup."""
    header = "| category | tasks | " + " | ".join(f"{r:g} tok/s" for r in token_rates) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(token_rates)]
    for name, tasks in categories.items():
        cells = []
        for rate in token_rates:
            values = [
                best_possible(
                    t, count_tokens, token_rate=rate, prefill_rate=prefill_rate, latency=latency
                )
                for t in tasks
            ]
            cells.append(f"{statistics.median(values):.2f}x (max {max(values):.2f}x)")
        lines.append(f"| {name} | {len(tasks)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
