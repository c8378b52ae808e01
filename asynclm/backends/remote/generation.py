"""A generation on a remote server: an async iterator of steps over a streamed completion.

The stream is read by a worker task of the context's task group and handed over through a
small buffer, so `stop()` (synchronous, like the local engine's) cancels it at once and the
connection closes. An injection into the context while the generation runs ends the stream
and resubmits the whole context (async-naive): tokens the server sent after the last one the
agent consumed are discarded, exactly as if the interrupt had landed there on the local engine.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asynclm.backends.remote.client import Chunk, StreamDropped
from asynclm.backends.remote.constraints import RemoteConstraint
from asynclm.backends.remote.errors import RemoteTimeout
from asynclm.backends.remote.links import GeneratingContext
from asynclm.backends.remote.stats import Reason, Submission
from asynclm.engine.generation import FinishReason, Step

_Item = Chunk | Exception


class RemoteGeneration:
    """Iterate with `async for step in ctx.generate(...)`; one step per streamed chunk."""

    def __init__(
        self,
        ctx: GeneratingContext,
        task_group: TaskGroup,
        params: dict[str, Any],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        constrain: RemoteConstraint | None = None,
    ) -> None:
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        self.ctx = ctx
        self.max_tokens = max_tokens
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason: FinishReason | None = None
        self.in_step = False
        self._tg = task_group
        self._params = params
        self._stop_strings = [s for s in stop if s]
        self._constraint = constrain
        self._stop_requested = False
        self._queued: deque[Step] = deque()
        self._scope: anyio.CancelScope | None = None
        self._receive: MemoryObjectReceiveStream[_Item] | None = None
        self._restart: Reason | None = "start"
        self._drops = 0
        self._submission: Submission | None = None
        self._sent_at = 0.0

    # ---- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """End the generation before its next step (the stream is closed at once)."""
        self._stop_requested = True
        self._close_stream()
        if not self.in_step:
            self._end("cancelled")

    def interrupted(self) -> None:
        """The context grew under the generation: resubmit before the next step."""
        if self.finish_reason is None:
            self._restart = "interrupt"

    @property
    def is_active(self) -> bool:
        return self.finish_reason is None

    # ---- iteration ---------------------------------------------------------------------------
    def __aiter__(self) -> RemoteGeneration:
        return self

    async def __anext__(self) -> Step:
        if self.finish_reason is not None:
            raise StopAsyncIteration
        if self._queued:  # the end of the turn, after the text that came with it
            return self._finish("eos")
        if self._stop_requested or len(self.tokens) >= self.max_tokens:
            self._end("cancelled" if self._stop_requested else "length")
            raise StopAsyncIteration
        self.in_step = True
        try:
            return await self._next_step()
        except BaseException:
            self._end("cancelled")
            raise
        finally:
            self.in_step = False

    async def _next_step(self) -> Step:
        while True:
            if self._restart is not None:
                self._submit(self._restart)
            assert self._receive is not None  # opened by _submit
            try:
                item = await self._receive.receive()
            except anyio.EndOfStream:
                return self._finish("eos")  # [DONE] without a finish reason
            if isinstance(item, (StreamDropped, RemoteTimeout)) and self._may_continue():
                self._restart = "dropped"
                continue
            if isinstance(item, Exception):
                raise item
            step = self._on_chunk(item)
            if step is not None:
                return step

    def _may_continue(self) -> bool:
        """A dropped or stalled stream is continued from the text received, a few times."""
        self._drops += 1
        return self._drops < self.ctx.backend.client.retry.attempts

    # ---- chunks ------------------------------------------------------------------------------
    def _on_chunk(self, chunk: Chunk) -> Step | None:
        submission = self._submission
        assert submission is not None  # a chunk belongs to a submission
        if chunk.cached_tokens is not None:
            submission.reused_tokens, submission.reused_source = chunk.cached_tokens, "reported"
        ids = self._ids(chunk)
        if ids and submission.first_token_s is None:
            submission.first_token_s = time.perf_counter() - self._sent_at
        submission.generated_tokens += len(ids)
        self.ctx.backend.record_received(self.ctx, ids)
        self.tokens += ids
        self.text += chunk.text
        self.ctx.record_generated(ids)
        reason = self._finish_reason(chunk)
        step = Step(ids[-1] if ids else -1, chunk.text, len(self.tokens) - 1, None)
        if reason is None:
            return step if chunk.text else None
        if reason == "eos" and chunk.text:  # the text first; the end only if asked for next
            self._queued.append(step)
            return step
        final = self._finish(reason)
        return Step(final.token, chunk.text if reason != "eos" else "", final.index, reason)

    def _ids(self, chunk: Chunk) -> list[int]:
        """The chunk's token ids: as streamed, else its text encoded (text-only servers)."""
        if chunk.token_ids:
            return list(chunk.token_ids)
        # the model wrote it: its markers and end-of-turn are the special tokens it sampled
        return self.ctx.tokenizer.encode(chunk.text, special=True) if chunk.text else []

    def _finish_reason(self, chunk: Chunk) -> FinishReason | None:
        if self._stop_strings and chunk.text:
            window = self.text[-(max(map(len, self._stop_strings)) + len(chunk.text)) :]
            if any(s in window for s in self._stop_strings):
                return "stop"
        if chunk.finish_reason == "stop":
            return "eos"
        if chunk.finish_reason is not None or len(self.tokens) >= self.max_tokens:
            return "length"
        return None

    def _finish(self, reason: FinishReason) -> Step:
        """End here. An end of turn enters the context only when the consumer takes it (a
        consumer that stops at the text before it never saw the model end its turn)."""
        self._queued.clear()
        token = -1
        if reason == "eos":
            token = self.ctx.backend.eos_token_id
            self.ctx.record_generated([token])  # in the context, as the local engine keeps it
        self._end(reason)
        return Step(token, "", len(self.tokens), reason)

    # ---- streams -----------------------------------------------------------------------------
    def _submit(self, reason: Reason) -> None:
        discarded = self._close_stream()
        prompt = self.ctx.tokens
        remaining = self.max_tokens - len(self.tokens)
        self._submission = self.ctx.backend.record_submission(self.ctx, reason, prompt, discarded)
        body = {
            **self._params,
            **self.ctx.backend.prompt_field(self.ctx, prompt),
            "max_tokens": remaining,
        }
        if self._constraint is not None:
            body = _merge_fields(body, self._constraint.remote_fields(self.ctx.text))
        send, receive = anyio.create_memory_object_stream[_Item](math.inf)
        self._scope, self._receive, self._restart = anyio.CancelScope(), receive, None
        self._sent_at = time.perf_counter()
        self._tg.start_soon(self._pump, body, send, self._scope, name="remote stream")

    async def _pump(
        self, body: dict[str, Any], send: MemoryObjectSendStream[_Item], scope: anyio.CancelScope
    ) -> None:
        with scope, send:
            try:
                async with self.ctx.backend.client.stream_completion(body) as chunks:
                    async for chunk in chunks:
                        await send.send(chunk)
            except Exception as e:  # handed to the consumer, which raises it in the run
                await send.send(e)

    def _close_stream(self) -> int:
        """Cancel the running stream; returns how many received chunks were never consumed."""
        unseen = 0
        if self._receive is not None:
            unseen = self._drain(self._receive)
            self._receive.close()
            self._receive = None
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        return unseen

    def _drain(self, receive: MemoryObjectReceiveStream[_Item]) -> int:
        """Account the chunks received but never consumed; returns their token count."""
        unseen: list[int] = []
        while True:
            try:
                item = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if isinstance(item, Chunk):
                unseen += self._ids(item)
        self.ctx.backend.record_received(self.ctx, unseen)
        return len(unseen)

    def _end(self, reason: FinishReason) -> None:
        if self.finish_reason is None:
            self.finish_reason = reason
            self._close_stream()
            self.ctx.generation_ended(self)

    async def collect_text(self) -> str:
        async for _ in self:
            pass
        return self.text


def _merge_fields(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Add a constraint's fields; logit biases from both sides are combined."""
    merged = {**body, **extra}
    if "logit_bias" in body and "logit_bias" in extra:
        merged["logit_bias"] = {**body["logit_bias"], **extra["logit_bias"]}
    return merged
