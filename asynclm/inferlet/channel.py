"""The inferlet's end of its connection to the engine: requests and their replies.

Runs in the inferlet's process. A reader thread takes every reply off the socket and hands it
to whoever waits for it: a blocking call (the Context API's synchronous methods: `fork`,
`save`, `append`, ...) waits on a thread event; an awaiting one (`flush`, `forward`, generation
steps) on a future of the event loop, resolved with `call_soon_threadsafe` so the reader never
waits for the loop (the loop may itself be blocked in a synchronous call). The inferlet's
process runs the asyncio event loop (anyio on its asyncio backend), which this relies on.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from asynclm.inferlet.errors import InferletKilledError, exception_from_data
from asynclm.inferlet.protocol import decode, encode, frame_size

__all__ = ["Channel"]


@dataclass(slots=True)
class _Waiter:
    """Who waits for a reply: a thread (event) or a task (future on `loop`)."""

    event: threading.Event | None = None
    future: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    reply: Any = field(default=None)


class Channel:
    """Requests to the engine over a connected socket, and their replies."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiter] = {}
        self._reader: threading.Thread | None = None
        self._forgotten: list[int] = []  # contexts dropped without release, by the GC

    # ---- the first message, before the reader runs ---------------------------------------------
    def receive(self) -> Any:
        """One message from the engine, read in the calling thread (before `start`)."""
        return decode(self._read_frame())

    def start(self) -> None:
        """Start the reader thread (replies are read by it from now on)."""
        self._reader = threading.Thread(
            target=self._read_replies, name="engine-replies", daemon=True
        )
        self._reader.start()

    def send(self, message: dict[str, Any]) -> None:
        """Send a message that needs no reply."""
        data = encode(message)
        with self._send_lock:
            while self._forgotten:
                self._sock.sendall(encode({"op": "forget", "ctx": self._forgotten.pop()}))
            self._sock.sendall(data)

    def forget(self, handle: int) -> None:
        """A context the inferlet dropped unreleased: released with the next message. Safe to
        call from a finalizer (it only appends to a list)."""
        self._forgotten.append(handle)

    # ---- requests ----------------------------------------------------------------------------
    def call(self, op: str, **args: Any) -> Any:
        """A request whose reply the calling thread waits for; raises the engine's error."""
        waiter = _Waiter(event=threading.Event())
        request = self._register(waiter)
        self.send({"id": request, "op": op, **args})
        waiter.event.wait()  # type: ignore[union-attr]
        return _result(waiter.reply)

    async def acall(self, op: str, **args: Any) -> Any:
        """A request the calling task awaits; cancelling it cancels the engine's work too."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(future=loop.create_future(), loop=loop)
        request = self._register(waiter)
        self.send({"id": request, "op": op, **args})
        try:
            reply = await waiter.future  # type: ignore[misc]
        except BaseException:
            with self._lock:
                cancelled = self._waiting.pop(request, None) is not None
            if cancelled:
                self.send({"op": "cancel", "target": request})
            raise
        return _result(reply)

    def _register(self, waiter: _Waiter) -> int:
        request = next(self._ids)
        with self._lock:
            self._waiting[request] = waiter
        return request

    # ---- the reader thread -------------------------------------------------------------------
    def _read_replies(self) -> None:
        try:
            while True:
                reply = decode(self._read_frame())
                with self._lock:
                    waiter = self._waiting.pop(reply.get("id"), None)
                if waiter is not None:
                    _deliver(waiter, reply)
        except BaseException:  # the engine is gone (or sent garbage): nothing to report to
            os._exit(1)

    def _read_frame(self) -> bytes:
        return self._read_exactly(frame_size(self._read_exactly(4)))

    def _read_exactly(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self._sock.recv(min(left, 1 << 20))
            if not chunk:
                raise InferletKilledError("the engine closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def _deliver(waiter: _Waiter, reply: Any) -> None:
    waiter.reply = reply
    if waiter.event is not None:
        waiter.event.set()
    elif waiter.loop is not None and waiter.future is not None:
        waiter.loop.call_soon_threadsafe(_resolve, waiter.future, reply)


def _resolve(future: asyncio.Future[Any], reply: Any) -> None:
    if not future.done():
        future.set_result(reply)


def _result(reply: Any) -> Any:
    if "error" in reply:
        raise exception_from_data(reply["error"])
    return reply.get("ok")
