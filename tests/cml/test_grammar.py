"""The call grammar, checked with xgrammar: what it admits parses and validates."""

import random

import pytest
import xgrammar
from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.cml import (
    Call,
    CMLParser,
    bind_arguments,
    call_grammar,
    format_call,
    normalize_schema,
    parse_call,
    validate_arguments,
)

TOOLS = [
    {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
    {
        "name": "math.factorial",
        "parameters": {
            "type": "dict",
            "properties": {"number": {"type": "integer"}},
            "required": ["number"],
        },
    },
    {
        "name": "plan_trip",
        "parameters": {
            "type": "dict",
            "properties": {
                "stops": {
                    "type": "array",
                    "items": {
                        "type": "dict",
                        "properties": {"city": {"type": "string"}, "nights": {"type": "integer"}},
                        "required": ["city"],
                    },
                },
                "budget": {"type": "float"},
                "point": {"type": "tuple", "items": {"type": "float"}},
                "flexible": {"type": "boolean"},
                "note": {"type": ["string", "null"]},
                "meta": {"type": "any"},
                "mode": {"enum": [1, "fast", None, "it's [END]"]},
                "scores": {"type": "dict", "additionalProperties": {"type": "integer"}},
            },
            "required": ["stops", "flexible"],
        },
    },
    {"name": "now", "parameters": {"type": "dict", "properties": {}}},
]
SCHEMAS = {tool["name"]: normalize_schema(tool["parameters"]) for tool in TOOLS}


@pytest.fixture(scope="module")
def grammar():
    return compile_for_strings(call_grammar(TOOLS))


def compile_for_strings(ebnf):
    """The grammar compiled once, for matching whole strings (no tokenizer)."""
    compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo([]), cache_enabled=False)
    return compiler.compile_grammar(xgrammar.Grammar.from_ebnf(ebnf))


def accepts(compiled, text):
    matcher = xgrammar.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return matcher.accept_string(text) and matcher.is_terminated()


def check_round_trip(text):
    """The text after [CALL] gives one Call that parses, binds and validates."""
    events = CMLParser().feed("[CALL]" + text)
    assert isinstance(events[-1], Call), events
    parsed = parse_call(events[-1].body)
    schema = SCHEMAS[parsed.name]
    return validate_arguments(bind_arguments(parsed, schema), schema)


@pytest.mark.parametrize(
    "text",
    [
        ' w1 [HEAD] get_weather(city="Paris") [END]',
        " w1 [HEAD] get_weather(city='Paris', unit='celsius', days=-3) [END]",
        'w1[HEAD]get_weather(city="a\\"b\\\\c\\n\\x5bEND]", days=0)[END]',
        ' w2 [HEAD] get_weather(city="Pa[ENris é中 [END ] [x]") [END]',
        " _ [HEAD] math.factorial(number=120) [END]",
        " iff [HEAD] now() [END]",
        " x [HEAD] plan_trip(stops=[], flexible=True) [END]",
        ' x [HEAD] plan_trip(stops=[{\'city\': \'Rome\'}, {"city": "Oslo", "nights": 2}],'
        " budget=1.5e3, point=[1, -2.25], flexible=False, note=None, meta={'k': [1, 'v', None]},"
        " mode='it\\'s \\x5bEND]', scores={'a': 1}) [END]",
        ' x [HEAD] plan_trip(stops=[], flexible=True, note="n", mode=None) [END]',
    ],
)
def test_accepts_valid_calls(grammar, text):
    assert accepts(grammar, text)
    check_round_trip(text)


@pytest.mark.parametrize(
    "text",
    [
        ' w1 [HEAD] get_wether(city="Paris") [END]',  # unknown tool
        ' w1 [HEAD] get_weather(town="Paris") [END]',  # unknown parameter
        " w1 [HEAD] get_weather(unit='celsius') [END]",  # required parameter missing
        ' w1 [HEAD] get_weather(days=1, city="Paris") [END]',  # declared order
        " w1 [HEAD] get_weather(city=5) [END]",  # wrong type
        ' w1 [HEAD] get_weather(city="Paris", unit="kelvin") [END]',  # not in the enum
        ' w1 [HEAD] get_weather(city="Paris", days=1.5) [END]',
        ' w1 [HEAD] get_weather(city="Paris", days=007) [END]',
        ' w1 [HEAD] get_weather(city="Paris [END]") [END]',  # marker inside a string
        ' w1 [HEAD] get_weather(city="Paris\n") [END]',
        ' w1 [HEAD] get_weather("Paris") [END]',  # positional
        ' w1 [HEAD] get_weather(city="Paris"',  # unfinished
        ' w1 [HEAD] get_weather(city="Paris") [END] more',
        " class [HEAD] now() [END]",  # keyword as id
        " 1w [HEAD] now() [END]",
        " [HEAD] now() [END]",  # no id
        " x [HEAD] math.factorial(number=True) [END]",
        " x [HEAD] plan_trip(stops=[{'nights': 1}], flexible=True) [END]",
        " x [HEAD] plan_trip(stops=[], flexible=1) [END]",
        " x [HEAD] plan_trip(stops=[], flexible=true) [END]",
        " x [HEAD] plan_trip(stops=[], flexible=True, budget=1e999) [END]",
        " x [HEAD] plan_trip(stops=[], flexible=True, mode='slow') [END]",
        " x [HEAD] plan_trip(stops=[], flexible=True, scores={'a': 'b'}) [END]",
    ],
)
def test_rejects_invalid_calls(grammar, text):
    assert not accepts(grammar, text)


def test_grammar_is_text_and_pure():
    text = call_grammar(TOOLS)
    assert text.startswith("root ::=")
    assert '"get_weather"' in text and '"math.factorial"' in text


@pytest.mark.parametrize(
    "tools",
    [
        [],
        [{"name": "bad-name", "parameters": {}}],
        [{"name": "f", "parameters": {"type": "dict", "properties": {"not ok": {}}}}],
        [{"name": "f", "parameters": {"properties": {"x": {"enum": [float("nan")]}}}}],
    ],
)
def test_rejects_bad_tools(tools):
    with pytest.raises(ValueError):
        call_grammar(tools)


VOCAB = [chr(c) for c in range(32, 127)] + ["é", "中", "\n", "[HEAD]", "[END]", "</s>"]
STOP = len(VOCAB) - 1
CLOSERS = ['"', "'", ")", "]", "}", ",", " ", "0", "N"]  # end strings, lists, numbers, values


def random_walk(matcher, rnd, soft_limit):
    """Samples one string the grammar admits, one character (or marker) at a time.

    Past `soft_limit` characters it picks among the allowed closers, so it terminates.
    """
    bitmask = xgrammar.allocate_token_bitmask(1, len(VOCAB))
    out = []
    for _ in range(5_000):
        matcher.fill_next_token_bitmask(bitmask)
        words = bitmask[0].tolist()  # 32 tokens a word, bit set = allowed
        ids = [i for i in range(len(VOCAB)) if (words[i >> 5] >> (i & 31)) & 1]
        if ids == [STOP]:
            return "".join(out)
        ids = [i for i in ids if i != STOP]
        closers = [VOCAB.index(c) for c in CLOSERS if VOCAB.index(c) in ids]
        token = rnd.choice(closers if len(out) > soft_limit and closers else ids)
        assert matcher.accept_token(token)
        out.append(VOCAB[token])
    raise AssertionError("random walk did not terminate")


def test_every_string_the_grammar_admits_parses_and_validates():
    info = xgrammar.TokenizerInfo(VOCAB, stop_token_ids=[STOP])
    compiled = xgrammar.GrammarCompiler(info, cache_enabled=False).compile_grammar(
        call_grammar(TOOLS)
    )
    rnd = random.Random(0)
    seen_tools = set()
    for walk in range(150):
        matcher = xgrammar.GrammarMatcher(compiled)
        text = random_walk(matcher, rnd, soft_limit=10 + walk % 60)
        args = check_round_trip(text)
        seen_tools.add(text.split("[HEAD]")[1].split("(")[0].strip())
        assert isinstance(args, dict)
    assert seen_tools == set(SCHEMAS)


optional_values = {"unit": st.sampled_from(["celsius", "fahrenheit"]), "days": st.integers()}


@settings(max_examples=150, database=None, deadline=None)
@given(st.fixed_dictionaries({"city": st.text()}, optional=optional_values), st.data())
def test_formatted_calls_are_admitted(args, data):
    args = {key: args[key] for key in ("city", "unit", "days") if key in args}  # declared order
    call_id = data.draw(st.sampled_from(["w1", "call_7", "x"]))
    text = format_call(call_id, "get_weather", args).removeprefix("[CALL]")
    assert accepts(_module_grammar(), text)
    assert check_round_trip(text) == args


_GRAMMAR_CACHE = []


def _module_grammar():
    if not _GRAMMAR_CACHE:
        _GRAMMAR_CACHE.append(compile_for_strings(call_grammar(TOOLS)))
    return _GRAMMAR_CACHE[0]
