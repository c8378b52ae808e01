"""The zygote: a process with the heavy modules loaded that forks one process per inferlet.

Importing torch and transformers takes seconds; forking a process that has them takes
milliseconds. The engine starts one zygote (`asynclm.inferlet.spawner.Spawner`) and talks to
it over a private socket pair (`SOCK_SEQPACKET`, JSON messages): `tokenizer` (load a model's
tokenizer from a file), `spawn` (fork an inferlet process on the socket passed along, confined
by the given sandbox), `kill` (SIGKILL its whole process group) and `reap` (its exit status).
Only the zygote's parent can reach that socket; an inferlet's process closes its copy before
any of the inferlet's code runs. The zygote runs no thread, so forking it is safe.

Run as `python -m asynclm.inferlet.zygote FD`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import signal
import socket
import sys
import traceback
from typing import Any

__all__ = ["PRELOAD", "main"]

PRELOAD = (
    "torch",
    "transformers",
    "tokenizers",
    "asynclm.engine.context",
    "asynclm.inferlet.child",
    "asynclm.inferlets",
)
_MESSAGE_BYTES = 1 << 16


class _Zygote:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.tokenizers: dict[str, Any] = {}
        self.children: set[int] = set()

    def serve(self) -> None:
        while True:
            data, fds, _, _ = socket.recv_fds(self.control, _MESSAGE_BYTES, 4)
            if not data:
                break  # the engine is gone
            try:
                reply = self.handle(json.loads(data), fds)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                for fd in fds:
                    os.close(fd)
            self.control.send(json.dumps(reply).encode())
        for pid in list(self.children):
            _kill(pid)

    def handle(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        op = message["op"]
        if op == "tokenizer":
            with open(message["path"], "rb") as file:  # written by the engine, for us alone
                tokenizer = pickle.load(file)
            tokenizer.encode("warm up", special=True)  # builds its encoders once, before forks
            self.tokenizers[message["key"]] = tokenizer
            return {"ok": True}
        if op == "spawn":
            return {"pid": self.spawn(message, fds[0])}
        if op == "kill":
            _kill(message["pid"])
            return {"ok": True}
        if op == "reap":
            return self.reap(message["pid"])
        raise ValueError(f"unknown op {op!r}")

    def spawn(self, message: dict[str, Any], fd: int) -> int:
        tokenizer = self.tokenizers[message["tokenizer"]]
        pid = os.fork()
        if pid == 0:  # the inferlet's process: never returns
            _become_inferlet(self.control, fd, tokenizer, message["sandbox"])
        self.children.add(pid)
        return pid

    def reap(self, pid: int) -> dict[str, Any]:
        if pid not in self.children:
            raise ValueError(f"no child {pid}")
        self.children.discard(pid)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return {"signal": os.WTERMSIG(status)}
        return {"exit": os.waitstatus_to_exitcode(status)}


def _become_inferlet(control: socket.socket, fd: int, tokenizer: Any, sandbox: dict) -> None:
    code = 70
    try:
        control.close()
        _keep_only(fd)
        from asynclm.inferlet.child import run_child

        code = run_child(fd, tokenizer, sandbox)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _keep_only(fd: int) -> None:
    """Close every descriptor but the connection; stdin from /dev/null, stdout to stderr."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))


def _kill(pid: int) -> None:
    """SIGKILL an inferlet's process (not reaped yet, so the pid is still its) and every
    process of its group (what it started)."""
    for kill in (os.kill, os.killpg):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """The zygote's main: `argv` is `[FD]`, the control socket."""
    control = socket.socket(fileno=int(argv[0]))
    init = json.loads(control.recv(_MESSAGE_BYTES))
    sys.path[:] = init["sys_path"]
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine ends us (Ctrl-C reaches it)
    for module in PRELOAD:
        importlib.import_module(module)
    control.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    _Zygote(control).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
