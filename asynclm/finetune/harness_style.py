"""Bank tasks restyled as the BFCL harness runs them, so that its style is not tied to one call.

The live_* tasks carry the harness's look: its instructions, its short simulated results
(`ok #0427`) and answers that echo them. But BFCL's live data is nearly all single-call (a few
dozen of its entries ask for several), so a model trained on it learns that in that look a task
ends after its first result — and on BFCL's parallel categories it stops after one call. A
restyled copy of a bank task with independent calls keeps the task's question, tools and call
graph and takes the harness's instructions, results and answer form: the look then goes with
one call or several, as the question asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from random import Random

from asynclm.finetune.bfcl_live import HARNESS_INSTRUCTIONS, SAYS, harness_result
from asynclm.finetune.task import AnswerPart, Task

RESTYLED_KINDS = ("parallel", "repeated")
SOURCE = "bank:harness"


def restylable(task: Task) -> bool:
    """A bank task of independent calls that all succeed, with no user interrupt."""
    return (
        task.source == "bank"
        and task.kind in RESTYLED_KINDS
        and task.interrupt is None
        and len(task.calls) > 1
        and all(call.ok and not call.after for call in task.calls)
    )


def restyled(task: Task, rng: Random) -> Task:
    """The task as the harness would run it (id `<id>-harness`)."""
    calls = tuple(replace(c, result=harness_result(c.name, c.arguments)) for c in task.calls)
    answer = tuple(
        AnswerPart(rng.choice(SAYS).format(name=c.name, value=c.result), (c.key,)) for c in calls
    )
    return replace(
        task,
        id=f"{task.id}-harness",
        source=SOURCE,
        calls=calls,
        answer=answer,
        instructions=HARNESS_INSTRUCTIONS,
    )


def harness_variants(tasks: Sequence[Task], share: float, seed: int) -> list[Task]:
    """Restyled copies of a `share` of the restylable tasks (drawn with `seed`)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of restyled tasks must be in [0, 1], got {share}")
    rng = Random(seed)
    return [restyled(t, rng) for t in tasks if restylable(t) and rng.random() < share]
