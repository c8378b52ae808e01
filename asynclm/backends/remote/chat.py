"""OpenAI chat tool calling (`/v1/chat/completions` with `tools`): any served model, no CML.

The model answers with text or with tool calls; the caller runs the calls and sends their
results back as `tool` messages. `parallel_tool_calls` decides whether one turn may carry
several calls (sync-parallel) or at most one (sync).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asynclm.backends.remote.client import RemoteClient
from asynclm.backends.remote.errors import MalformedResponse
from asynclm.engine.sampling import Sampler


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A call the model asked for. `error` is set when its arguments are not a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ChatReply:
    """One assistant turn: its text, the calls it asks for, and the message to send back."""

    content: str
    tool_calls: tuple[ToolCallRequest, ...]
    finish_reason: str | None
    message: dict[str, Any]
    usage: dict[str, Any] = field(default_factory=dict)


def tool_spec(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool in the request's `tools` list."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def tool_result(call_id: str, content: str) -> dict[str, Any]:
    """The message that answers a tool call."""
    return {"role": "tool", "tool_call_id": call_id, "content": content}


async def chat_completion(
    client: RemoteClient,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    *,
    model: str | None,
    parallel: bool,
    sampler: Sampler | None = None,
    max_tokens: int = 512,
) -> ChatReply:
    """Ask for the next assistant turn (one request; retried only where nothing was used)."""
    sampler = sampler or Sampler()
    body: dict[str, Any] = {
        "messages": list(messages),
        "max_tokens": max_tokens,
        "temperature": sampler.temperature,
        "top_p": sampler.top_p,
    }
    if model is not None:
        body["model"] = model
    if tools:
        body.update(tools=list(tools), tool_choice="auto", parallel_tool_calls=parallel)
    return parse_reply(await client.post_json("/chat/completions", body))


def parse_reply(data: dict[str, Any]) -> ChatReply:
    """A chat completion's first choice, checked."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as e:
        raise MalformedResponse(f"a chat completion without a message: {str(data)[:200]}") from e
    calls = tuple(_call(c, i) for i, c in enumerate(message.get("tool_calls") or []))
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise MalformedResponse(f"a chat message whose content is not text: {content!r:.200}")
    kept = {"role": "assistant", "content": content or None}
    if calls:
        kept["tool_calls"] = message["tool_calls"]
    return ChatReply(content, calls, choice.get("finish_reason"), kept, data.get("usage") or {})


def _call(raw: Any, index: int) -> ToolCallRequest:
    try:
        function = raw["function"]
        name, arguments = function["name"], function.get("arguments") or "{}"
    except (KeyError, TypeError) as e:
        raise MalformedResponse(f"a tool call without a function name: {str(raw)[:200]}") from e
    call_id = str(raw.get("id") or f"call_{index}")
    if isinstance(arguments, dict):  # some servers send an object, not its JSON text
        return ToolCallRequest(call_id, name, arguments, json.dumps(arguments))
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as e:
        return ToolCallRequest(call_id, name, {}, arguments, f"arguments are not JSON ({e})")
    if not isinstance(parsed, dict):
        return ToolCallRequest(call_id, name, {}, arguments, "arguments are not a JSON object")
    return ToolCallRequest(call_id, name, parsed, arguments)
