"""BFCL's AST rules for one parameter value (Python categories); pure, no torch.

These follow the official checker (`bfcl_eval/eval_checker/ast_eval/ast_checker.py` in the
`bfcl-eval` package, release 2026.3.23) rule for rule, including its corner cases, so that our
verdicts agree with BFCL's (the agreement is measured by `asynclm.bfcl_eval.agreement`):

- Types are compared exactly (`type(v) is int`): `True` is not an integer, `1` is not a string.
  An int is accepted for a float parameter (converted), a tuple for a tuple parameter (as a
  list). The elements of an array/tuple parameter are type-checked one level deep, without the
  int-to-float allowance; an optional ("") possible value skips the element check.
- A value whose possible answers have another type than the documented one (BFCL's
  "variable" case, e.g. a string where the document says integer) is accepted if it has the
  possible answers' type, and then compared as is (no string standardisation).
- Strings are standardised before comparison: spaces and `,./-_*^` removed, lower case,
  single quotes turned into double quotes. So are the top-level strings of a list and the
  string values of a dict (not strings nested deeper).
- Dicts: every key must be among the possible dict's keys with an accepted value; every key
  of the possible dict must be present unless "" is among its values. Lists of dicts: the same
  length and each dict matching in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

__all__ = ["PYTHON_TYPES", "Verdict", "check_value", "concrete", "standardize"]

PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
NESTED_TYPES = ("array", "tuple")  # types whose elements are checked too
OPTIONAL = ""  # a possible value meaning "may be left out"
_IGNORED = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A check's outcome; `error_type` uses BFCL's names (e.g. `value_error:string`)."""

    valid: bool
    error: str = ""
    error_type: str = ""

    def __bool__(self) -> bool:
        return self.valid


PASS = Verdict(True)


def fail(error_type: str, error: str) -> Verdict:
    return Verdict(False, error, error_type)


def standardize(text: str) -> str:
    """BFCL's string standardisation: `"April 1, 2024"` → `"april12024"`."""
    return _IGNORED.sub("", text).lower().replace("'", '"')


def concrete(value: Any, pick: Callable[[list], Any] | None = None) -> Any:
    """An accepted value as a model would write it.

    In a possible answer a dict's values are themselves lists of accepted values (so are those
    of the dicts in a list of dicts): each becomes one of them (`pick`, default the first), and
    a key whose pick is "" is left out.
    """
    choose = pick or (lambda options: options[0])
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        picked = {key: choose(options) for key, options in value.items() if options}
        return {key: item for key, item in picked.items() if not _is_optional(item)}
    if isinstance(value, list):
        return [concrete(item, pick) if isinstance(item, dict) else item for item in value]
    return value


def _std(value: Any) -> Any:
    return standardize(value) if type(value) is str else value


def check_value(name: str, value: Any, spec: dict, accepted: list) -> Verdict:
    """Checks one parameter's value against its document entry and accepted values.

    Args:
        name: The parameter name (for messages).
        value: The value the model gave.
        spec: The parameter's document, e.g. `{"type": "array", "items": {"type": "float"}}`.
        accepted: The possible answer's values for it ("" marks an optional parameter).

    Returns:
        The verdict.

    Raises:
        ValueError: A type BFCL's Python checker does not know.
    """
    type_name = spec.get("type")
    expected = _python_type(type_name)
    nested = _python_type(spec.get("items", {}).get("type")) if type_name in NESTED_TYPES else None
    if type_name == "tuple" and type(value) is tuple:
        value = list(value)
    if type_name == "float" and type(value) is int:
        value = float(value)
    typed = check_type(name, value, accepted, expected, nested)
    if not typed.valid:
        return typed.verdict
    if not typed.is_variable:
        special = _special_rule(expected, nested)
        if special is not None:
            return special(name, value, accepted)
    if value not in accepted:
        return fail("value_error:others", f"{name}: {value!r} is not one of {accepted}")
    return PASS


def _python_type(type_name: Any) -> type:
    if type_name not in PYTHON_TYPES:
        raise ValueError(f"BFCL's Python checker has no type {type_name!r}")
    return PYTHON_TYPES[type_name]


def _special_rule(expected: type, nested: type | None) -> Any:
    if expected is dict:
        return check_dict
    if expected is list and nested is dict:
        return check_dict_list
    if expected is str:
        return check_string
    if expected is list:
        return check_list
    return None


@dataclass(frozen=True, slots=True)
class TypeCheck:
    verdict: Verdict
    is_variable: bool = False

    @property
    def valid(self) -> bool:
        return self.verdict.valid


def answer_type(accepted: list) -> type | None:
    """The type of the first possible value that is not "" (None if all are "")."""
    return next((type(v) for v in accepted if not _is_optional(v)), None)


def _is_optional(value: Any) -> bool:
    return type(value) is str and value == OPTIONAL


def check_type(
    name: str, value: Any, accepted: list, expected: type, nested: type | None
) -> TypeCheck:
    """BFCL's type rule: the documented type, or the possible answers' type ("variable")."""
    known = answer_type(accepted)
    is_variable = known is not None and known is not expected
    if type(value) is expected:
        if nested is None or _elements_typed(name, cast(list, value), accepted, nested):
            return TypeCheck(PASS, is_variable)
        kind = "type_error:nested" if known is type(value) else "type_error:simple"
        return TypeCheck(fail(kind, f"{name}: elements of {value!r} are not {nested.__name__}"))
    if known is not None and type(value) is known:
        return TypeCheck(PASS, is_variable=True)
    error = f"{name}: expected {expected.__name__}, got {type(value).__name__} ({value!r})"
    return TypeCheck(fail("type_error:simple", error))


def _elements_typed(name: str, value: list, accepted: list, nested: type) -> bool:
    """Some possible value admits every element's type (an optional or non-list one does)."""
    for option in accepted:
        if type(option) is not list:
            return True
        if all(check_type(name, item, option, nested, None).valid for item in value):
            return True
    return False


def check_string(name: str, value: str, accepted: list) -> Verdict:
    """A string matches a possible string after standardisation."""
    options = [standardize(v) for v in accepted if type(v) is str]
    if standardize(value) in options:
        return PASS
    return fail("value_error:string", f"{name}: {value!r} is not one of {accepted}")


def check_list(name: str, value: list, accepted: list) -> Verdict:
    """A list equals a possible list, top-level strings standardised on both sides.

    An optional ("") possible value reads as the empty list, as in BFCL.
    """
    options = [[_std(item) for item in option] for option in accepted if _iterable(option)]
    if [_std(item) for item in value] in options:
        return PASS
    return fail("value_error:list/tuple", f"{name}: {value!r} is not one of {accepted}")


def _iterable(option: Any) -> bool:
    return isinstance(option, (list, tuple, str))


def check_dict(name: str, value: dict, accepted: list) -> Verdict:
    """A dict matches some possible dict (possible values "" are skipped)."""
    verdict = fail("dict_checker:unclear", f"{name}: no possible dict to compare {value!r} with")
    for option in accepted:
        if _is_optional(option):
            continue
        verdict = _match_dict(value, option)
        if verdict.valid:
            return PASS
    return verdict


def _match_dict(value: Any, option: Any) -> Verdict:
    if not isinstance(value, dict):  # BFCL's checker raises here (a list of non-dicts)
        return fail("value_error:dict_value", f"{value!r} is not a dict")
    if not isinstance(option, dict):
        return fail("dict_checker:unclear", f"{option!r} is not a dict")
    verdict = PASS
    for key, item in value.items():
        if key not in option:
            verdict = fail("value_error:dict_key", f"unexpected dict key {key!r}")
            break
        if _std(item) not in [_std(o) for o in option[key]]:
            verdict = fail("value_error:dict_value", f"{key}: {item!r} not in {option[key]}")
            break
    missing = [k for k, options in option.items() if k not in value and OPTIONAL not in options]
    if missing:  # BFCL reports a missing key last, over any earlier error
        return fail("value_error:dict_key", f"missing dict key {missing[0]!r}")
    return verdict


def check_dict_list(name: str, value: list, accepted: list) -> Verdict:
    """A list of dicts matches a possible list of the same length, dict by dict in order."""
    verdict = fail("list_dict_checker:unclear", f"{name}: no possible list of dicts")
    for option in accepted:
        if not _iterable(option) or len(value) != len(option):
            verdict = fail("value_error:list_dict_count", f"{name}: wrong number of dicts")
            continue
        verdict = PASS
        for item, expected in zip(value, option, strict=True):
            verdict = check_dict(name, item, [expected])
            if not verdict.valid:
                break
        if verdict.valid:
            return PASS
    return verdict
