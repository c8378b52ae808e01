"""Structured output: the answer under its JSON schema's grammar, validated, retried."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, field_validator

from asynclm.agent import Agent, OutputError, OutputRetry
from asynclm.agent.output import OutputSpec
from asynclm.backends.scripted import TurnState, scripted_engine
from tests.agent.scripts import FAST, engine_for, sleeper

pytestmark = pytest.mark.anyio


class Weather(BaseModel):
    city: str
    temp: float

    @field_validator("temp")
    @classmethod
    def plausible(cls, value: float) -> float:
        if not -90 <= value <= 60:
            raise ValueError("no such temperature on Earth")
        return value


ANSWER = '{"city": "Paris", "temp": 21}'


async def test_the_answer_follows_the_calls_and_is_typed() -> None:
    weather = sleeper("weather", 0.02, result="21 C")
    script = ("[CALL] w [HEAD] weather() [END]", " Checking.", "[TRAP][END]", ANSWER)
    agent = Agent([weather], model=engine_for(*script), output_type=Weather)
    result = await agent.run("Weather in Paris?")
    assert result.output == Weather(city="Paris", temp=21)
    assert result.text == ANSWER and result.interim == ("Checking.",)
    assert result.calls[0].ok and result.finish_reason in ("eos", "grammar")
    assert '"city"' in agent.system and "Answer format" in agent.system  # the schema is stated


async def test_the_answer_is_written_under_the_schema_grammar() -> None:
    # The model starts its answer right, then would write something the schema refuses: the
    # grammar holds it to the schema (the scripted model then has only allowed tokens left).
    agent = Agent(
        model=engine_for('{"city": "Paris", "temp": "hot", "extra": 1}'),
        output_type=Weather,
        max_tokens=40,
    )
    with pytest.raises(OutputError) as info:
        await agent.run("Weather?")
    text = info.value.result.text
    assert text.startswith('{"city": "Paris", "temp":') and '"hot"' not in text


async def test_a_valid_answer_after_a_preamble_is_kept() -> None:
    agent = Agent(model=engine_for("It is sunny: ", ANSWER), output_type=Weather)
    result = await agent.run("Weather?")
    assert result.output.city == "Paris" and result.text == ANSWER
    assert result.interim == ("It is sunny:",)


async def test_a_turn_ended_without_an_answer_goes_on_under_the_grammar() -> None:
    # The scripted model would end its turn again; the grammar allows only JSON.
    agent = Agent(model=engine_for("It is sunny."), output_type=Weather, max_tokens=30)
    with pytest.raises(OutputError) as info:
        await agent.run("Weather?")
    result = info.value.result
    assert result.interim == ("It is sunny.",) and result.text.startswith("{")


async def test_a_failed_validation_goes_back_to_the_model_and_is_retried() -> None:
    def policy(state: TurnState) -> str:
        if state.chunks > 0 and state.interrupts and state.interrupts[-1].id == "output":
            return '{"city": "Paris", "temp": 21}' if state.chunks < 3 else ""
        return '{"city": "Paris", "temp": 999}' if state.chunks == 0 else ""

    agent = Agent(model=scripted_engine(policy, timing=FAST), output_type=Weather)
    events = []
    async with agent.run_stream("Weather?") as run:
        events = [e async for e in run]
    result = run.result
    assert result.output.temp == 21
    (retry,) = [e for e in events if isinstance(e, OutputRetry)]
    assert "no such temperature on Earth" in retry.error
    assert "[INTR] output [HEAD] error: invalid answer: temp: Value error" in result.transcript
    assert result.interim == ('{"city": "Paris", "temp": 999}',)  # the rejected answer


async def test_retries_are_bounded() -> None:
    bad = '{"city": "Paris", "temp": 999}'
    agent = Agent(model=engine_for(bad, bad, bad, bad), output_type=Weather, output_retries=1)
    with pytest.raises(OutputError, match="no valid answer after its retries") as info:
        await agent.run("Weather?")
    assert info.value.reason == "validation"
    assert info.value.result.transcript.count("[INTR] output") == 1  # one retry, then it ends


async def test_a_limit_before_the_answer_is_an_output_error_with_the_partial_run() -> None:
    agent = Agent(model=engine_for("x" * 50), output_type=Weather, max_tokens=5)
    with pytest.raises(OutputError) as info:
        await agent.run("Weather?")
    assert info.value.reason == "length" and info.value.result.usage.generated_tokens == 5


async def test_types_that_are_not_objects_are_wrapped() -> None:
    spec = OutputSpec.of(list[int])
    assert spec.wrapped and spec.schema["required"] == ["result"]
    agent = Agent(model=engine_for('{"result": [1, 2, 3]}'), output_type=list[int])  # type: ignore[arg-type]
    assert (await agent.run("Three numbers?")).output == [1, 2, 3]


def test_types_without_a_schema_are_refused() -> None:
    class Opaque:
        pass

    with pytest.raises(ValueError, match="has no JSON schema"):
        OutputSpec.of(Opaque)
    with pytest.raises(ValueError, match="output_retries must be an int >= 0"):
        OutputSpec.of(Weather, retries=-1)
