"""The AsyncLM simulation: dispatch order, where results land, traps, modes (no tokenizer)."""

import re

import pytest

from asynclm.cml.parser import CMLParser
from asynclm.finetune.bank import bank_tasks
from asynclm.finetune.simulate import MODES, simulate
from asynclm.finetune.task import USER, AnswerPart, Call, Task, UserMessage

# A stand-in tokenizer: markers, words with their leading space, runs of spaces.
TOKENS = re.compile(r"\[[A-Z]+\]|\s*[^\s\[]+|\s+")


def split(text):
    return TOKENS.findall(text)


def task(calls, answer, estimates, interrupt=None, kind="parallel"):
    docs = tuple(
        {"name": n, "description": n, "parameters": {"type": "object", "properties": {}}}
        for n in estimates
    )
    return Task(
        "t",
        kind,
        "test",
        "question?",
        docs,
        estimates,
        tuple(calls),
        tuple(answer),
        interrupt=interrupt,
    )


def parallel(latencies=(0.3, 0.1, 0.2)):
    names = ["fa", "fb", "fc"][: len(latencies)]
    pairs = enumerate(zip(names, latencies, strict=True))
    calls = [Call(f"k{i}", n, {}, f"r{i}", lat) for i, (n, lat) in pairs]
    answer = [AnswerPart(f"R{i}.", (f"k{i}",)) for i in range(len(names))]
    return task(calls, answer, dict(zip(names, latencies, strict=True)))


def calls_in_order(turn):
    return [
        c.text.split("[HEAD]")[1].split("(")[0].strip() for c in turn.chunks if c.kind == "call"
    ]


def test_async_dispatches_the_longest_estimate_first():
    turn = simulate(parallel(), "async", token_time=0.01, tokenize=split)
    assert calls_in_order(turn) == ["fa", "fc", "fb"]
    assert [turn.ids[k] for k in ("k0", "k2", "k1")] == ["c1", "c2", "c3"]


def test_interrupts_land_only_outside_cml_blocks():
    for t in bank_tasks(40, seed=3):
        for mode in MODES:
            turn = simulate(t, mode, token_time=0.012, tokenize=split)
            parser = CMLParser()
            for chunk in turn.chunks:
                points = dict(chunk.injections)
                for n, piece in enumerate(split(chunk.text), 1):
                    parser.feed(piece)
                    if n in points:
                        assert parser.safe_to_inject, (t.id, mode, chunk.text, n)


def test_each_result_is_injected_once_and_every_call_is_made():
    for t in bank_tasks(40, seed=4):
        for mode in MODES:
            turn = simulate(t, mode, token_time=0.02, tokenize=split)
            injected = re.findall(
                r"\[INTR\] (\w+)", "".join(text for c in turn.chunks for _, text in c.injections)
            )
            assert sorted(injected) == sorted(
                [*turn.ids.values()] + (["user"] if t.interrupt else [])
            )
            assert turn.num_calls == len(t.calls)


def test_sync_injects_each_result_right_after_its_call_and_never_traps():
    turn = simulate(parallel(), "sync", token_time=0.01, tokenize=split)
    assert turn.num_traps == 0
    for chunk in turn.chunks:
        if chunk.kind == "call":
            assert [n for n, _ in chunk.injections] == [len(split(chunk.text))]


def test_sync_parallel_injects_only_at_traps_in_arrival_order():
    turn = simulate(parallel(), "sync-parallel", token_time=0.01, tokenize=split)
    for chunk in turn.chunks:
        assert not chunk.injections or chunk.kind == "trap"
    (trap,) = [c for c in turn.chunks if c.kind == "trap"]
    ids = re.findall(r"\[INTR\] (\w+)", trap.injections[0][1])
    assert ids == ["c3", "c2", "c1"]  # fb 0.1 s, fc 0.2 s, fa 0.3 s


def test_a_trap_is_written_only_when_nothing_can_be_dispatched():
    t = task(
        [
            Call("k1", "fa", {}, "x", 0.5),
            Call("k2", "fb", {}, "y", 0.05, after=("k1",)),
            Call("k3", "fc", {}, "z", 0.01),
        ],
        [AnswerPart("Y.", ("k2",)), AnswerPart("Z.", ("k3",))],
        {"fa": 0.5, "fb": 0.05, "fc": 0.01},
        kind="multistep",
    )
    turn = simulate(t, "async", token_time=0.01, tokenize=split)
    kinds = [c.kind for c in turn.chunks]
    assert kinds[:3] == ["call", "call", "trap"]  # fa and fc first, then wait for fa
    assert calls_in_order(turn) == ["fa", "fc", "fb"]


def test_async_is_faster_than_sync_on_parallel_calls():
    t = parallel((0.4, 0.5, 0.3))
    seconds = {m: simulate(t, m, token_time=0.01, tokenize=split).seconds for m in MODES}
    assert seconds["async"] < seconds["sync-parallel"] < seconds["sync"]


def test_a_user_interrupt_adds_its_call():
    base = parallel((0.3,))
    t = task(
        [*base.calls, Call("k9", "fb", {}, "more", 0.1, after=(USER,))],
        [*base.answer, AnswerPart("More.", ("k9", USER))],
        {"fa": 0.3, "fb": 0.1},
        UserMessage("also fb", at=0.02),
        kind="user_interrupt",
    )
    for mode in MODES:
        turn = simulate(t, mode, token_time=0.01, tokenize=split)
        assert calls_in_order(turn) == ["fa", "fb"]
        assert turn.answer().endswith("More.")


def test_a_message_arriving_after_the_answer_is_refused():
    t = task([], [AnswerPart("Hi.")], {"fa": 0.1}, UserMessage("late", at=9.0), kind="no_call")
    with pytest.raises(ValueError, match="results due"):
        simulate(t, "async", token_time=0.01, tokenize=split)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mode"):
        simulate(parallel(), "fast", token_time=0.01, tokenize=split)
    with pytest.raises(ValueError, match="token_time"):
        simulate(parallel(), "async", token_time=0, tokenize=split)
