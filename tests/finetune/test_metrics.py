"""Scoring runs: pure metrics, and the held-out evaluation on the scripted model."""

import anyio
import pytest

from asynclm.backends.scripted import actions, scripted_engine
from asynclm.cml.tokens import MARKERS
from asynclm.finetune.evaluate import EvalConfig, held_out_tasks, run_task
from asynclm.finetune.metrics import RunRecord, score, summarize
from asynclm.finetune.task import AnswerPart, Call, Task


def weather_task():
    doc = {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    calls = (
        Call("k1", "get_weather", {"city": "Paris"}, '{"temperature": 21, "sky": "sunny"}', 0.1),
        Call("k2", "get_weather", {"city": "Oslo"}, "error: city not found", 0.1, ok=False),
    )
    answer = (
        AnswerPart("Paris: sunny, 21 degrees.", ("k1",)),
        AnswerPart("I could not get Oslo: city not found.", ("k2",)),
    )
    return Task(
        "t",
        "error",
        "test",
        "Weather in Paris and Oslo?",
        (doc,),
        {"get_weather": 0.1},
        calls,
        answer,
    )


CALL1 = "[CALL] c1 [HEAD] get_weather(city='Paris') [END]"
CALL2 = "[CALL] c2 [HEAD] get_weather(city='Oslo') [END]"
INTR = '[INTR] c1 [HEAD] {"temperature": 21, "sky": "sunny"} [END][INTR] c2 [HEAD] error: x [END]'
GOOD_CALLS = (("c1", "get_weather", {"city": "Paris"}), ("c2", "get_weather", {"city": "Oslo"}))


def test_a_good_run_scores_full_marks():
    record = RunRecord(
        "Paris is sunny, 21 degrees. Oslo failed: city not found.",
        f"{CALL1} {CALL2} [TRAP][END]{INTR} Paris ...",
        GOOD_CALLS,
        (),
    )
    s = score(weather_task(), record)
    assert (s.cml_wellformed, s.call_exact_match, s.result_use, s.trap_discipline) == (
        True,
        True,
        1.0,
        True,
    )


def test_wrong_arguments_missing_values_and_an_early_trap_are_caught():
    record = RunRecord(
        "It is sunny in Paris.",
        f"{CALL1} [TRAP][END]{INTR} {CALL2}",
        (("c1", "get_weather", {"city": "Paris"}), ("c2", "get_weather", {"city": "oslo"})),
        ("malformed call: invalid syntax",),
    )
    s = score(weather_task(), record)
    assert not s.cml_wellformed
    assert not s.call_exact_match
    assert s.result_use == pytest.approx(1 / 3)  # "sunny" only; 21 and the error are missing
    assert s.trap_discipline is False  # trapped before making the ready Oslo call


def test_ints_and_floats_compare_as_values():
    record = RunRecord("", "", (("c1", "f", {"x": 2.0}),), ())
    task = Task(
        "t",
        "single",
        "test",
        "q",
        ({"name": "f", "parameters": {}},),
        {"f": 0.1},
        (Call("k1", "f", {"x": 2}, "4", 0.1),),
        (AnswerPart("4", ("k1",)),),
    )
    assert score(task, record).call_exact_match


def test_summary_averages_each_score_over_the_runs_it_applies_to():
    good = score(
        weather_task(),
        RunRecord("21 sunny could not city not found", f"{CALL1} {CALL2}", GOOD_CALLS, ()),
    )
    no_call = score(
        Task("n", "no_call", "test", "hi", (), {}, (), (AnswerPart("Hello."),)),
        RunRecord("Hello.", "Hello.", (), ()),
    )
    summary = summarize([good, no_call])
    assert summary["runs"] == 2
    assert summary["call_exact_match"] == 1.0
    assert summary["result_use"] == 1.0  # the no-call run has none


def test_held_out_evaluation_scores_a_perfect_scripted_model():
    """The evaluation path end to end: held-out tools, the real agent, the scorer."""
    from asynclm.engine.loader import default_tokenizer
    from asynclm.finetune.render import Renderer, add_cml_tokens
    from asynclm.finetune.simulate import simulate

    tokenizer = default_tokenizer()
    add_cml_tokens(tokenizer)
    cfg = EvalConfig(tasks=6, latency_scale=0.01)
    task = next(t for t in held_out_tasks(cfg) if len(t.calls) >= 2)
    turn = simulate(task, "sync", token_time=0.01, tokenize=Renderer(tokenizer).tokenize)
    engine = scripted_engine(actions(*[c.text for c in turn.chunks]), tokenizer=tokenizer)
    engine.add_special_tokens(MARKERS)
    _, s = anyio.run(run_task, engine, task, "sync", cfg)
    assert (s.cml_wellformed, s.call_exact_match, s.result_use, s.trap_discipline) == (
        True,
        True,
        1.0,
        True,
    )
