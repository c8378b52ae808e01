"""Server-sent events of an OpenAI-compatible stream, decoded line by line (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from asynclm.backends.remote.errors import MalformedResponse, RemoteError

DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class Event:
    """One `data:` payload: a decoded JSON chunk, or `done` at the `[DONE]` sentinel."""

    data: dict[str, Any] | None
    done: bool = False


class SSEDecoder:
    """Feeds lines of an event stream; `feed` returns the event a blank line completes.

    Comment lines (`: ping`) and fields other than `data` are skipped; multi-line data is
    joined with newlines, as the SSE specification says.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def close(self) -> Event | None:
        """The last event, if the stream ended without its blank line."""
        return self._dispatch()

    def _dispatch(self) -> Event | None:
        if not self._data:
            return None
        payload, self._data = "\n".join(self._data), []
        if payload.strip() == DONE:
            return Event(None, done=True)
        return Event(parse_chunk(payload))


def parse_chunk(payload: str) -> dict[str, Any]:
    """A chunk's JSON object; an `error` object the server streams becomes a `RemoteError`."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as e:
        raise MalformedResponse(f"a streamed chunk is not JSON: {payload[:200]!r}") from e
    if not isinstance(data, dict):
        raise MalformedResponse(f"a streamed chunk is not a JSON object: {payload[:200]!r}")
    if "error" in data and "choices" not in data:
        error = data["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RemoteError(f"the server reported an error mid-stream: {message}")
    return data
