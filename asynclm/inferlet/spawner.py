"""Starting inferlet processes: the engine's side of the zygote.

`Spawner.shared()` starts one zygote per engine process on first use (it loads torch and
transformers once, in the background of the first run) and ends it at exit. Its methods block
briefly and are meant for a worker thread (`anyio.to_thread.run_sync`).
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from typing import Any

from asynclm.engine.tokenizer import Tokenizer
from asynclm.inferlet.errors import InferletError

__all__ = ["Spawner"]

_MESSAGE_BYTES = 1 << 16
_START_SECONDS = 300.0  # importing torch on a busy machine can take a while
# The only environment variables the zygote (hence every inferlet process) gets: the engine's
# own (API keys, tokens) stay with it, not even readable from /proc/self/environ.
ENVIRONMENT_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def zygote_environment() -> dict[str, str]:
    """The environment a zygote starts with."""
    kept = {name: os.environ[name] for name in ENVIRONMENT_KEPT if name in os.environ}
    return {**kept, "TOKENIZERS_PARALLELISM": "false", "PYTHONNOUSERSITE": "1"}


class Spawner:
    """Forks sandboxed inferlet processes from a zygote (see `asynclm.inferlet.zygote`)."""

    _shared: Spawner | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._tokenizers: weakref.WeakKeyDictionary[Tokenizer, str] = weakref.WeakKeyDictionary()
        self._keys = iter(range(1, 1 << 62))

    @classmethod
    def shared(cls) -> Spawner:
        """The process's spawner (its zygote starts on first use)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
                atexit.register(cls._shared.close)
            return cls._shared

    def start(self) -> None:
        """Start the zygote now (it imports torch: call early, e.g. while a model loads)."""
        with self._lock:
            self._start()

    # ---- requests ----------------------------------------------------------------------------
    def spawn(self, fd: int, tokenizer: Tokenizer, sandbox: dict[str, Any]) -> int:
        """Fork an inferlet process on the connected socket `fd`; its pid.

        Raises:
            InferletError: The zygote could not fork it.
        """
        with self._lock:
            self._start()
            key = self._tokenizer_key(tokenizer)
            reply = self._request({"op": "spawn", "tokenizer": key, "sandbox": sandbox}, [fd])
        return int(reply["pid"])

    def kill(self, pid: int) -> None:
        """SIGKILL an inferlet process and everything it started (idempotent until reaped)."""
        with self._lock:
            self._request({"op": "kill", "pid": pid})

    def reap(self, pid: int) -> dict[str, int]:
        """Wait for an ended (or killed) process: `{"exit": code}` or `{"signal": number}`."""
        with self._lock:
            reply = self._request({"op": "reap", "pid": pid})
        return {k: int(v) for k, v in reply.items()}

    def close(self) -> None:
        """End the zygote (and with it any inferlet process still running)."""
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            if self._process is not None:
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None

    # ---- the zygote --------------------------------------------------------------------------
    def _start(self) -> None:
        if self._control is not None and self._process is not None and self._process.poll() is None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, "-m", "asynclm.inferlet.zygote", str(theirs.fileno())]
        self._process = subprocess.Popen(
            command,
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=2,
            env=zygote_environment(),
        )
        theirs.close()
        ours.settimeout(_START_SECONDS)
        ours.send(json.dumps({"sys_path": sys.path}).encode())
        try:
            ready = json.loads(ours.recv(_MESSAGE_BYTES) or b"{}")
        except (OSError, ValueError) as exc:
            raise InferletError(f"the inferlet zygote did not start: {exc}") from None
        if not ready.get("ready"):
            raise InferletError("the inferlet zygote did not start (see its error output above)")
        ours.settimeout(None)
        self._control = ours
        self._tokenizers = weakref.WeakKeyDictionary()

    def _tokenizer_key(self, tokenizer: Tokenizer) -> str:
        key = self._tokenizers.get(tokenizer)
        if key is not None and key.endswith(f"/{tokenizer.vocab_size}"):
            return key
        key = f"{next(self._keys)}/{tokenizer.vocab_size}"
        with tempfile.TemporaryDirectory(prefix="asynclm-tokenizer-") as folder:  # mode 0700
            path = os.path.join(folder, "tokenizer.pickle")
            with open(path, "wb") as file:
                pickle.dump(tokenizer, file)
            self._request({"op": "tokenizer", "key": key, "path": path})
        self._tokenizers[tokenizer] = key
        return key

    def _request(self, message: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        if self._control is None:
            raise InferletError("the inferlet zygote is not running")
        data = json.dumps(message).encode()
        try:
            socket.send_fds(self._control, [data], fds or [])
            reply = json.loads(self._control.recv(_MESSAGE_BYTES) or b"{}")
        except (OSError, ValueError) as exc:
            self._control = None
            raise InferletError(f"the inferlet zygote failed: {exc}") from None
        if not reply:
            self._control = None
            raise InferletError("the inferlet zygote ended")
        if "error" in reply:
            raise InferletError(f"the inferlet zygote refused {message['op']}: {reply['error']}")
        return dict(reply)
