"""The inferlet's process: confine itself, load the inferlet, run it, report how it ended.

Runs in a process forked by the zygote (`asynclm.inferlet.zygote`), which has the model's
tokenizer and the heavy modules loaded already. Nothing of the inferlet runs before the
sandbox is in place.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import anyio

from asynclm.engine.tokenizer import Tokenizer
from asynclm.inferlet.channel import Channel
from asynclm.inferlet.client import RemoteRuntime
from asynclm.inferlet.errors import InferletError, exception_data, unwrap_quota_group
from asynclm.inferlet.loading import load_entry_point
from asynclm.inferlet.protocol import ProtocolError, encode
from asynclm.inferlet.sandbox import Sandbox, enter_sandbox

__all__ = ["run_child"]


def run_child(fd: int, tokenizer: Tokenizer, sandbox: dict[str, Any]) -> int:
    """Run the inferlet the engine names over the socket `fd`; the process's exit code."""
    channel = Channel(socket.socket(fileno=fd))
    try:
        enter_sandbox(Sandbox.from_data(sandbox))
        _quiet_threads()
        init = channel.receive()
        main = load_entry_point(init["entry"])
    except BaseException as exc:  # before the inferlet runs: say why it could not start
        channel.send({"op": "failed", "error": exception_data(_startup_error(exc))})
        return 1
    channel.start()
    runtime = RemoteRuntime(channel, tokenizer, init)
    try:
        value = anyio.run(_run, main, runtime, init.get("args") or {}, backend="asyncio")
    except BaseException as exc:
        channel.send({"op": "failed", "error": exception_data(unwrap_quota_group(exc))})
        return 1
    channel.send(_done(value))
    return 0


async def _run(main: Any, runtime: RemoteRuntime, args: dict[str, Any]) -> Any:
    return await main(runtime, **args)


def _done(value: Any) -> dict[str, Any]:
    try:
        encode(value)
    except ProtocolError as exc:
        error = InferletError(f"the value main returned cannot leave the inferlet's process: {exc}")
        return {"op": "failed", "error": exception_data(error)}
    return {"op": "done", "value": value}


def _startup_error(error: BaseException) -> BaseException:
    if isinstance(error, (InferletError, SyntaxError, ImportError)):
        return error
    return InferletError(f"the inferlet could not start: {type(error).__name__}: {error}")


def _quiet_threads() -> None:
    """One compute thread: the inferlet's own tensor work is small, and threads count against
    a process limit."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
