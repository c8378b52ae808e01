"""Bank tasks restyled as the BFCL harness runs them."""

from random import Random

import pytest

from asynclm.finetune.bank import DEFAULT_MIX, bank_tasks
from asynclm.finetune.bfcl_live import HARNESS_INSTRUCTIONS, harness_result
from asynclm.finetune.harness_style import SOURCE, harness_variants, restylable, restyled
from asynclm.finetune.task import task_problems

TASKS = bank_tasks(300, seed=3, mix={**DEFAULT_MIX, "repeated": 0.1})


def test_only_bank_tasks_of_several_independent_successful_calls_are_restyled():
    chosen = [t for t in TASKS if restylable(t)]
    assert chosen, "the bank has parallel tasks"
    for task in TASKS:
        independent = all(c.ok and not c.after for c in task.calls)
        several = task.kind in ("parallel", "repeated") and len(task.calls) > 1
        expected = several and independent
        assert restylable(task) == (expected and task.interrupt is None)


def test_a_restyled_task_keeps_its_question_tools_and_calls_and_takes_the_harness_look():
    task = next(t for t in TASKS if restylable(t))
    new = restyled(task, Random(0))
    assert new.id == f"{task.id}-harness" and new.source == SOURCE
    assert (new.prompt, new.tools, new.estimates) == (task.prompt, task.tools, task.estimates)
    assert [(c.key, c.name, c.arguments) for c in new.calls] == [
        (c.key, c.name, c.arguments) for c in task.calls
    ]
    assert new.instructions == HARNESS_INSTRUCTIONS
    for call, part in zip(new.calls, new.answer, strict=True):
        assert call.result == harness_result(call.name, call.arguments)
        assert call.result in part.text and part.needs == (call.key,)
    assert task_problems(new) == []


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_share_sets_how_many_are_restyled_deterministically(share):
    eligible = sum(restylable(t) for t in TASKS)
    variants = harness_variants(TASKS, share, seed=1)
    assert variants == harness_variants(TASKS, share, seed=1)
    if share == 0.0:
        assert variants == []
    elif share == 1.0:
        assert len(variants) == eligible
    else:
        assert 0 < len(variants) < eligible
    assert len({v.id for v in variants} | {t.id for t in TASKS}) == len(variants) + len(TASKS)


def test_a_share_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="share"):
        harness_variants(TASKS, 1.5, seed=0)


def test_the_share_and_a_start_adapter_are_run_options():
    from asynclm.finetune.pipeline import configure

    cfg = configure("long", harness_share=0.25, init_adapter="runs/a/adapter")
    assert cfg.data.harness_share == 0.25
    assert cfg.train.init_adapter == "runs/a/adapter"
    assert configure("long").data.harness_share == 0.5  # the shipped adapter's data
    assert configure("default").data.harness_share == 0.0  # elsewhere off (opt in)
    with pytest.raises(ValueError, match="unknown options"):
        configure("long", harness=0.2)


def test_repeated_tasks_are_restyled_too():
    assert any(restylable(t) for t in TASKS if t.kind == "repeated")


def test_mix_weights_given_change_those_kinds_only():
    from asynclm.finetune.pipeline import PRESETS, configure

    cfg = configure("long", mix={"repeated": 0.15})
    assert cfg.data.mix == {**PRESETS["long"].data.mix, "repeated": 0.15}


@pytest.mark.parametrize("bad", ["repeated", "repeated=x", "repeated=-1"])
def test_a_bad_mix_option_is_a_clear_error(bad, capsys):
    from asynclm.cli import main

    with pytest.raises(SystemExit):
        main(["finetune", "--model", "tiny", "--mix", bad])
    assert "expected kind=weight" in capsys.readouterr().err
