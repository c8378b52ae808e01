"""Perturbed answers built from BFCL's possible answers, to compare checkers on. Pure.

A base answer takes, for every parameter of every possible answer, one accepted value (or leaves
the parameter out where "" is accepted). Perturbations then change it the ways models get
answers wrong, or right in another form: int/float, strings' case, spacing, punctuation and
quotes, other accepted values, wrong values, tuples, list and dict contents, dropped, extra,
renamed and duplicated parameters, dropped, extra, duplicated and reordered calls, other
function names. Each generated case records which perturbations made it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asynclm.bfcl_eval.checker import Call
from asynclm.bfcl_eval.rules import OPTIONAL, concrete

__all__ = ["Case", "base_answer", "perturbations"]


@dataclass(frozen=True, slots=True)
class Case:
    """One answer to check: the entry it is for, the calls, and how they were made."""

    entry_id: str
    category: str
    calls: list[Call]
    kinds: tuple[str, ...]


def base_answer(ground_truth: list, rng: random.Random | None = None) -> list[Call]:
    """An answer BFCL accepts: the first accepted value of each parameter (random with `rng`)."""
    calls = []
    for answer in ground_truth:
        name, accepted = next(iter(answer.items()))
        args = {}
        for param, options in accepted.items():
            if not options:  # nothing is accepted (some live entries): leave it out
                continue
            value = rng.choice(options) if rng else options[0]
            if not _is_optional(value):
                args[param] = concrete(copy.deepcopy(value), rng.choice if rng else None)
        calls.append({name: args})
    return calls


def _is_optional(value: Any) -> bool:
    return type(value) is str and value == OPTIONAL


# --- value perturbations: (value, rng) -> new value, or None when not applicable -------------

_PUNCT = [",", ".", "/", "-", "_", "*", "^", "!", ";", ":", "?", "(", "'", '"']


def _int_float(v: Any, rng: random.Random) -> Any:
    if type(v) is int:
        return float(v)
    if type(v) is float and v.is_integer():
        return int(v)
    return None


def _num_str(v: Any, rng: random.Random) -> Any:
    if type(v) in (int, float):
        return str(v)
    if type(v) is str:
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                continue
    return None


def _bool_int(v: Any, rng: random.Random) -> Any:
    if type(v) is bool:
        return int(v) if rng.random() < 0.5 else str(v).lower()
    if v in (0, 1) and type(v) is int:
        return bool(v)
    return None


def _case(v: Any, rng: random.Random) -> Any:
    if type(v) is not str or not v:
        return None
    return rng.choice([str.upper, str.lower, str.swapcase, str.title, str.capitalize])(v)


def _spacing(v: Any, rng: random.Random) -> Any:
    if type(v) is not str:
        return None
    if " " in v and rng.random() < 0.5:
        return v.replace(" ", "", 1) if rng.random() < 0.5 else v.replace(" ", "  ")
    i = rng.randrange(len(v) + 1)
    return v[:i] + rng.choice([" ", "\t", "\n"]) + v[i:]


def _punctuation(v: Any, rng: random.Random) -> Any:
    if type(v) is not str:
        return None
    i = rng.randrange(len(v) + 1)
    if v and rng.random() < 0.3:
        return v[:i] + v[i + 1 :]  # drop a character
    return v[:i] + rng.choice(_PUNCT) + v[i:]


def _quotes(v: Any, rng: random.Random) -> Any:
    if type(v) is not str:
        return None
    if "'" in v or '"' in v:
        return v.replace("'", '"') if rng.random() < 0.5 else v.replace('"', "'")
    return rng.choice(["'", '"']) + v + rng.choice(["'", '"', ""])


def _wrong(v: Any, rng: random.Random) -> Any:
    if type(v) is bool:
        return not v
    if type(v) in (int, float):
        return v + rng.choice([1, -1, 0.5, 10])
    if type(v) is str:
        return v + rng.choice(["x", " 2", "s"]) if v else "x"
    if type(v) is list:
        return [*v, copy.deepcopy(v[0])] if v else ["x"]
    if type(v) is dict:
        return {**v, "extra": 1}
    return "x"


def _retype(v: Any, rng: random.Random) -> Any:
    return rng.choice([None, [v], (v,), {"value": v}, str(v)])


def _tuple(v: Any, rng: random.Random) -> Any:
    if type(v) is list:
        return tuple(v)
    if type(v) is tuple:
        return list(v)
    return None


def _list_items(v: Any, rng: random.Random) -> Any:
    if type(v) is not list or not v:
        return None
    out = copy.deepcopy(v)
    action = rng.choice(["reverse", "drop", "dup", "item"])
    if action == "reverse" and len(out) > 1:
        return out[::-1]
    if action == "drop":
        del out[rng.randrange(len(out))]
        return out
    if action == "dup":
        out.insert(rng.randrange(len(out) + 1), copy.deepcopy(rng.choice(out)))
        return out
    i = rng.randrange(len(out))
    changed = _item_change(out[i], rng)
    if changed is None:
        return None
    out[i] = changed
    return out


def _item_change(item: Any, rng: random.Random) -> Any:
    for op in rng.sample([_int_float, _case, _spacing, _num_str, _dict_items, _wrong], 6):
        changed = op(item, rng)
        if changed is not None:
            return changed
    return None


def _dict_items(v: Any, rng: random.Random) -> Any:
    if type(v) is not dict:
        return None
    out = copy.deepcopy(v)
    action = rng.choice(["drop", "extra", "value", "case_key"])
    keys = list(out)
    if action == "extra" or not keys:
        out[rng.choice(["extra", *keys, "note"]) + ("_x" if keys else "")] = "x"
        return out
    key = rng.choice(keys)
    if action == "drop":
        del out[key]
    elif action == "value":
        out[key] = _item_change(out[key], rng)
    else:
        out[key.upper()] = out.pop(key)
    return out


VALUE_OPS: dict[str, Callable[[Any, random.Random], Any]] = {
    "int_float": _int_float,
    "num_str": _num_str,
    "bool_int": _bool_int,
    "case": _case,
    "spacing": _spacing,
    "punctuation": _punctuation,
    "quotes": _quotes,
    "wrong_value": _wrong,
    "retype": _retype,
    "tuple_list": _tuple,
    "list_items": _list_items,
    "dict_items": _dict_items,
}


# --- call-level perturbations: (calls, entry context, rng) -> new calls or None ---------------


@dataclass(frozen=True, slots=True)
class Context:
    ground_truth: list
    functions: Sequence[dict]


def _pick_param(calls: list[Call], rng: random.Random) -> tuple[dict, str] | None:
    slots = [(args, p) for call in calls for args in call.values() for p in args]
    return rng.choice(slots) if slots else None


def _value_op(kind: str) -> Callable[[list[Call], Context, random.Random], list[Call] | None]:
    def apply(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
        slots = [(args, p) for call in calls for args in call.values() for p in args]
        rng.shuffle(slots)
        for args, param in slots:  # the first parameter the perturbation applies to
            changed = VALUE_OPS[kind](args[param], rng)
            if changed is not None:
                args[param] = changed
                return calls
        return None

    return apply


def _other_value(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    """Another accepted value (or leaving an optional parameter out): still right."""
    k = rng.randrange(len(calls)) if calls else 0
    if k >= min(len(calls), len(ctx.ground_truth)):
        return None
    args = next(iter(calls[k].values()))
    accepted = next(iter(ctx.ground_truth[k].values()))
    params = [p for p, options in accepted.items() if options]
    if not params:
        return None
    param = rng.choice(params)
    value = rng.choice(accepted[param])
    if _is_optional(value):
        args.pop(param, None)
    else:
        args[param] = concrete(copy.deepcopy(value), rng.choice)
    return calls


def _drop_param(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    picked = _pick_param(calls, rng)
    if picked is None:
        return None
    del picked[0][picked[1]]
    return calls


def _extra_param(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    if not calls:
        return None
    name, args = next(iter(rng.choice(calls).items()))
    doc = next((d for d in ctx.functions if d["name"] == name), None)
    unused = [p for p in (doc or {}).get("parameters", {}).get("properties", {}) if p not in args]
    if unused and rng.random() < 0.7:
        param = rng.choice(unused)
        spec = doc["parameters"]["properties"][param] if doc else {}
        args[param] = spec.get("default", _sample_of_type(spec.get("type"), rng))
    else:
        args[rng.choice(["extra", "verbose", "unit"])] = rng.choice([1, "x", True])
    return calls


def _sample_of_type(type_name: Any, rng: random.Random) -> Any:
    samples = {"string": "x", "integer": 1, "float": 1.5, "boolean": True, "array": [], "dict": {}}
    return samples.get(type_name, rng.choice(["x", 0]))


def _rename_param(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    picked = _pick_param(calls, rng)
    if picked is None:
        return None
    args, param = picked
    new = rng.choice([param.upper(), param + "_", param.replace("_", ""), param.title()])
    if new == param or new in args:
        return None
    args[new] = args.pop(param)
    return calls


def _dup_param(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    picked = _pick_param(calls, rng)
    if picked is None:
        return None
    args, param = picked
    args[param + "_2"] = copy.deepcopy(args[param])
    return calls


def _drop_call(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    if not calls:
        return None
    del calls[rng.randrange(len(calls))]
    return calls


def _dup_call(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    if not calls:
        return None
    calls.insert(rng.randrange(len(calls) + 1), copy.deepcopy(rng.choice(calls)))
    return calls


def _reorder_calls(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    if len(calls) < 2:
        return None
    rng.shuffle(calls)
    return calls


def _extra_call(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    doc = rng.choice(list(ctx.functions))
    required = doc["parameters"].get("required", [])
    props = doc["parameters"].get("properties", {})
    call = {p: _sample_of_type(props.get(p, {}).get("type"), rng) for p in required}
    calls.insert(rng.randrange(len(calls) + 1), {doc["name"]: call})
    return calls


def _rename_call(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    if not calls:
        return None
    k = rng.randrange(len(calls))
    name, args = next(iter(calls[k].items()))
    others = [d["name"] for d in ctx.functions if d["name"] != name]
    choices = [name.replace(".", "_"), name.upper(), name.split(".")[-1], *others]
    new = rng.choice([c for c in choices if c != name] or ["other"])
    calls[k] = {new: args}
    return calls


def _swap_args(calls: list[Call], ctx: Context, rng: random.Random) -> list[Call] | None:
    """Exchange the arguments of two calls (right calls, wrong pairing)."""
    if len(calls) < 2:
        return None
    i, j = rng.sample(range(len(calls)), 2)
    (a, args_a), (b, args_b) = next(iter(calls[i].items())), next(iter(calls[j].items()))
    calls[i], calls[j] = {a: args_b}, {b: args_a}
    return calls


CALL_OPS: dict[str, Callable[[list[Call], Context, random.Random], list[Call] | None]] = {
    **{kind: _value_op(kind) for kind in VALUE_OPS},
    "other_value": _other_value,
    "drop_param": _drop_param,
    "extra_param": _extra_param,
    "rename_param": _rename_param,
    "dup_param": _dup_param,
    "drop_call": _drop_call,
    "dup_call": _dup_call,
    "reorder_calls": _reorder_calls,
    "extra_call": _extra_call,
    "rename_call": _rename_call,
    "swap_args": _swap_args,
}


def perturbations(
    entries: Sequence[Any], count: int, *, seed: int = 0, max_ops: int = 2
) -> list[Case]:
    """`count` perturbed answers over the entries (round robin), reproducibly.

    Args:
        entries: `Entry` objects with a ground truth (AST categories).
        count: How many cases to make.
        seed: The random seed.
        max_ops: The most perturbations applied to one answer (1 to `max_ops`; none to 5%).

    Returns:
        The cases.
    """
    usable = [e for e in entries if e.ground_truth]
    if not usable:
        raise ValueError("perturbations need entries with a ground truth")
    rng = random.Random(seed)
    kinds = sorted(CALL_OPS)
    cases: list[Case] = []
    while len(cases) < count:
        entry = usable[len(cases) % len(usable)]
        ctx = Context(entry.ground_truth, entry.functions)
        calls = base_answer(entry.ground_truth, rng if rng.random() < 0.5 else None)
        applied: list[str] = []
        wanted = 0 if rng.random() < 0.05 else rng.randint(1, max_ops)
        for _ in range(4 * wanted):  # inapplicable perturbations are drawn again
            if len(applied) == wanted:
                break
            kind = rng.choice(kinds)
            changed = CALL_OPS[kind](copy.deepcopy(calls), ctx, rng)
            if changed is not None:
                calls, applied = changed, [*applied, kind]
        cases.append(Case(entry.id, entry.category, calls, tuple(applied) or ("none",)))
    return cases
