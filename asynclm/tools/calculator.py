"""A safe arithmetic calculator tool.

Expressions are parsed with `ast` and evaluated node by node over a whitelist: numbers, the
operators + - * / // % ** (binary and unary), parentheses, and a few math functions and
constants. Caps on the expression's length and depth, on exponents and on the magnitude of
every intermediate result keep hostile input from hanging the process or exhausting memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from asynclm.tooling import tool

__all__ = ["CalculatorError", "calculator", "evaluate"]

MAX_EXPRESSION_CHARS = 500
MAX_DEPTH = 50
MAX_INT_BITS = 1024  # about 1.8e308, the float range
MAX_FACTORIAL = 170
MAX_ROUND_DIGITS = 400

Number = int | float


class CalculatorError(ValueError):
    """The expression is not allowed or cannot be evaluated."""


def _factorial(n: Number) -> int:
    if not isinstance(n, int) or n < 0:
        raise CalculatorError("factorial() needs a non-negative integer")
    if n > MAX_FACTORIAL:
        raise CalculatorError(f"factorial() is limited to n <= {MAX_FACTORIAL}")
    return math.factorial(n)


def _round(x: Number, ndigits: int | None = None) -> Number:
    # int.__round__ computes 10 ** -ndigits: bound it.
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS):
        raise CalculatorError(f"round() takes an integer ndigits within ±{MAX_ROUND_DIGITS}")
    return round(x, ndigits)


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs, "round": _round, "min": min, "max": max,
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "asin": math.asin, "acos": math.acos, "atan": math.atan, "atan2": math.atan2,
    "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh,
    "degrees": math.degrees, "radians": math.radians, "hypot": math.hypot,
    "floor": math.floor, "ceil": math.ceil, "trunc": math.trunc,
    "gcd": math.gcd, "factorial": _factorial,
}  # fmt: skip
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def evaluate(expression: str) -> Number:
    """Evaluates an arithmetic expression safely.

    Args:
        expression: For example `2 * (3 + 4) ** 2` or `sqrt(2) / 2`.

    Returns:
        The value, an int or a float.

    Raises:
        CalculatorError: The expression is too long, uses anything outside the whitelist,
            or its value (or an intermediate one) is out of range or undefined.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise CalculatorError(f"not a valid expression: {exc}") from None
    return _eval(tree.body, 0)


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise CalculatorError(f"expression is nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Constant):
        return _number(node.value)
    if isinstance(node, ast.Name):
        return _constant(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        return _apply(_BINARY[type(node.op)], node.op, left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.Call):
        return _call(node, depth)
    raise CalculatorError(f"{_describe(node)} is not allowed in a calculator expression")


def _number(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError(f"only numbers are allowed, not {value!r}")
    return _checked(value)


def _constant(name: str) -> float:
    if name not in CONSTANTS:
        known = ", ".join(sorted(CONSTANTS))
        raise CalculatorError(f"unknown name {name!r} (constants: {known})")
    return CONSTANTS[name]


def _call(node: ast.Call, depth: int) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        known = ", ".join(sorted(FUNCTIONS))
        raise CalculatorError(f"{_describe(node.func)} is not an allowed function ({known})")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise CalculatorError("functions take positional number arguments only")
    args = [_eval(arg, depth + 1) for arg in node.args]
    try:
        return _checked(FUNCTIONS[node.func.id](*args))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
        raise CalculatorError(f"{node.func.id}(): {exc}") from None


def _apply(function: Callable[[Any, Any], Any], op: ast.operator, left: Number, right: Number):
    if isinstance(op, ast.Pow):
        _check_power(left, right)
    try:
        return _checked(function(left, right))
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("result is out of range") from None


def _check_power(base: Number, exponent: Number) -> None:
    # Integer powers are exact and can be astronomically large: estimate the size first.
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return
    if (base.bit_length() - 1) * exponent > MAX_INT_BITS:
        raise CalculatorError(f"{base} ** {exponent} is too large")


def _checked(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError(f"result {value!r} is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError("result is out of range")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is out of range or undefined")
    return value


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return f"attribute access '.{node.attr}'"
    return f"{type(node).__name__} syntax"


@tool(max_result_chars=200)
def calculator(expression: str) -> Number:
    """Evaluates an arithmetic expression exactly like a pocket calculator.

    Supports + - * / // % ** and parentheses, the constants pi, e and tau, and the functions
    abs, round, min, max, sqrt, exp, log, log10, log2, sin, cos, tan, asin, acos, atan, atan2,
    sinh, cosh, tanh, degrees, radians, hypot, floor, ceil, trunc, gcd and factorial.

    Args:
        expression: The expression, for example "2 * (3 + 4) ** 2" or "sqrt(2) / 2".
    """
    return evaluate(expression)
