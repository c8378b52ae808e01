"""The calculator: correct arithmetic, and hostile input refused quickly."""

import math
import time

import pytest

from asynclm.cml.call import CallArgumentError
from asynclm.tools.calculator import CalculatorError, calculator, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("2 * (3 + 4) ** 2", 98),
        ("-3 ** 2", -9),
        ("+-+4", -4),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** -1", 0.5),
        ("2 ** 0.5", math.sqrt(2)),
        ("2 ** 1000", 2**1000),
        ("1.5e3 + 0.25", 1500.25),
        ("sqrt(16) + abs(-2)", 6.0),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(2.675, 2)", round(2.675, 2)),
        ("log(8, 2)", 3.0),
        ("factorial(10)", 3628800),
        ("gcd(12, 18)", 6),
        ("floor(pi * 100) / 100", 3.14),
        ("cos(0) + e - e", 1.0),
        ("  ( 1 )  ", 1),
    ],
)
def test_evaluates(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("2 ** 10 ** 10", "too large"),
        ("9 ** 9 ** 9", "too large"),
        ("10 ** 400", "too large"),
        ("2 ** 1024", "out of range"),
        ("(2 ** 1000) * (2 ** 1000)", "out of range"),
        ("1e308 * 10", "out of range"),
        ("1.0001 ** 10 ** 9", "out of range"),
        ("9" * 400, "out of range"),
        ("factorial(100000)", "factorial"),
        ("factorial(2.5)", "factorial"),
        ("round(5, -10 ** 9)", "round"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "math domain error"),
        ("min()", "min()"),
        ("x + 1", "unknown name 'x'"),
        ("__import__('os').system('true')", "not an allowed function"),
        ("().__class__", "not allowed"),
        ("pi.real", "attribute access '.real'"),
        ("math.sqrt(4)", "attribute access '.sqrt'"),
        ("(lambda: 1)()", "not an allowed function"),
        ("lambda: 1", "Lambda syntax is not allowed"),
        ("'a' * 10", "only numbers"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "List syntax"),
        ("1 if 1 else 2", "IfExp syntax"),
        ("1 < 2", "Compare syntax"),
        ("1 << 5000", "BinOp syntax"),
        ("~1", "UnaryOp syntax"),
        ("sqrt(x=4)", "positional"),
        ("max(*[1, 2])", "positional"),
        ("(x := 5)", "NamedExpr"),
        ("1; 2", "not a valid expression"),
        ("import os", "not a valid expression"),
        ("", "not a valid expression"),
        ("-" * 400 + "1", "nested deeper"),
        ("abs(" * 60 + "1" + ")" * 60, "nested deeper"),
        ("(" * 240 + "1" + ")" * 240, "not a valid expression"),
        ("1+" * 200 + "1", "nested deeper"),
        ("1" * 501, "longer than 500"),
        ("1+" * 100_000 + "1", "longer than 500"),
    ],
)
def test_hostile_input_refused_fast(expression: str, reason: str) -> None:
    start = time.monotonic()
    with pytest.raises(CalculatorError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression)
    assert time.monotonic() - start < 0.5


@pytest.mark.anyio
async def test_tool_invoke() -> None:
    assert calculator.name == "calculator"
    assert calculator.parameters["required"] == ["expression"]
    assert await calculator.invoke({"expression": "6 * 7"}) == 42
    with pytest.raises(CalculatorError):
        await calculator.invoke({"expression": "open('/etc/passwd')"})
    with pytest.raises(CallArgumentError):
        await calculator.invoke({"expression": 42})
