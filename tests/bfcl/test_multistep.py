"""multistep_parallel: its deterministic construction from multi_turn_base, and its checking."""

from __future__ import annotations

from pathlib import Path

import pytest

from asynclm.bfcl_eval.checker import check_answer
from asynclm.bfcl_eval.data import function_classes, load_category
from asynclm.bfcl_eval.multistep import (
    CHAINS,
    MIN_CALLS,
    SEED,
    build_multistep,
    call_answer,
    parse_call_string,
    plan_multistep,
)


def test_fixture_builds_one_task_of_three_independent_chains(fixture_data: Path) -> None:
    (task,) = plan_multistep(load_category("multi_turn_base"), function_classes())
    # multi_turn_base_3 has a single call: not a multi-step chain
    assert sorted(s.source_id for s in task.samples) == [
        "multi_turn_base_0",
        "multi_turn_base_1",
        "multi_turn_base_2",
    ]
    classes = [s.classes for s in task.samples]
    assert all(not a & b for i, a in enumerate(classes) for b in classes[i + 1 :])
    entry = task.entry()
    assert entry.id == "multistep_parallel_0" and entry.category == "multistep_parallel"
    names = sorted(f["name"] for f in entry.functions)
    assert names == ["add", "cd", "fillFuelTank", "liter_to_gallon", "mkdir", "square_root"]
    prompt = entry.question[0][0]["content"]
    assert all(s.question in prompt for s in task.samples)


def test_ground_truth_calls_become_possible_answers(fixture_data: Path) -> None:
    entry = load_category("multistep_parallel")[0]
    math_chain = next(c for c in entry.ground_truth or [] if "add" in c[0])
    # positional argument bound by the document's order; the default-valued optional
    # parameter may be left out or given its default
    assert math_chain == [
        {"add": {"a": [2], "b": [3]}},
        {"square_root": {"number": [5], "precision": ["", 2]}},
    ]


def test_construction_is_deterministic(fixture_data: Path) -> None:
    entries, owners = load_category("multi_turn_base"), function_classes()
    assert build_multistep(entries, owners) == build_multistep(entries, owners)
    assert load_category("multistep_parallel") == build_multistep(entries, owners)


def test_parse_call_string() -> None:
    assert parse_call_string("sort('a.pdf')") == ("sort", (("a.pdf",), {}))
    assert parse_call_string("mv(source='a', destination='b')")[1][1] == {
        "source": "a",
        "destination": "b",
    }
    with pytest.raises(ValueError, match="cannot parse"):
        parse_call_string("mv(source=x)")


def test_call_answer_rejects_calls_that_no_answer_could_match() -> None:
    doc = {
        "name": "f",
        "parameters": {"properties": {"a": {"type": "string"}}, "required": ["a"]},
    }
    assert call_answer(doc, ((), {})) is None  # a required parameter left out
    assert call_answer(doc, ((), {"zz": 1})) is None
    assert call_answer(doc, (("x",), {})) == {"f": {"a": ["x"]}}


@pytest.mark.usefixtures("real_data")
def test_real_tasks() -> None:
    mtb = load_category("multi_turn_base")
    tasks = plan_multistep(mtb, function_classes())
    assert len(tasks) == 31  # with SEED and bfcl-eval 2026.3.23 (listed in docs/BFCL.md)
    assert SEED == 7
    sources = [s.source_id for t in tasks for s in t.samples]
    assert len(sources) == len(set(sources))  # a sample is used once
    for k, task in enumerate(tasks):
        assert task.id == f"multistep_parallel_{k}"
        assert len(task.samples) == CHAINS
        assert all(len(s.calls) >= MIN_CALLS for s in task.samples)
        classes = [s.classes for s in task.samples]
        assert all(not a & b for i, a in enumerate(classes) for b in classes[i + 1 :])
    assert plan_multistep(mtb, function_classes(), seed=SEED + 1) != tasks


@pytest.mark.usefixtures("real_data")
def test_real_ground_truth_chains_pass_the_checker_interleaved() -> None:
    from asynclm.bfcl_eval.perturb import base_answer

    for entry in load_category("multistep_parallel"):
        chains = [base_answer(chain) for chain in entry.ground_truth or []]
        in_order = [call for chain in chains for call in chain]
        round_robin = [c[k] for k in range(max(map(len, chains))) for c in chains if k < len(c)]
        for calls in (in_order, round_robin):
            verdict = check_answer(entry.category, entry.functions, calls, entry.ground_truth)
            assert verdict.valid, (entry.id, verdict)
        swapped = [*chains[0][::-1], *chains[1], *chains[2]]
        assert not check_answer(entry.category, entry.functions, swapped, entry.ground_truth)


@pytest.mark.usefixtures("real_data")
def test_docs_list_the_tasks_as_built() -> None:
    from asynclm.bfcl_eval.multistep import markdown

    docs = (Path(__file__).parents[2] / "docs" / "BFCL.md").read_text()
    assert markdown(plan_multistep(load_category("multi_turn_base"), function_classes())) in docs
