"""HTTP to an OpenAI-compatible server: streamed completions, JSON requests, safe retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from asynclm.backends.remote.errors import (
    MalformedResponse,
    RemoteError,
    RemoteHTTPError,
    RemoteTimeout,
    ServerUnavailable,
)
from asynclm.backends.remote.retry import RetryPolicy, is_retryable_status
from asynclm.backends.remote.servers import PROFILES, ServerProfile, detect_kind, model_id
from asynclm.backends.remote.spec import Timeouts
from asynclm.backends.remote.sse import SSEDecoder


class StreamDropped(RemoteError):
    """The connection closed in the middle of a stream (the text so far is good)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One streamed piece of a completion."""

    text: str
    token_ids: tuple[int, ...] | None = None
    finish_reason: str | None = None
    cached_tokens: int | None = None  # prompt tokens the server's cache held, if it says


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What `probe` found: the engine, its profile and the model it serves."""

    profile: ServerProfile
    model: str | None
    slots: int = 0  # llama-server's parallel slots (0: the server has none to pin)


class RemoteClient:
    """Talks to one server. Every request opens and closes its own connection pool, so nothing
    outlives the call (runs may each start their own event loop)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport

    # ---- discovery ---------------------------------------------------------------------------
    async def probe(self) -> ServerInfo:
        """Ask `/v1/models` (and llama-server's `/props`) which engine and model this is."""
        models = await self.get_json("/models")
        props = await self._props(self.base_url.removesuffix("/v1") + "/props")
        slots = props.get("total_slots") if props is not None else 0
        kind = detect_kind(models, props is not None)
        return ServerInfo(PROFILES[kind], model_id(models), slots if isinstance(slots, int) else 0)

    async def _props(self, url: str) -> dict[str, Any] | None:
        """llama-server's `/props` (None where the server has no such endpoint)."""
        async with self._client(self.timeouts.connect) as client:
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                return None
        ok = response.status_code == 200 and _is_json_object(response)
        return response.json() if ok else None

    # ---- plain requests ----------------------------------------------------------------------
    async def get_json(self, path: str) -> dict[str, Any]:
        return await self._request_json("GET", path, None)

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST and decode a JSON answer, retrying where the request was not acted on."""
        return await self._request_json("POST", path, body)

    async def _request_json(self, method: str, path: str, body: Any) -> dict[str, Any]:
        async with self._client(self.timeouts.request) as client:
            response = await self._send(client, method, path, body, stream=False)
        if not _is_json_object(response):
            text = response.text[:200]
            raise MalformedResponse(f"{path}: the answer is not a JSON object: {text!r}")
        return response.json()

    # ---- streaming ---------------------------------------------------------------------------
    @asynccontextmanager
    async def stream_completion(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[Chunk]]:
        """Open a streamed `/completions` request; the yielded iterator gives its chunks.

        Opening is retried while safe. While iterating, the first chunk must come within
        `timeouts.first_token` and each next one within `timeouts.between_tokens`; leaving the
        block closes the connection (the server sees the client go and stops generating).
        """
        async with self._client(max(self.timeouts.first_token, self.timeouts.between_tokens)) as c:
            response = await self._send(c, "POST", "/completions", {**body, "stream": True}, True)
            try:
                yield self._chunks(response)
            finally:
                await response.aclose()

    async def _chunks(self, response: httpx.Response) -> AsyncIterator[Chunk]:
        decoder = SSEDecoder()
        lines = response.aiter_lines()
        wait = self.timeouts.first_token
        while True:
            try:
                with anyio.fail_after(wait):
                    line = await anext(lines)
            except StopAsyncIteration:
                event = decoder.close()
                if event is not None and not event.done and event.data is not None:
                    yield _chunk(event.data)
                raise StreamDropped("the stream ended without its [DONE] event") from None
            except TimeoutError:
                raise RemoteTimeout(f"no streamed token for {wait:g} s") from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                raise StreamDropped(f"the connection dropped mid-stream ({e})") from e
            wait = self.timeouts.between_tokens
            event = decoder.feed(line)
            if event is None:
                continue
            if event.done:
                return
            assert event.data is not None  # a non-done event carries data
            yield _chunk(event.data)

    # ---- plumbing ----------------------------------------------------------------------------
    def _client(self, read_timeout: float) -> httpx.AsyncClient:
        timeout = httpx.Timeout(read_timeout, connect=self.timeouts.connect)
        return httpx.AsyncClient(
            headers=self._headers, timeout=timeout, transport=self._transport, trust_env=False
        )

    async def _send(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any, stream: bool
    ) -> httpx.Response:
        url = self.base_url + path
        error: RemoteError = RemoteError("no attempt was made")
        for delay in [0.0, *self.retry.delays()]:
            await anyio.sleep(delay)
            try:
                request = client.build_request(method, url, json=body)
                response = await client.send(request, stream=stream)
            except httpx.ConnectError as e:
                error = ServerUnavailable(f"cannot connect to {url}: {e or 'refused'}")
                continue
            except httpx.TimeoutException:
                error = RemoteTimeout(f"{url} did not answer in time")
                continue
            except httpx.TransportError as e:
                error = ServerUnavailable(f"{url}: {type(e).__name__}: {e}")
                continue
            if response.status_code < 400:
                return response
            error = await _http_error(response, url)
            if not is_retryable_status(response.status_code):
                break
        raise error


async def _http_error(response: httpx.Response, url: str) -> RemoteHTTPError:
    try:
        await response.aread()
        detail = response.text
    finally:
        await response.aclose()
    return RemoteHTTPError(response.status_code, detail, url)


def _is_json_object(response: httpx.Response) -> bool:
    try:
        return isinstance(response.json(), dict)
    except ValueError:
        return False


def _chunk(data: dict[str, Any]) -> Chunk:
    """A completion chunk's text, token ids and finish reason, checked."""
    choices = data.get("choices")
    if choices is None:
        raise MalformedResponse(f"a streamed chunk has no 'choices': {str(data)[:200]}")
    if not choices:  # e.g. vLLM's final usage-only chunk
        return Chunk("", cached_tokens=_cached_tokens(data))
    choice = choices[0]
    text = choice.get("text", "")
    if not isinstance(text, str):
        raise MalformedResponse(f"a streamed chunk's text is not a string: {str(choice)[:200]}")
    ids = choice.get("token_ids") or choice.get("tokens")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
        raise MalformedResponse(f"a streamed chunk's token ids are not integers: {ids!r:.200}")
    ids = tuple(ids) if ids else None
    return Chunk(text, ids, choice.get("finish_reason"), _cached_tokens(data))


def _cached_tokens(data: dict[str, Any]) -> int | None:
    """vLLM: usage.prompt_tokens_details.cached_tokens; llama-server: timings.cache_n."""
    details = (data.get("usage") or {}).get("prompt_tokens_details") or {}
    value = details.get("cached_tokens", (data.get("timings") or {}).get("cache_n"))
    return value if isinstance(value, int) else None
