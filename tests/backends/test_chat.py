"""OpenAI chat tool calling against the loopback server: requests, replies, bad replies."""

from __future__ import annotations

import json

import pytest

from asynclm.backends.remote import MalformedResponse, RemoteBackend, RetryPolicy
from asynclm.backends.remote.chat import chat_completion, parse_reply, tool_result, tool_spec

pytestmark = pytest.mark.anyio
WEATHER = tool_spec(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def two_cities(messages):
    """Asks for the weather in two cities at once, then answers from the tool messages."""
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if results:
        return {"role": "assistant", "content": "Paris: " + " / ".join(results)}
    calls = [
        {"id": f"call_{i}", "type": "function",
         "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        for i, city in enumerate(["Paris", "Tokyo"])
    ]  # fmt: skip
    return {"role": "assistant", "content": None, "tool_calls": calls}


async def test_a_tool_calling_round_trip(make_server, cml_tokenizer) -> None:
    server = make_server(lambda p: "", chat_policy=two_cities, owned_by="vllm")
    backend = RemoteBackend(server.spec, tokenizer=cml_tokenizer)
    messages = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    reply = await chat_completion(backend.client, messages, [WEATHER], model="fake", parallel=True)
    assert [c.arguments for c in reply.tool_calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert reply.finish_reason == "tool_calls"
    body = server.requests[0]
    assert body["tools"] == [WEATHER] and body["parallel_tool_calls"] is True
    messages += [reply.message, *(tool_result(c.id, "sunny") for c in reply.tool_calls)]
    final = await chat_completion(backend.client, messages, [WEATHER], model="fake", parallel=True)
    assert final.content == "Paris: sunny / sunny" and final.tool_calls == ()


def test_replies_are_checked() -> None:
    call = {"id": "c", "function": {"name": "f", "arguments": "{not json"}}
    reply = parse_reply({"choices": [{"message": {"tool_calls": [call]}}]})
    assert reply.tool_calls[0].error is not None and "not JSON" in reply.tool_calls[0].error
    listed = {"id": "c", "function": {"name": "f", "arguments": "[1, 2]"}}
    reply = parse_reply({"choices": [{"message": {"tool_calls": [listed]}}]})
    assert reply.tool_calls[0].error == "arguments are not a JSON object"
    as_object = {"function": {"name": "f", "arguments": {"x": 1}}}
    assert parse_reply({"choices": [{"message": {"tool_calls": [as_object]}}]}).tool_calls[
        0
    ].arguments == {"x": 1}
    for bad in ({}, {"choices": []}, {"choices": [{"message": {"content": 3}}]}):
        with pytest.raises(MalformedResponse):
            parse_reply(bad)
    with pytest.raises(MalformedResponse, match="function name"):
        parse_reply({"choices": [{"message": {"tool_calls": [{"id": "x"}]}}]})


async def test_a_missing_endpoint_is_a_clear_error(make_server, cml_tokenizer) -> None:
    from asynclm.backends.remote import RemoteHTTPError

    server = make_server(lambda p: "")  # no chat endpoint
    backend = RemoteBackend(server.spec, tokenizer=cml_tokenizer, retry=RetryPolicy(attempts=1))
    with pytest.raises(RemoteHTTPError, match="HTTP 404"):
        await chat_completion(backend.client, [], [WEATHER], model=None, parallel=False)
