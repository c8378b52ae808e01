"""A run's outcome made from what it recorded: the answer apart from the interim text, the
conversation's messages, and — for a structured answer — its value or an `OutputError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from asynclm.agent.errors import OutputError
from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.agent.result import CallRecord, Mode, RunResult, Usage
from asynclm.trace import Trace

__all__ = ["RunRecord", "make_result"]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a run recorded, at its end.

    Attributes:
        prompt: The user's message.
        history: The conversation before the run.
        transcript: The assistant's turn as the model saw it.
        answer_text: The text of the last structured answer ("" for a text answer).
        answer: The validated structured output, in a 1-tuple; None when there is none.
        structured: Whether the agent has an `output_type`.
    """

    prompt: str
    history: tuple[UserMessage | AssistantMessage, ...]
    transcript: str
    answer_text: str = ""
    answer: tuple[Any] | None = None
    structured: bool = False


def make_result(
    record: RunRecord,
    *,
    reason: str,
    calls: Sequence[CallRecord],
    trace: Trace,
    usage: Usage,
    mode: Mode,
    errors: Sequence[str],
    first_token_at: float | None,
) -> RunResult[Any]:
    """The run's result.

    Raises:
        OutputError: A structured run ended without a valid answer (the result, with the
            answer's text as its output, is in `.result`).
    """
    message = AssistantMessage.from_transcript(record.transcript)
    new = (UserMessage(record.prompt), message)
    text, interim = answer_and_interim(message, record.answer_text.strip())
    result: RunResult[Any] = RunResult(
        output=text,
        calls=tuple(calls),
        timeline=trace,
        usage=usage,
        mode=mode,
        elapsed=trace.now(),
        finish_reason=reason,
        transcript=record.transcript,
        errors=tuple(errors),
        text=text,
        interim=interim,
        messages=record.history + new,
        new_messages=new,
        first_token_at=first_token_at,
    )
    if not record.structured:
        return result
    if record.answer is None:
        why = "validation" if reason in ("eos", "grammar") else reason
        raise OutputError(_output_failure(why, errors), reason=why, result=result)
    return replace(result, output=record.answer[0])


def answer_and_interim(message: AssistantMessage, answer: str) -> tuple[str, tuple[str, ...]]:
    """The answer and the interim texts; a structured answer written right after text (no
    block between) is the answer, and that text an interim one."""
    text, interim = message.answer, message.interim
    if not answer or not text.endswith(answer) or text == answer:
        return text, interim
    preamble = text[: len(text) - len(answer)].strip()
    return answer, (*interim, preamble) if preamble else interim


def _output_failure(why: str, errors: Sequence[str]) -> str:
    if why == "validation":
        last = errors[-1] if errors else "no answer"
        return f"the model gave no valid answer after its retries: {last}"
    return f"the run ended ({why}) before the model gave a valid answer"
