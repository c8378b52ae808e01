"""BFCL live_* entries as training tasks, and the leakage check against evaluation data."""

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from asynclm.finetune.bank import bank_tasks
from asynclm.finetune.bfcl_live import HARNESS_INSTRUCTIONS, LiveReport, live_tasks
from asynclm.finetune.leakage import Fingerprints, LeakageError, check_no_leakage

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Entry:  # the fields of asynclm.bfcl_eval.data.Entry that the source reads
    id: str
    category: str
    question: list
    functions: list
    ground_truth: list | None


def entries(name):
    rows = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]
    return [
        Entry(r["id"], r["category"], r["question"], r["function"], r["ground_truth"]) for r in rows
    ]


def test_entries_become_tasks_and_unusable_ones_are_counted():
    report = LiveReport()
    tasks = {t.id: t for t in live_tasks(entries("live.jsonl"), seed=0, report=report)}
    assert set(tasks) == {
        "live_simple_0-0-0",
        "live_multiple_1-1-0",
        "live_parallel_2-2-0",
        "live_irrelevance_3-3-0",
    }
    assert report.skipped == {"several turns": 1, "ground truth fails the function's schema": 1}
    forecast = tasks["live_simple_0-0-0"]
    (call,) = forecast.calls
    assert dict(call.arguments) == {"city": "Lyon, France", "unit": "celsius"}  # "" drops days
    assert re.fullmatch(r"ok #\d{4}", call.result)  # as the BFCL harness's simulated tools
    assert call.result in forecast.answer[0].text
    assert forecast.instructions == HARNESS_INSTRUCTIONS
    cart = tasks["live_multiple_1-1-0"]
    assert cart.instructions == HARNESS_INSTRUCTIONS + "\n\nYou are a shop assistant."
    assert cart.calls[0].name == "cart.add"
    assert tasks["live_parallel_2-2-0"].kind == "parallel"
    irrelevant = tasks["live_irrelevance_3-3-0"]
    assert irrelevant.kind == "irrelevant" and not irrelevant.calls


def test_only_live_categories_may_train():
    with pytest.raises(ValueError, match="only live_"):
        live_tasks(entries("eval.jsonl"), seed=0)


def test_leakage_of_an_id_a_question_or_a_function_fails_loudly():
    prints = Fingerprints.of(entries("eval.jsonl"))
    clean = bank_tasks(20, seed=0)
    assert check_no_leakage(clean, prints) == 20
    live = live_tasks(entries("live.jsonl"), seed=0)
    haiku = next(t for t in live if t.id == "live_irrelevance_3-3-0")  # its question is eval's
    borrowed = replace(clean[0], id="simple_python_0")
    doc = entries("eval.jsonl")[0].functions[0]
    with_doc = replace(
        clean[1],
        tools=(*clean[1].tools, dict(reversed(list(doc.items())))),
        estimates={**clean[1].estimates, "factorial": 0.1},
    )
    with pytest.raises(LeakageError) as err:
        check_no_leakage([*clean, haiku, borrowed, with_doc], prints)
    message = str(err.value)
    assert "3 training task(s)" in message
    assert "question 'Write me a haiku" in message
    assert "id simple_python_0" in message
    assert "function factorial" in message
