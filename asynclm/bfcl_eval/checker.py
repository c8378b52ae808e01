"""BFCL's AST checker for whole answers: calls against possible answers, per category. Pure.

A model's answer is a list of calls as BFCL decodes them, `[{name: {parameter: value}}]`.
Rules (those of the official checker; see `asynclm.bfcl_eval.rules` for one value's rules):
- one call: the function name must equal the document's (dotted names compared as written);
  every required parameter present; no parameter outside the document or the possible answer;
  each value accepted; a parameter of the possible answer may be left out only where "" is
  among its values;
- simple categories: exactly one call, checked against the first function;
- "multiple" categories: as many calls as possible answers (one), checked against the expected
  function (picked from several);
- "parallel" categories: as many calls as possible answers, matched in any order; like BFCL,
  each possible answer in turn takes the first unmatched call that passes (first fit);
- irrelevance: right only when no call is made; relevance: right when some call is made;
- multistep_parallel (ours): each chain's calls in order, chains in any interleaving.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from asynclm.bfcl_eval.rules import OPTIONAL, PASS, Verdict, check_value, fail

__all__ = [
    "Call",
    "category_kind",
    "check_answer",
    "check_call",
    "check_chains",
    "check_parallel",
]

Call = dict[str, dict[str, Any]]  # one decoded call: {function name: {parameter: value}}


def category_kind(category: str) -> str:
    """How a category is checked: irrelevance, relevance, chains, parallel, multiple, simple.

    The names are matched as BFCL matches them (`parallel_multiple` is a parallel category).

    Raises:
        ValueError: A category the AST checker does not cover (multi-turn ones).
    """
    if category.startswith("multi_turn") or category in ("memory", "web_search"):
        raise ValueError(f"{category} is checked by execution in BFCL, not by the AST checker")
    for kind, marker in (
        ("irrelevance", "irrelevance"),
        ("relevance", "relevance"),
        ("chains", "multistep"),
        ("parallel", "parallel"),
        ("multiple", "multiple"),
    ):
        if marker in category:
            return kind
    return "simple"


def check_answer(
    category: str, functions: Sequence[dict], calls: Sequence[Call], ground_truth: list | None
) -> Verdict:
    """The verdict on a model's calls for one entry.

    Args:
        category: The entry's category.
        functions: Its function documents.
        calls: The model's calls, decoded.
        ground_truth: Its possible answers (None for irrelevance/relevance).

    Returns:
        The verdict, with BFCL's error type on failure.
    """
    kind = category_kind(category)
    if kind == "irrelevance":
        return PASS if not calls else fail("irrelevance_error:decoder_success", "made a call")
    if kind == "relevance":
        return PASS if calls else fail("relevance_error:decoder_failed", "made no call")
    if ground_truth is None:
        raise ValueError(f"{category} needs a ground truth to check against")
    if kind == "chains":
        return check_chains(functions, calls, ground_truth)
    if kind == "parallel":
        return check_parallel(functions, calls, ground_truth)
    if kind == "multiple":
        return _check_multiple(functions, calls, ground_truth)
    if len(calls) != 1:
        return fail("simple_function_checker:wrong_count", f"{len(calls)} calls, expected 1")
    return check_call(functions[0], calls[0], ground_truth[0])


def check_call(doc: dict, call: Call, answer: dict) -> Verdict:
    """One call against one possible answer `{name: {parameter: [accepted values]}}`.

    Args:
        doc: The function's document (its name is the one the call must use).
        call: The decoded call.
        answer: The possible answer.
    """
    name = doc["name"]
    if name not in call:
        return fail("simple_function_checker:wrong_func_name", f"{name!r} not called")
    arguments, accepted = call[name], next(iter(answer.values()))
    properties = doc["parameters"].get("properties", {})
    for param in doc["parameters"].get("required", []):
        if param not in arguments:
            return fail("simple_function_checker:missing_required", f"{param!r} missing")
    for param, value in arguments.items():
        if param not in properties or param not in accepted:
            return fail("simple_function_checker:unexpected_param", f"unexpected {param!r}")
        verdict = check_value(param, value, properties[param], accepted[param])
        if not verdict.valid:
            return verdict
    for param, options in accepted.items():
        if param not in arguments and OPTIONAL not in options:
            return fail("simple_function_checker:missing_optional", f"{param!r} not given")
    return PASS


def _check_multiple(functions: Sequence[dict], calls: Sequence[Call], answers: list) -> Verdict:
    if len(calls) != len(answers):
        return fail("multiple_function_checker:wrong_count", f"{len(calls)} calls")
    return check_call(find_doc(functions, answers[0]), calls[0], answers[0])


def check_parallel(functions: Sequence[dict], calls: Sequence[Call], answers: list) -> Verdict:
    """Calls against possible answers in any order (BFCL's first-fit matching)."""
    if len(calls) != len(answers):
        return fail(
            "parallel_function_checker_no_order:wrong_count",
            f"{len(calls)} calls, expected {len(answers)}",
        )
    unmatched = list(range(len(calls)))
    for k, answer in enumerate(answers):
        doc = find_doc(functions, answer)
        match = next((i for i in unmatched if check_call(doc, calls[i], answer).valid), None)
        if match is None:
            return fail(
                "parallel_function_checker_no_order:cannot_find_match",
                f"no call matches possible answer {k} ({next(iter(answer))})",
            )
        unmatched.remove(match)
    return PASS


def check_chains(functions: Sequence[dict], calls: Sequence[Call], chains: list) -> Verdict:
    """Each chain's calls in its order; the chains interleaved in any way.

    Args:
        functions: The task's function documents.
        calls: The model's calls in the order it made them.
        chains: Per chain, its possible answers in order.
    """
    expected = sum(len(chain) for chain in chains)
    if len(calls) != expected:
        return fail("multistep:wrong_count", f"{len(calls)} calls, expected {expected}")
    docs = [[find_doc(functions, answer) for answer in chain] for chain in chains]

    @cache
    def completes(progress: tuple[int, ...]) -> bool:
        i = sum(progress)
        if i == len(calls):
            return True
        return any(
            pos < len(chains[c])
            and check_call(docs[c][pos], calls[i], chains[c][pos]).valid
            and completes((*progress[:c], pos + 1, *progress[c + 1 :]))
            for c, pos in enumerate(progress)
        )

    if completes((0,) * len(chains)):
        return PASS
    return fail("multistep:cannot_find_match", "the calls do not follow the chains in order")


def find_doc(functions: Sequence[dict], answer: dict) -> dict:
    """The document of the function a possible answer names."""
    name = next(iter(answer))
    for doc in functions:
        if doc["name"] == name:
            return doc
    raise ValueError(f"no function document named {name!r}")
