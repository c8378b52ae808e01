"""Call bodies: parsing with ast, binding to parameters, validating with jsonschema."""

import jsonschema
import pytest

from asynclm.cml import (
    CallArgumentError,
    CallSyntaxError,
    ParsedCall,
    SchemaValidator,
    bind_arguments,
    parse_call,
    validate_arguments,
)

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1},
        "unit": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["city"],
}


def test_keyword_call():
    parsed = parse_call('get_weather(city="Paris", days=3)')
    assert parsed == ParsedCall("get_weather", (), {"city": "Paris", "days": 3})


def test_dotted_name_positional_and_literals():
    parsed = parse_call("  math.stats.mean([1, 2.5, -3], (1, 'a'), {'k': None}, x=True)  ")
    assert parsed.name == "math.stats.mean"
    assert parsed.args == ([1, 2.5, -3], (1, "a"), {"k": None})
    assert parsed.kwargs == {"x": True}


def test_json_spellings():
    parsed = parse_call("f(a=true, b=false, c=null, d=[true, {'k': null}])")
    assert parsed.kwargs == {"a": True, "b": False, "c": None, "d": [True, {"k": None}]}


def test_no_arguments():
    assert parse_call("now()") == ParsedCall("now")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "empty call"),
        ("f(x=1", "invalid call syntax"),
        ("f(x=1) + 1", "expected a call"),
        ("x", "expected a call"),
        ("f(x=1); g()", "invalid call syntax"),
        ("(lambda: 1)()", "the callee must be a tool name"),
        ("f()()", "the callee must be a tool name"),
        ("a[0](x=1)", "the callee must be a tool name"),
        ("f(x=Paris)", "argument 'x' must be a literal value (got the name Paris; quote strings)"),
        ("f(x=g())", "nested calls are not allowed"),
        ("f(__import__('os'))", "argument 1 must be a literal"),
        ("f(x=1+2)", "must be a literal"),
        ("f(x=1, x=2)", "argument 'x' is given twice"),
        ("f(*a)", "*args is not allowed"),
        ("f(**a)", "**kwargs is not allowed"),
        ("f(x={1, 2})", "set values are not supported"),
        ("f(x=b'1')", "bytes values are not supported"),
        ("f(x=1j)", "complex values are not supported"),
        ("f(x=1e999)", "numbers must be finite"),
        ("f(x={1: 2})", "dict keys must be strings"),
        ("f(x='\x00')", "invalid call syntax"),
        ("f(x=[" + "[" * 40 + "]" * 41 + ")", "nested deeper than 32"),
        ("f(x=" + "[" * 2000 + "]" * 2000 + ")", "invalid call syntax"),
        ("f(x=" + "-" * 3000 + "1)", "invalid call syntax"),
        ("f(x='" + "a" * 5000 + "')", "longer than 4096"),
    ],
)
def test_syntax_errors(body, message):
    with pytest.raises(CallSyntaxError) as info:
        parse_call(body)
    assert message in str(info.value)
    assert len(str(info.value)) < 120


def test_errors_are_value_errors():
    assert issubclass(CallSyntaxError, ValueError)
    assert issubclass(CallArgumentError, ValueError)


def test_caps_are_configurable():
    with pytest.raises(CallSyntaxError, match="longer than 5"):
        parse_call("f(x=1)", max_chars=5)
    with pytest.raises(CallSyntaxError, match="deeper than 3"):
        parse_call("f(x=[[1]])", max_depth=3)


def test_bind_positional_in_property_order():
    bound = bind_arguments(parse_call("get_weather('Paris', unit='f')"), WEATHER)
    assert bound == {"city": "Paris", "unit": "f"}
    assert list(bind_arguments(parse_call("f(unit='c', city='x')"), WEATHER)) == ["city", "unit"]


def test_bind_reports_every_problem():
    parsed = parse_call("get_weather('Paris', 3, 'c', 4, city='Rome', color='red')")
    with pytest.raises(CallArgumentError) as info:
        bind_arguments(parsed, WEATHER)
    message = str(info.value)
    assert "takes at most 3 positional arguments" in message
    assert "argument 'city' is given twice" in message
    assert "unknown argument 'color' (expected one of: city, days, unit)" in message


def test_bind_unknown_argument_without_parameters():
    with pytest.raises(CallArgumentError, match="takes no arguments"):
        bind_arguments(parse_call("now(tz='UTC')"), {"type": "object"})


def test_bind_allows_extra_keywords_when_schema_does():
    schema = {"type": "object", "properties": {"a": {}}, "additionalProperties": True}
    assert bind_arguments(parse_call("f(b=2, a=1)"), schema) == {"a": 1, "b": 2}


def test_validate_accepts_and_converts_tuples():
    schema = {"type": "object", "properties": {"point": {"type": "array"}}}
    assert validate_arguments({"point": (1, (2, 3))}, schema) == {"point": [1, [2, 3]]}


def test_validate_reports_all_errors_at_once():
    with pytest.raises(CallArgumentError) as info:
        validate_arguments({"days": 0, "unit": "k"}, WEATHER)
    message = str(info.value)
    assert message.startswith("invalid arguments: ")
    assert "'city' is a required property" in message
    assert "days: 0 is less than the minimum of 1" in message
    assert "unit: 'k' is not one of ['c', 'f']" in message


def test_validate_nested_paths_and_long_values():
    schema = {
        "type": "object",
        "properties": {"stops": {"type": "array", "items": {"type": "object", "properties": {
            "city": {"type": "string"}}}}},
    }  # fmt: skip
    with pytest.raises(CallArgumentError, match=r"stops\[1\]\.city: 5 is not of type 'string'"):
        validate_arguments({"stops": [{"city": "a"}, {"city": 5}]}, schema)
    with pytest.raises(CallArgumentError) as info:
        validate_arguments({"city": ["x" * 1000]}, WEATHER)
    assert len(str(info.value)) < 250


def test_validate_caps_the_number_of_errors_shown():
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    with pytest.raises(CallArgumentError, match="and 5 more"):
        validate_arguments({f"k{i}": "x" for i in range(15)}, schema)


def test_validate_rejects_bool_as_integer():
    with pytest.raises(CallArgumentError, match="True is not of type 'integer'"):
        validate_arguments({"city": "x", "days": True}, WEATHER)


def test_invalid_schema_is_a_plain_value_error():
    with pytest.raises(ValueError, match="invalid tool schema") as info:
        validate_arguments({}, {"type": "dict"})
    assert not isinstance(info.value, CallArgumentError)


def test_schema_validator_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = SchemaValidator(WEATHER)
    # Validating must not check the schema or build a validator again: take the class away.
    monkeypatch.setattr(jsonschema, "Draft202012Validator", None)
    for days in (1, 2, 3):
        assert validator({"city": "Paris", "days": days}) == {"city": "Paris", "days": days}
    with pytest.raises(CallArgumentError, match="'city' is a required property"):
        validator({"days": 0})
