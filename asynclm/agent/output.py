"""Structured output: the answer as a value of a given type, checked by pydantic.

An agent with `output_type=SomeModel` states the type's JSON schema in its system prompt. After
its tool phase — when the model starts its answer with `{` while nothing is pending, or ends its
turn — the answer is generated under the schema's grammar (on the local engine) and validated
with pydantic; a failure is injected as an error the model reads (`[INTR] output [HEAD] error:
...`) and the answer is written again, a bounded number of times. A turn that ends with a
valid JSON answer after some text ("Here it is: {...}") keeps it as it is.

A type whose JSON schema is not an object (`int`, `list[str]`...) is wrapped as
`{"result": <value>}`, so that every answer starts with `{` and cannot be mistaken for a CML
block. Pure: no torch, no engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic

from pydantic import TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticUserError
from typing_extensions import TypeVar

from asynclm.cml.call import argument_problem

__all__ = ["OutputInvalid", "OutputSpec", "OutputT"]

OutputT = TypeVar("OutputT", default=str)

MAX_ERROR_CHARS = 600


class OutputInvalid(ValueError):
    """An answer that does not validate; the message is fit for the model."""


@dataclass(frozen=True, slots=True)
class OutputSpec(Generic[OutputT]):
    """How to read a structured answer.

    Attributes:
        output_type: The type of `RunResult.output`.
        schema: The JSON schema the answer must match (an object schema).
        retries: Answers that may fail validation before the run fails (`OutputError`).
        wrapped: Whether the answer is `{"result": <value>}` (non-object types).
        adapter: Validates an answer's JSON (set by `of`, the way to make a spec).
    """

    output_type: Any
    schema: dict[str, Any]
    retries: int = 1
    wrapped: bool = False
    adapter: TypeAdapter[Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, output_type: type[OutputT], retries: int = 1) -> OutputSpec[OutputT]:
        """The spec of a type pydantic can validate (a model, a dataclass, a TypedDict, `int`,
        `list[str]`...).

        Raises:
            ValueError: pydantic cannot build a JSON schema for it, or `retries` < 0.
        """
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"output_retries must be an int >= 0, got {retries!r}")
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = adapter.json_schema()
        except (PydanticUserError, TypeError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            raise ValueError(f"output_type {output_type!r} has no JSON schema ({reason})") from None
        if schema.get("type") == "object":
            return cls(output_type, schema, retries, False, adapter)
        wrapper = create_model("Answer", result=(output_type, ...))
        return cls(output_type, wrapper.model_json_schema(), retries, True, TypeAdapter(wrapper))

    def parse(self, text: str) -> OutputT:
        """The value of an answer.

        Raises:
            OutputInvalid: With every problem, worded for the model.
        """
        adapter = self.adapter if self.adapter is not None else TypeAdapter(self.output_type)
        try:
            value = adapter.validate_json(text)
        except ValidationError as exc:
            problems = [argument_problem(e["loc"], e["msg"]) for e in exc.errors()]
            message = "invalid answer: " + "; ".join(problems)
            if len(message) > MAX_ERROR_CHARS:
                message = message[: MAX_ERROR_CHARS - 1] + "…"
            raise OutputInvalid(message) from None
        return getattr(value, "result") if self.wrapped else value  # noqa: B009


def starts_answer(text: str) -> bool:
    """Whether text the model writes with nothing pending begins a structured answer."""
    return text.lstrip().startswith("{")
