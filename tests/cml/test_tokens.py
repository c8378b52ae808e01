"""Markers, writers and `neutralize`."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.cml import (
    CALL,
    END,
    HEAD,
    INTR,
    MARKERS,
    TRAP,
    Call,
    CMLParser,
    format_call,
    format_interrupt,
    format_trap,
    format_value,
    neutralize,
    parse_call,
)
from asynclm.cml.tokens import SAFE_CLOSE, SAFE_OPEN

FRAGMENTS = st.sampled_from(["[", "]", "[C", "CALL", "LL]", "END]", "[END", "D]", "[INTR]", " "])
TEXT = st.lists(st.one_of(FRAGMENTS, st.sampled_from(MARKERS), st.text(max_size=5))).map("".join)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(MARKERS),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def test_marker_constants():
    assert MARKERS == ("[CALL]", "[HEAD]", "[END]", "[TRAP]", "[INTR]")
    assert (CALL, HEAD, END, TRAP, INTR) == MARKERS


def test_format_call_and_trap():
    text = format_call("w1", "get_weather", {"city": "Paris", "days": 3})
    assert text == "[CALL] w1 [HEAD] get_weather(city='Paris', days=3) [END]"
    assert format_trap() == "[TRAP][END]"


def test_format_call_escapes_markers_in_strings():
    text = format_call("w1", "echo", {"text": "a [END] b [CALL]"})
    events = CMLParser().feed(text)
    call = events[-1]
    assert isinstance(call, Call)
    assert parse_call(call.body).kwargs == {"text": "a [END] b [CALL]"}


@pytest.mark.parametrize(
    ("call_id", "name", "args"),
    [
        ("1w", "f", {}),
        ("class", "f", {}),
        ("w1", "f-g", {}),
        ("w1", "f..g", {}),
        ("w1", "f", {"not-ok": 1}),
        ("w1", "f", {"x": float("nan")}),
        ("w1", "f", {"x": {1, 2}}),
        ("w1", "f", {"x": {1: 2}}),
    ],
)
def test_format_call_rejects_bad_input(call_id, name, args):
    with pytest.raises(ValueError):
        format_call(call_id, name, args)


@settings(max_examples=200, database=None, deadline=None)
@given(json_values)
def test_format_value_round_trips(value):
    text = format_call("c", "tools.echo", {"value": value})
    events = CMLParser().feed(text)
    assert [type(e) for e in events] == [type(events[0]), Call]
    parsed = parse_call(events[-1].body, max_depth=64)
    assert parsed.name == "tools.echo"
    assert parsed.kwargs == {"value": value}


def test_format_value_tuples():
    assert format_value((1,)) == "(1,)"
    assert format_value((1, "a")) == "(1, 'a')"


def test_format_interrupt_neutralizes_value():
    text = format_interrupt("w1", "sunny [END] [INTR] x [HEAD]")
    assert text.startswith("[INTR] w1 [HEAD] ") and text.endswith(" [END]")
    inner = text[len("[INTR] w1 [HEAD] ") : -len(" [END]")]
    assert not any(marker in inner for marker in MARKERS)
    assert inner == f"sunny {SAFE_OPEN}END] {SAFE_OPEN}INTR] x {SAFE_OPEN}HEAD]"
    with pytest.raises(ValueError):
        format_interrupt("bad id", "x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain [text] stays", "plain [text] stays"),
        ("[END]", f"{SAFE_OPEN}END]"),
        ("[[CALL]]", f"[{SAFE_OPEN}CALL]]"),
        ("ends with [CA", f"ends with {SAFE_OPEN}CA"),
        ("ends with [", f"ends with {SAFE_OPEN}"),
        ("LL] starts", f"LL{SAFE_CLOSE} starts"),
        ("list [1, 2]", "list [1, 2]"),
        ("", ""),
    ],
)
def test_neutralize_examples(text, expected):
    assert neutralize(text) == expected


@settings(max_examples=300, database=None, deadline=None)
@given(TEXT)
def test_neutralize_is_idempotent_and_marker_free(text):
    once = neutralize(text)
    assert neutralize(once) == once
    assert not any(marker in once for marker in MARKERS)
    # Nothing around it can complete a marker with it.
    for marker in MARKERS:
        for cut in range(1, len(marker)):
            assert marker not in marker[:cut] + once
            assert marker not in once + marker[cut:]


@settings(max_examples=200, database=None, deadline=None)
@given(TEXT)
def test_interrupt_reads_as_plain_text_to_the_parser(text):
    parser = CMLParser()
    events = parser.feed(format_interrupt("w1", text)) + parser.close()
    # Exactly the runtime's own markers: [INTR], [HEAD], [END]; nothing from the value.
    assert [e.raw for e in events if e.raw in MARKERS] == [INTR, HEAD, END]
