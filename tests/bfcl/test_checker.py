"""The AST checker's rules, on BFCL's own examples (entries copied from BFCL v4)."""

from __future__ import annotations

import pytest

from asynclm.bfcl_eval.checker import category_kind, check_answer, check_call, check_chains
from asynclm.bfcl_eval.rules import check_value, standardize

# simple_python_0 and its possible answer
TRIANGLE = {
    "name": "calculate_triangle_area",
    "description": "Calculate the area of a triangle given its base and height.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "The base of the triangle."},
            "height": {"type": "integer", "description": "The height of the triangle."},
            "unit": {"type": "string", "description": "The unit of measure"},
        },
        "required": ["base", "height"],
    },
}
TRIANGLE_ANSWER = [
    {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}
]

# parallel_0
SPOTIFY = {
    "name": "spotify.play",
    "description": "Play specific tracks from a given artist for a specific time duration.",
    "parameters": {
        "type": "dict",
        "properties": {
            "artist": {"type": "string", "description": "The artist."},
            "duration": {"type": "integer", "description": "Minutes."},
        },
        "required": ["artist", "duration"],
    },
}
SPOTIFY_ANSWER = [
    {"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}},
    {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}},
]


def triangle(**args) -> bool:
    return check_answer(
        "simple_python", [TRIANGLE], [{"calculate_triangle_area": args}], TRIANGLE_ANSWER
    ).valid


def test_simple_right_answers() -> None:
    assert triangle(base=10, height=5)  # optional unit left out ("" accepted)
    assert triangle(base=10, height=5, unit="units")
    assert triangle(base=10, height=5, unit="Units ")  # case and spacing standardised


def test_simple_wrong_answers_and_their_error_types() -> None:
    cases = {
        "type_error:simple": dict(base=10.0, height=5),  # float for an integer
        "simple_function_checker:missing_required": dict(height=5),
        "simple_function_checker:unexpected_param": dict(base=10, height=5, color="red"),
        "value_error:string": dict(base=10, height=5, unit="cm"),
        "value_error:others": dict(base=11, height=5),
    }
    for error_type, args in cases.items():
        verdict = check_answer(
            "simple_python", [TRIANGLE], [{"calculate_triangle_area": args}], TRIANGLE_ANSWER
        )
        assert not verdict.valid and verdict.error_type == error_type, args
    assert not triangle(base=True, height=5)  # a bool is not an integer


def test_simple_needs_exactly_one_call_with_the_documented_name() -> None:
    good = {"calculate_triangle_area": {"base": 10, "height": 5}}
    assert not check_answer("simple_python", [TRIANGLE], [], TRIANGLE_ANSWER).valid
    assert not check_answer("simple_python", [TRIANGLE], [good, good], TRIANGLE_ANSWER).valid
    renamed = {"calculate_area": {"base": 10, "height": 5}}
    verdict = check_answer("simple_python", [TRIANGLE], [renamed], TRIANGLE_ANSWER)
    assert verdict.error_type == "simple_function_checker:wrong_func_name"


def test_dotted_names_are_compared_as_written() -> None:
    doc = {
        "name": "math.factorial",
        "description": "",
        "parameters": {
            "type": "dict",
            "properties": {"number": {"type": "integer"}},
            "required": ["number"],
        },
    }
    answer = [{"math.factorial": {"number": [5]}}]
    assert check_answer("simple_python", [doc], [{"math.factorial": {"number": 5}}], answer).valid
    assert not check_answer("simple_python", [doc], [{"math_factorial": {"number": 5}}], answer)


def test_string_standardisation() -> None:
    assert standardize("April 1, 2024") == "april12024"
    assert standardize("New-York_City/NY.") == "newyorkcityny"
    assert standardize("it's 2*3^2") == 'it"s232'
    spec, accepted = {"type": "string"}, ["San Francisco, CA"]
    assert check_value("city", "san francisco CA", spec, accepted)
    assert not check_value("city", "San Francisco; CA", spec, accepted)  # ";" is kept


def test_int_accepted_for_float_but_not_inside_lists() -> None:
    assert check_value("x", 2, {"type": "float"}, [2.0])
    assert not check_value("x", 2.0, {"type": "integer"}, [2])
    spec = {"type": "array", "items": {"type": "float"}}
    assert check_value("xs", [1.0, 2.5], spec, [[1.0, 2.5]])
    assert not check_value("xs", [1, 2.5], spec, [[1.0, 2.5]])  # elements: no int -> float
    # an optional ("") possible value skips the element check, and 1 == 1.0 compares equal
    assert check_value("xs", [1, 2.5], spec, [[1.0, 2.5], ""])


def test_tuples_read_as_lists() -> None:
    spec = {"type": "tuple", "items": {"type": "integer"}}
    assert check_value("p", (3, 4), spec, [[3, 4]])
    assert check_value("p", [3, 4], spec, [[3, 4]])
    assert not check_value("p", (3, 4), {"type": "array", "items": {"type": "integer"}}, [[3, 4]])


def test_lists_standardise_top_level_strings_only_and_keep_order() -> None:
    spec = {"type": "array", "items": {"type": "string"}}
    assert check_value("c", ["New York", "LA"], spec, [["new york", "la"]])
    assert not check_value("c", ["LA", "New York"], spec, [["new york", "la"]])
    nested = {"type": "array", "items": {"type": "array"}}
    assert not check_value("m", [["A"]], nested, [[["a"]]])  # nested strings compared as is
    assert check_value("c", [], spec, [["x"], ""])  # BFCL reads "" as an empty list


def test_dicts() -> None:
    spec = {"type": "dict", "properties": {}}
    accepted = [{"name": ["Alice"], "age": ["", 30]}]
    assert check_value("who", {"name": "alice"}, spec, accepted)
    assert check_value("who", {"name": "Alice", "age": 30}, spec, accepted)
    assert not check_value("who", {"name": "Alice", "age": 31}, spec, accepted)
    assert not check_value("who", {"name": "Alice", "city": "x"}, spec, accepted)
    assert not check_value("who", {"age": 30}, spec, accepted)  # missing key
    assert not check_value("who", {"name": "Alice"}, spec, [""])  # only "": nothing to match


def test_list_of_dicts_in_order() -> None:
    spec = {"type": "array", "items": {"type": "dict"}}
    accepted = [[{"item": ["apple"], "n": [2]}, {"item": ["pear"], "n": [1]}]]
    assert check_value(
        "order", [{"item": "Apple", "n": 2}, {"item": "pear", "n": 1}], spec, accepted
    )
    assert not check_value(
        "order", [{"item": "pear", "n": 1}, {"item": "apple", "n": 2}], spec, accepted
    )
    assert not check_value("order", [{"item": "apple", "n": 2}], spec, accepted)


def test_variable_values_take_the_possible_answers_type() -> None:
    # a string where the document says integer: BFCL's "variable" case, compared as is
    assert check_value("n", "count", {"type": "integer"}, ["count"])
    assert not check_value("n", "Count", {"type": "integer"}, ["count"])


def test_optional_parameters_may_be_left_out_only_where_empty_is_accepted() -> None:
    doc = {
        "name": "f",
        "description": "",
        "parameters": {
            "type": "dict",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a"],
        },
    }
    assert check_call(doc, {"f": {"a": 1}}, {"f": {"a": [1], "b": ["", 2]}})
    verdict = check_call(doc, {"f": {"a": 1}}, {"f": {"a": [1], "b": [2]}})
    assert verdict.error_type == "simple_function_checker:missing_optional"


def test_parallel_any_order_right_count() -> None:
    a = {"spotify.play": {"artist": "Taylor Swift", "duration": 20}}
    b = {"spotify.play": {"artist": "maroon 5", "duration": 15}}
    check = lambda calls: check_answer("parallel", [SPOTIFY], calls, SPOTIFY_ANSWER)  # noqa: E731
    assert check([a, b]) and check([b, a])
    assert check([a]).error_type == "parallel_function_checker_no_order:wrong_count"
    assert not check([a, a])
    assert not check([a, b, b])


def test_parallel_matching_is_first_fit_as_in_bfcl() -> None:
    doc = {
        "name": "f",
        "description": "",
        "parameters": {"type": "dict", "properties": {"x": {"type": "integer"}}, "required": []},
    }
    answers = [{"f": {"x": ["", 1]}}, {"f": {"x": [1]}}]
    # a perfect matching exists ({} -> first, {x: 1} -> second) but first fit takes x=1 first
    assert check_answer("parallel", [doc], [{"f": {"x": 1}}, {"f": {}}], answers).valid is False
    assert check_answer("parallel", [doc], [{"f": {}}, {"f": {"x": 1}}], answers).valid


def test_multiple_picks_the_expected_function() -> None:
    other = {**TRIANGLE, "name": "calculate_circle_area"}
    functions = [other, TRIANGLE]
    right = [{"calculate_triangle_area": {"base": 10, "height": 5}}]
    wrong = [{"calculate_circle_area": {"base": 10, "height": 5}}]
    assert check_answer("multiple", functions, right, TRIANGLE_ANSWER).valid
    assert not check_answer("multiple", functions, wrong, TRIANGLE_ANSWER).valid
    assert not check_answer("multiple", functions, right * 2, TRIANGLE_ANSWER).valid


def test_irrelevance_and_relevance() -> None:
    call = [{"calculate_triangle_area": {"base": 10, "height": 5}}]
    assert check_answer("irrelevance", [TRIANGLE], [], None).valid
    assert not check_answer("irrelevance", [TRIANGLE], call, None).valid
    assert check_answer("live_relevance", [TRIANGLE], call, None).valid
    assert not check_answer("live_relevance", [TRIANGLE], [], None).valid


def test_category_kinds() -> None:
    assert category_kind("parallel_multiple") == "parallel"
    assert category_kind("live_multiple") == "multiple"
    assert category_kind("live_irrelevance") == "irrelevance"
    assert category_kind("multistep_parallel") == "chains"
    assert category_kind("simple_python") == "simple"
    with pytest.raises(ValueError, match="execution"):
        category_kind("multi_turn_base")


def _doc(name: str) -> dict:
    props = {"x": {"type": "integer"}}
    return {"name": name, "description": "", "parameters": {"properties": props, "required": []}}


def test_chains_in_order_any_interleaving() -> None:
    functions = [_doc("a"), _doc("b"), _doc("c")]
    chains = [
        [{"a": {"x": [1]}}, {"a": {"x": [2]}}],
        [{"b": {"x": [1]}}],
        [{"c": {"x": [1]}}, {"b": {"x": [3]}}],
    ]
    a1, a2, b1 = {"a": {"x": 1}}, {"a": {"x": 2}}, {"b": {"x": 1}}
    c1, b3 = {"c": {"x": 1}}, {"b": {"x": 3}}
    assert check_chains(functions, [a1, b1, c1, a2, b3], chains)
    assert check_chains(functions, [c1, b3, a1, a2, b1], chains)
    assert not check_chains(functions, [a2, a1, b1, c1, b3], chains)  # chain a out of order
    assert not check_chains(functions, [b3, c1, a1, a2, b1], chains)  # chain c out of order
    assert not check_chains(functions, [a1, a2, b1, c1], chains)  # one call missing
    assert not check_chains(functions, [a1, a2, b1, c1, b3, b3], chains)
