"""The template bank: sound, deterministic tasks whose answers copy their results."""

import json
from collections import Counter

import pytest

from asynclm.finetune.bank import DEFAULT_MIX, bank_tasks
from asynclm.finetune.catalog import CHAINS, TRAINING
from asynclm.finetune.held_out import HELD_OUT, HELD_OUT_CHAINS
from asynclm.finetune.metrics import expected_values
from asynclm.finetune.task import USER, task_problems, tool_name
from asynclm.tooling import Tool


@pytest.fixture(scope="module")
def tasks():
    return bank_tasks(120, seed=7)


def test_the_same_seed_gives_the_same_tasks():
    assert bank_tasks(30, seed=1) == bank_tasks(30, seed=1)
    assert bank_tasks(30, seed=1) != bank_tasks(30, seed=2)


def test_tasks_are_sound_and_every_kind_appears(tasks):
    assert all(not task_problems(t) for t in tasks)
    assert set(Counter(t.kind for t in tasks)) == {k for k, w in DEFAULT_MIX.items() if w > 0}


def test_arguments_fit_the_tool_schemas(tasks):
    for t in tasks:
        tools = {tool_name(d): Tool.from_schema(d) for d in t.tools}
        for call in t.calls:
            tools[call.name].validate(call.arguments)


def test_estimates_are_stated_for_every_tool_between_1ms_and_1s(tasks):
    for t in tasks:
        assert set(t.estimates) == {tool_name(d) for d in t.tools}
        assert all(0.001 <= e <= 1.0 for e in t.estimates.values())


def test_answers_copy_the_values_the_calls_return(tasks):
    for t in tasks:
        answer = " ".join(p.text for p in t.answer)
        for call in t.calls:
            if call.ok:
                continue
            assert call.result.removeprefix("error: ") in answer
        assert all(v in answer for v in expected_values(t))


def test_every_call_is_used_by_the_answer_or_a_later_call(tasks):
    for t in tasks:
        used = {k for p in t.answer for k in p.needs} | {k for c in t.calls for k in c.after}
        assert {c.key for c in t.calls} <= used


def test_a_task_never_makes_the_same_call_twice(tasks):
    for t in tasks:
        calls = [json.dumps([c.name, c.arguments], sort_keys=True) for c in t.calls]
        assert len(set(calls)) == len(calls), t.id


def test_chains_pass_the_first_result_on(tasks):
    chained = [t for t in tasks if t.kind == "chain" and any(c.after for c in t.calls)]
    assert chained
    for t in chained:
        second = next(c for c in t.calls if c.after)
        first = t.call(second.after[0])
        assert any(
            json.dumps(v)[1:-1] in first.result or str(v) in first.result
            for v in second.arguments.values()
        )


def test_user_interrupts_ask_for_an_offered_tool(tasks):
    for t in (t for t in tasks if t.kind == "user_interrupt"):
        (extra,) = [c for c in t.calls if USER in c.after]
        assert extra.name in {tool_name(d) for d in t.tools}
        assert 0 < t.interrupt.at < 0.3


def test_irrelevant_tasks_ask_for_a_tool_not_offered(tasks):
    for t in (t for t in tasks if t.kind == "irrelevant"):
        assert not t.calls


def test_held_out_tools_are_never_trained_on():
    train_names = {f.name for f in TRAINING}
    assert train_names.isdisjoint(f.name for f in HELD_OUT)
    for chain in CHAINS:
        assert {chain.first, chain.then} <= train_names
    for chain in HELD_OUT_CHAINS:
        held_out = {f.name: f.held_out for f in (*TRAINING, *HELD_OUT)}
        assert {held_out[chain.first], held_out[chain.then]} == {True}
    held = bank_tasks(40, seed=3, held_out=True)
    assert all(t.id.startswith("eval-") for t in held)
    assert all(tool_name(d) not in train_names for t in held for d in t.tools)


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown task kinds"):
        bank_tasks(3, seed=0, mix={"sing": 1.0})


def test_a_zero_weight_kind_changes_nothing_drawn():
    """`repeated` is opt-in: the default data (and the shipped adapter's recipe) stay as they
    were before the kind existed."""
    without = {k: w for k, w in DEFAULT_MIX.items() if k != "repeated"}
    assert DEFAULT_MIX["repeated"] == 0
    assert bank_tasks(150, seed=4) == bank_tasks(150, seed=4, mix=without)


def test_repeated_tasks_ask_one_tool_for_a_list_and_call_it_once_per_value():
    tasks = [
        t
        for t in bank_tasks(60, seed=5, mix={**DEFAULT_MIX, "repeated": 20})
        if t.kind == "repeated"
    ]
    assert len(tasks) > 20
    for task in tasks:
        assert not task_problems(task)
        assert 2 <= len(task.calls) <= 4 and len({c.name for c in task.calls}) == 1
        (param,) = {k for c in task.calls for k in c.arguments}  # one argument, varied
        values = [c.arguments[param] for c in task.calls]
        assert len(set(map(str, values))) == len(values)
        assert all(str(v) in task.prompt for v in values)  # the list is in the question
        assert not any(c.after for c in task.calls)  # independent: all ready at once
