"""Argument validators: one per tool, built when the tool is defined, run on every call.

A validator takes the call's arguments (JSON-like values by name) and returns the keyword
arguments for the tool's function, or raises `CallArgumentError` listing every problem.
A tool described by a JSON schema validates with that schema (`SchemaValidator`, jsonschema
compiled once); a tool made from a typed function validates with the pydantic model of its
parameters (`ModelValidator`), which also turns JSON values into the Python values the
function expects (Enum members, pydantic models, tuples, dates).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from asynclm.cml.call import (
    CallArgumentError,
    SchemaValidator,
    argument_errors,
    argument_problem,
)

__all__ = ["ArgumentValidator", "ModelValidator", "SchemaValidator"]

Arguments = dict[str, Any]


class ArgumentValidator(Protocol):
    """Checks a call's arguments against `schema`; returns the function's keyword arguments."""

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments it validates."""
        ...

    def __call__(self, arguments: Arguments) -> Arguments:
        """Raises `CallArgumentError` listing every problem."""
        ...


class ModelValidator:
    """Validates arguments with a pydantic model in strict JSON mode, and converts them.

    Strict JSON mode keeps JSON's types (no "3" for an int) while reading JSON values into
    rich Python types (an enum value into its member, an object into a model).

    Args:
        model: The model of the parameters; field aliases are the parameter names.
        schema: The model's JSON schema as the tool states it.
    """

    def __init__(self, model: type[BaseModel], schema: dict[str, Any]) -> None:
        self.model = model
        self.schema = schema
        self._aliases = {name: info.alias or name for name, info in model.model_fields.items()}

    def __call__(self, arguments: Arguments) -> Arguments:
        try:
            payload = json.dumps(arguments, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CallArgumentError(f"invalid arguments: not JSON values ({exc})") from None
        try:
            instance = self.model.model_validate_json(payload, strict=True)
        except ValidationError as exc:
            problems = [argument_problem(e["loc"], e["msg"]) for e in exc.errors()]
            raise CallArgumentError(argument_errors(problems)) from None
        return {alias: getattr(instance, name) for name, alias in self._aliases.items()}
