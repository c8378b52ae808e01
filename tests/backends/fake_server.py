"""A real HTTP server on loopback that speaks `/v1/completions` and misbehaves on request.

The "model" is a function of the prompt text: it returns the whole assistant turn it means to
write (given the interrupts it sees); the server streams whatever of that turn the prompt does
not already contain, one token per chunk, like a real engine continuing a resubmitted prompt.
Faults are queued per request: an HTTP status, a dropped connection, a malformed chunk, a stall.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TURN_MARKER = "<|im_start|>assistant\n"


@dataclass
class Fault:
    """What to do to one request: `status`, or after `after` chunks: `drop`, `garbage`,
    `stall` (seconds of silence)."""

    status: int | None = None
    after: int = 0
    drop: bool = False
    garbage: bool = False
    stall: float = 0.0


@dataclass
class FakeServer:
    policy: Callable[[str], str]
    tokenizer: Any
    token_delay: float = 0.005
    owned_by: str = "me"  # llama-cpp-python's answer: text prompts
    token_ids: bool = False
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    chat_policy: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
    disconnects: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def spec(self) -> str:
        return f"openai:http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def prompt_text(self, body: dict[str, Any]) -> str:
        prompt = body.get("prompt", "")
        return self.tokenizer.decode(prompt) if isinstance(prompt, list) else prompt

    def continuation(self, prompt: str) -> list[int]:
        """Token ids of what the model still has to write in its turn."""
        cut = prompt.rfind(TURN_MARKER)
        written = prompt[cut + len(TURN_MARKER) :] if cut >= 0 else ""
        turn = self.policy(prompt)
        visible = _without_interrupts(written)
        if not turn.startswith(visible):
            return []
        return self.tokenizer.encode(turn[len(visible) :])


def _without_interrupts(text: str) -> str:
    import re

    return re.sub(r"\[INTR\].*?\[END\]", "", text, flags=re.DOTALL)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path == "/props" and self.fake.owned_by == "llamacpp":
            self._json(200, {"total_slots": 2, "default_generation_settings": {}})
        elif self.path == "/v1/models":
            self._json(
                200, {"object": "list", "data": [{"id": "fake", "owned_by": self.fake.owned_by}]}
            )
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.fake.requests.append(body)
        fault = self.fake.faults.popleft() if self.fake.faults else Fault()
        if fault.status is not None:
            self._json(fault.status, {"error": {"message": f"injected {fault.status}"}})
            return
        if self.path == "/v1/chat/completions" and self.fake.chat_policy is not None:
            message = self.fake.chat_policy(body["messages"])
            reason = "tool_calls" if message.get("tool_calls") else "stop"
            choice = {"index": 0, "message": message, "finish_reason": reason}
            usage = {"prompt_tokens": 10, "completion_tokens": 5}
            self._json(200, {"object": "chat.completion", "choices": [choice], "usage": usage})
            return
        if self.path != "/v1/completions":
            self._json(404, {"error": "not found"})
            return
        self._stream(body, fault)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, body: dict[str, Any], fault: Fault) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        ids = self.fake.continuation(self.fake.prompt_text(body))[: body.get("max_tokens", 16)]
        try:
            for n, token in enumerate(ids):
                if n == fault.after and (fault.drop or fault.garbage or fault.stall):
                    self._misbehave(fault)
                    return
                last = n == len(ids) - 1
                reason = (
                    ("stop" if len(ids) < body.get("max_tokens", 16) else "length")
                    if last
                    else None
                )
                self._event(self._chunk(token, reason))
                time.sleep(self.fake.token_delay)
            if not ids:
                self._event(self._chunk(None, "stop"))
            self._send_chunk(b"data: [DONE]\n\n")
            self._send_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.fake.disconnects += 1
        self.close_connection = True

    def _chunk(self, token: int | None, reason: str | None) -> dict[str, Any]:
        text = self.fake.tokenizer.decode([token]) if token is not None else ""
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": reason}
        if self.fake.token_ids and token is not None:
            choice["token_ids"] = [token]
        return {"object": "text_completion", "choices": [choice]}

    def _misbehave(self, fault: Fault) -> None:
        if fault.garbage:
            self._send_chunk(b"data: {not json\n\n")
            self._send_chunk(b"")
        elif fault.stall:
            time.sleep(fault.stall)
        else:  # drop: a truncated HTTP chunk, then the socket closes
            self.wfile.write(b'40\r\ndata: {"choi')
            self.wfile.flush()
        self.close_connection = True

    def _event(self, data: dict[str, Any]) -> None:
        self._send_chunk(f"data: {json.dumps(data)}\n\n".encode())

    def _send_chunk(self, payload: bytes) -> None:
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()
