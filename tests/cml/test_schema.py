"""BFCL / OpenAPI-style parameter schemas → valid JSON Schema."""

import copy

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.cml import normalize_schema

BFCL = {
    "type": "dict",
    "properties": {
        "base": {"type": "integer", "description": "The base."},
        "ratio": {"type": "float", "default": 0.5},
        "point": {"type": "tuple", "items": {"type": "float"}},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        "extra": {"type": "any", "description": "Anything."},
        "options": {
            "type": "dict",
            "properties": {"deep": {"type": "boolean"}, "note": {"type": "String"}},
            "required": ["deep", "missing"],
        },
        "unit": {"type": "string", "optional": True},
    },
    "required": ["base", "unit", "ghost"],
}


def test_bfcl_schema():
    out = normalize_schema(BFCL)
    jsonschema.Draft202012Validator.check_schema(out)
    assert out["type"] == "object"
    props = out["properties"]
    assert props["ratio"] == {"type": "number", "default": 0.5}
    assert props["point"] == {"type": "array", "items": {"type": "number"}}
    assert props["tags"]["items"] == {"type": "string", "enum": ["a", "b"]}
    assert props["extra"] == {"description": "Anything."}
    assert props["options"]["type"] == "object"
    assert props["options"]["properties"]["note"] == {"type": "string"}
    assert props["options"]["required"] == ["deep"]
    assert props["unit"] == {"type": "string"}
    assert out["required"] == ["base"]  # "unit" is optional, "ghost" does not exist


def test_does_not_mutate_input_or_share_values():
    original = copy.deepcopy(BFCL)
    out = normalize_schema(BFCL)
    assert original == BFCL
    out["properties"]["tags"]["items"]["enum"].append("z")
    assert BFCL["properties"]["tags"]["items"]["enum"] == ["a", "b"]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "long"}, {"type": "integer"}),
        ({"type": "Boolean"}, {"type": "boolean"}),
        ({"type": "HashMap"}, {"type": "object"}),
        ({"type": "ArrayList"}, {"type": "array"}),
        ({"type": "SomeClass"}, {}),
        ({"type": ["string", "null"]}, {"type": ["string", "null"]}),
        ({"type": ["float", "any"]}, {}),
        ({"type": "string", "nullable": True}, {"type": ["string", "null"]}),
        ({"properties": {"a": {}}}, {"type": "object", "properties": {"a": {}}}),
        ({"type": "array", "items": [{"type": "int"}, {"type": "str"}]},
         {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}),
        ({"type": "string", "pattern": "(unclosed", "minLength": -1, "maxLength": 3},
         {"type": "string", "maxLength": 3}),
        ({"type": "integer", "minimum": "0", "maximum": 9, "multipleOf": 0},
         {"type": "integer", "maximum": 9}),
        ({"type": "string", "enum": []}, {"type": "string"}),
        ({"type": "string", "description": 5, "example": "x"},
         {"type": "string", "description": "5"}),
        ({"anyOf": [{"type": "int"}, {"type": "dict"}]},
         {"anyOf": [{"type": "integer"}, {"type": "object"}]}),
        ({"type": "dict", "properties": {"a": {"type": "int", "required": True}}},
         {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
        ({"type": "dict", "additionalProperties": {"type": "float"}},
         {"type": "object", "additionalProperties": {"type": "number"}}),
        ({"$ref": "#/nowhere", "type": "string"}, {"type": "string"}),
    ],
)  # fmt: skip
def test_conversions(schema, expected):
    out = normalize_schema(schema)
    assert out == expected
    jsonschema.Draft202012Validator.check_schema(out)


def test_validation_with_normalized_schema():
    validator = jsonschema.Draft202012Validator(normalize_schema(BFCL))
    assert validator.is_valid({"base": 3, "point": [1.0, 2], "extra": {"any": [None]}})
    assert not validator.is_valid({"base": 3.5})
    assert not validator.is_valid({"base": 3, "options": {"note": "x"}})


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(
        st.sampled_from(["type", "properties", "items", "required", "enum", "optional",
                         "anyOf", "minimum", "pattern", "nullable", "default", "x"]),
        children, max_size=4,
    ),
    max_leaves=12,
)  # fmt: skip
schema_like = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["dict", "float", "tuple", "any", "integer", "string",
                                  "boolean", "array", "Unknown", "null"])},
        optional={"enum": junk, "pattern": st.text(max_size=4), "minimum": junk, "required": junk,
                  "optional": st.booleans(), "items": junk},
    ),
    lambda children: st.fixed_dictionaries(
        {"type": st.just("dict"),
         "properties": st.dictionaries(st.text(max_size=4), children, max_size=3)},
        optional={"required": st.lists(st.text(max_size=4)), "items": children},
    ),
    max_leaves=6,
)  # fmt: skip


@settings(max_examples=150, database=None, deadline=None)
@given(st.one_of(schema_like, junk.filter(lambda value: isinstance(value, dict))))
def test_any_input_gives_a_valid_schema_and_is_stable(schema):
    original = copy.deepcopy(schema)
    out = normalize_schema(schema)
    jsonschema.Draft202012Validator.check_schema(out)
    assert schema == original or schema != schema  # untouched (NaN never equals itself)
    assert normalize_schema(out) == out
