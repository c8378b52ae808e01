"""Call bodies: `get_weather(city="Paris")` parsed with `ast` (never `eval`) and validated.

Every error is a short message fit to be shown to the model in an error interrupt.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

DEFAULT_MAX_CALL_CHARS = 4096
DEFAULT_MAX_DEPTH = 32
_JSON_NAMES = {"true": True, "false": False, "null": None}
_MAX_SHOWN_ERRORS = 10


class CallSyntaxError(ValueError):
    """The call text is not `name(literal, ..., key=literal, ...)`."""


class CallArgumentError(ValueError):
    """The call's arguments do not fit the tool's parameters."""


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """A parsed call body.

    Attributes:
        name: The callee, possibly dotted (`math.factorial`).
        args: Positional argument values.
        kwargs: Keyword argument values, in the order written.
    """

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_call(
    body: str, *, max_chars: int = DEFAULT_MAX_CALL_CHARS, max_depth: int = DEFAULT_MAX_DEPTH
) -> ParsedCall:
    """Parses a call body such as `get_weather(city="Paris", days=3)`.

    Arguments must be literals: strings, numbers, True/False/None (or true/false/null),
    and lists, tuples and dicts (string keys) of these.

    Args:
        body: The call text.
        max_chars: Longest body accepted.
        max_depth: Deepest syntax-tree nesting accepted (guards against hostile input).

    Returns:
        The callee name and argument values.

    Raises:
        CallSyntaxError: If the body is not a call with literal arguments.
    """
    node = _parse_expression(body.strip(), max_chars, max_depth)
    if not isinstance(node, ast.Call):
        raise CallSyntaxError("expected a call such as name(key=value)")
    name = _callee_name(node.func)
    args = tuple(_argument(arg, f"argument {i + 1}") for i, arg in enumerate(node.args))
    kwargs: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise CallSyntaxError("**kwargs is not allowed: write each argument as key=value")
        if keyword.arg in kwargs:
            raise CallSyntaxError(f"argument {keyword.arg!r} is given twice")
        kwargs[keyword.arg] = _argument(keyword.value, f"argument {keyword.arg!r}")
    return ParsedCall(name, args, kwargs)


def _parse_expression(text: str, max_chars: int, max_depth: int) -> ast.expr:
    if not text:
        raise CallSyntaxError("empty call")
    if len(text) > max_chars:
        raise CallSyntaxError(f"call longer than {max_chars} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise CallSyntaxError(f"invalid call syntax: {error.msg} (column {error.offset})") from None
    except (ValueError, RecursionError, MemoryError):
        raise CallSyntaxError("invalid call syntax: expression too complex") from None
    if _depth(tree.body) > max_depth:
        raise CallSyntaxError(f"call nested deeper than {max_depth} levels")
    return tree.body


def _depth(root: ast.AST) -> int:
    """Depth of a syntax tree, computed without recursion."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _callee_name(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise CallSyntaxError("the callee must be a tool name such as get_weather or math.sqrt")
    parts.append(node.id)
    return ".".join(reversed(parts))


def _argument(node: ast.expr, label: str) -> Any:
    if isinstance(node, ast.Starred):
        raise CallSyntaxError("*args is not allowed: write each argument")
    try:
        value = ast.literal_eval(_JsonNames().visit(node))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise CallSyntaxError(f"{label} must be a literal value ({_describe(node)})") from None
    problem = _unsupported(value)
    if problem is not None:
        raise CallSyntaxError(f"{label}: {problem}")
    return value


class _JsonNames(ast.NodeTransformer):
    """Turns the JSON spellings true/false/null into Python constants."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _JSON_NAMES:
            return ast.copy_location(ast.Constant(_JSON_NAMES[node.id]), node)
        return node


def _describe(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return f"got the name {node.id}; quote strings"
    if isinstance(node, ast.Call):
        return "got a call; nested calls are not allowed"
    return f"got {type(node).__name__}"


def _unsupported(value: Any) -> str | None:
    """Why a literal value is not JSON-like, or None if it is."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return "dict keys must be strings"
            stack.extend(item.values())
        elif not (item is None or isinstance(item, (bool, int, float, str))):
            return f"{type(item).__name__} values are not supported"
    return None


def bind_arguments(parsed: ParsedCall, schema: dict[str, Any]) -> dict[str, Any]:
    """Maps a call's arguments onto the tool's parameters.

    Positional arguments take the parameters in the order of the schema's `properties`.

    Args:
        parsed: The parsed call.
        schema: The tool's parameter schema (a JSON schema of type object).

    Returns:
        The arguments by name, in parameter order followed by any extra keyword arguments
        the schema allows (`additionalProperties`).

    Raises:
        CallArgumentError: Listing every unknown, duplicate or surplus argument.
    """
    names = list(schema.get("properties") or {})
    open_ended = schema.get("additionalProperties", False) not in (False, None)
    errors: list[str] = []
    if len(parsed.args) > len(names):
        errors.append(f"{parsed.name} takes at most {len(names)} positional arguments")
    bound = dict(zip(names, parsed.args, strict=False))
    for key, value in parsed.kwargs.items():
        if key in bound:
            errors.append(f"argument {key!r} is given twice")
        elif key not in names and not open_ended:
            errors.append(f"unknown argument {key!r}{_expected(names)}")
        else:
            bound[key] = value
    if errors:
        raise CallArgumentError("; ".join(errors))
    order = {name: i for i, name in enumerate(names)}
    return dict(sorted(bound.items(), key=lambda item: order.get(item[0], len(order))))


def _expected(names: list[str]) -> str:
    return f" (expected one of: {', '.join(names)})" if names else " (takes no arguments)"


class SchemaValidator:
    """Validates call arguments against one JSON schema (Draft 2020-12), compiled once.

    Args:
        schema: A tool's parameter schema.

    Raises:
        ValueError: If the schema itself is not a valid JSON schema.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ValueError(f"invalid tool schema: {error.message}") from None
        self.schema = schema
        self._validator = jsonschema.Draft202012Validator(schema)

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validates `args`; tuples are converted to lists first (JSON knows only arrays).

        Returns:
            The arguments as validated (tuples turned into lists).

        Raises:
            CallArgumentError: Listing every violation at once.
        """
        value = _to_json(args)
        errors = sorted(self._validator.iter_errors(value), key=lambda e: _path(e.path))
        if errors:
            problems = [argument_problem(e.path, e.message) for e in errors]
            raise CallArgumentError(argument_errors(problems))
        return value


def argument_errors(problems: list[str]) -> str:
    """One message listing argument problems (`path: message`), at most ten of them shown."""
    shown = problems[:_MAX_SHOWN_ERRORS]
    if len(problems) > _MAX_SHOWN_ERRORS:
        shown.append(f"and {len(problems) - _MAX_SHOWN_ERRORS} more")
    return "invalid arguments: " + "; ".join(shown)


def validate_arguments(args: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Validates arguments against a JSON schema (Draft 2020-12).

    A one-off check; a tool validates its calls with its own `SchemaValidator`, compiled once.

    Args:
        args: The arguments by name.
        schema: The tool's parameter schema.

    Returns:
        The arguments as validated (tuples turned into lists).

    Raises:
        CallArgumentError: Listing every violation at once.
        ValueError: If the schema itself is not a valid JSON schema.
    """
    return SchemaValidator(schema)(args)


def _to_json(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    return value


def argument_problem(path: Iterable[str | int], message: str) -> str:
    """One argument problem as `stops[2].city: message` (the message clipped to 160 chars)."""
    message = message if len(message) <= 160 else message[:157] + "..."
    where = _path(path)
    return f"{where}: {message}" if where else message


def _path(parts: Iterable[str | int]) -> str:
    """Where a problem is, e.g. `stops[2].city`; empty for the arguments as a whole."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    return path.lstrip(".")
