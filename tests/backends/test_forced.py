"""The forced oracle trace: what is left of a scripted turn, from the turn's text."""

from __future__ import annotations

import torch

from asynclm.backends.forced import ForcedTrace, remainder
from asynclm.bench.agent import PARALLEL, call_text, make_policy

LATENCY = {"get_weather": 0.4, "get_stock_price": 0.1, "search_flights": 0.5, "get_news": 0.2}
ORDER = ["c3", "c1", "c4", "c2"]  # longest first
CALLS = {s.call_id: call_text(s) for s in PARALLEL.steps}


def _intr(call_id: str) -> str:
    return f"[INTR] {call_id} [HEAD] ok [END]"


def test_the_first_remainder_is_every_call_longest_first_then_a_trap() -> None:
    policy = make_policy(PARALLEL, LATENCY)
    assert remainder(policy, "") == "".join(CALLS[c] for c in ORDER) + "[TRAP][END]"


def test_a_partly_written_call_is_finished_and_results_change_nothing_before_the_trap() -> None:
    policy = make_policy(PARALLEL, LATENCY)
    first = CALLS["c3"]
    rest = "".join(CALLS[c] for c in ORDER[1:]) + "[TRAP][END]"
    assert remainder(policy, first[:10]) == first[10:] + rest
    assert remainder(policy, first + _intr("c3")) == rest  # an early result, mid-dispatch


def test_after_every_result_the_answer_comes() -> None:
    policy = make_policy(PARALLEL, LATENCY)
    turn = "".join(CALLS[c] for c in ORDER) + "[TRAP][END]" + "".join(map(_intr, ORDER))
    assert remainder(policy, turn) == PARALLEL.answer
    assert remainder(policy, turn + PARALLEL.answer) == ""
    assert remainder(policy, "I will not follow the script") == ""


def test_the_local_mask_keeps_only_the_next_token(cml_tokenizer) -> None:
    policy = make_policy(PARALLEL, LATENCY)
    prompt = cml_tokenizer.chat.generation_prompt
    text = prompt + CALLS["c3"]
    forced = ForcedTrace(policy, cml_tokenizer, lambda: text)
    logits = torch.zeros(cml_tokenizer.vocab_size)
    forced.mask(logits)
    (allowed,) = torch.nonzero(logits == 0).flatten().tolist()
    assert allowed == cml_tokenizer.encode("[CALL]", special=True)[0]  # the marker token
    grammar = forced.remote_fields(text)["grammar"]
    assert grammar.startswith('root ::= "[CALL] c1 [HEAD] get_weather(city=\\"Paris\\")')
