"""Our AST checker against BFCL's official one (from the installed bfcl-eval files)."""

from __future__ import annotations

import pytest

from asynclm.bfcl_eval.agreement import compare, official_root, official_verdicts
from asynclm.bfcl_eval.checker import check_answer
from asynclm.bfcl_eval.data import Entry
from asynclm.bfcl_eval.perturb import Case, perturbations

pytestmark = pytest.mark.usefixtures("real_data")


def test_sample_of_perturbed_answers_agrees_fully() -> None:
    report = compare(2000, seed=1)
    assert report.cases == 2000
    assert report.disagreements == []
    assert report.error_type_agree == report.both_invalid
    assert 0.05 < report.valid_fraction < 0.95  # both right and wrong answers were tried


@pytest.mark.slow
def test_fifty_thousand_perturbed_answers_agree_fully() -> None:
    report = compare(50_000, seed=0)
    assert report.agree == report.cases == 50_000, report.summary()


def _doc(props: dict, required: list[str]) -> dict:
    return {
        "name": "f",
        "description": "",
        "parameters": {"type": "dict", "properties": props, "required": required},
    }


# Corner cases of BFCL's rules our checker documents; the official checker must agree.
CORNERS = [
    # first-fit matching in parallel categories
    (
        "parallel",
        _doc({"x": {"type": "integer"}}, []),
        [{"f": {"x": 1}}, {"f": {}}],
        [{"f": {"x": ["", 1]}}, {"f": {"x": [1]}}],
    ),
    # "" among the possible lists: elements unchecked, and [] reads as ""
    (
        "simple_python",
        _doc({"xs": {"type": "array", "items": {"type": "float"}}}, []),
        [{"f": {"xs": [1, 2]}}],
        [{"f": {"xs": [[1.0, 2.0], ""]}}],
    ),
    (
        "simple_python",
        _doc({"xs": {"type": "array", "items": {"type": "string"}}}, []),
        [{"f": {"xs": []}}],
        [{"f": {"xs": [["a"], ""]}}],
    ),
    # a dict parameter whose only possible value is "": a given dict never matches
    ("simple_python", _doc({"d": {"type": "dict"}}, []), [{"f": {"d": {}}}], [{"f": {"d": [""]}}]),
    # variable: a string for an integer parameter, compared without standardisation
    (
        "simple_python",
        _doc({"n": {"type": "integer"}}, []),
        [{"f": {"n": "Count"}}],
        [{"f": {"n": ["count"]}}],
    ),
    # a tuple for a tuple parameter; a bool for an integer one
    (
        "simple_python",
        _doc({"p": {"type": "tuple", "items": {"type": "integer"}}}, ["p"]),
        [{"f": {"p": (1, 2)}}],
        [{"f": {"p": [[1, 2]]}}],
    ),
    (
        "simple_python",
        _doc({"n": {"type": "integer"}}, ["n"]),
        [{"f": {"n": True}}],
        [{"f": {"n": [1]}}],
    ),
]


@pytest.mark.parametrize("category,doc,calls,answer", CORNERS)
def test_documented_corner_cases_are_bfcls(category, doc, calls, answer) -> None:
    entry = Entry("corner", category, [[]], [doc], answer)
    (official,) = official_verdicts(
        [Case("corner", category, calls, ())], {"corner": entry}, official_root()
    )
    ours = check_answer(category, [doc], calls, answer)
    assert (ours.valid, ours.error_type or "") == (official[0], official[1] or "")


def test_perturbations_are_reproducible() -> None:
    from asynclm.bfcl_eval.data import load_category

    entries = load_category("parallel", limit=20)
    assert perturbations(entries, 50, seed=3) == perturbations(entries, 50, seed=3)
    assert perturbations(entries, 50, seed=3) != perturbations(entries, 50, seed=4)
