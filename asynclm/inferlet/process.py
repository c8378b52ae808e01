"""Out-of-process inferlets: `main` runs in a sandboxed process of its own.

The process reaches the engine only through the connection the engine serves
(`InferletHost`): no engine object crosses. Quotas are the engine's: pages (forks and exports
included), tokens and contexts are checked by the inferlet's scope on every request; wall time
by killing the process (with everything it started) when it runs out, whatever the process is
doing; memory, CPU time and open files by the sandbox's resource limits.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import SocketStream

from asynclm.engine.engine import Engine
from asynclm.engine.scope import QuotaExceededError, Scope
from asynclm.inferlet.errors import InferletKilledError, exception_from_data
from asynclm.inferlet.host import InferletHost, Outcome
from asynclm.inferlet.sandbox import Sandbox
from asynclm.inferlet.spawner import Spawner

__all__ = ["run_in_subprocess"]


async def run_in_subprocess(
    engine: Engine,
    entry: dict[str, str],
    args: Mapping[str, Any],
    scope: Scope,
    sandbox: Sandbox,
    spawner: Spawner | None = None,
) -> Any:
    """Run the inferlet `entry` names in a new sandboxed process, serving it in `scope`.

    Raises:
        QuotaExceededError: It ran out of pages, tokens, contexts or wall time.
        InferletKilledError: Its process ended without reporting (a resource limit, a crash).
        InferletError: It could not start, broke the protocol, or raised an error of a type
            that cannot cross the process boundary as itself.
        Exception: What it raised, when the type is a built-in or asynclm's own.
    """
    sandbox.check()
    spawner = spawner or Spawner.shared()
    ours, theirs = socket.socketpair()
    try:
        pid = await anyio.to_thread.run_sync(
            spawner.spawn, theirs.fileno(), engine.tokenizer, sandbox.as_data()
        )
    finally:
        theirs.close()
    try:
        outcome = await _serve(engine, entry, args, scope, ours)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(spawner.kill, pid)
            status = await anyio.to_thread.run_sync(spawner.reap, pid)
            ours.close()
    return _result(outcome, status, scope, sandbox)


async def _serve(
    engine: Engine,
    entry: dict[str, str],
    args: Mapping[str, Any],
    scope: Scope,
    sock: socket.socket,
) -> Outcome | None:
    """Serve the process until it reports; None when the wall-time quota ran out first."""
    stream = await SocketStream.from_socket(sock)
    host = InferletHost(engine, scope, stream)
    info = {"entry": entry, "args": dict(args), "name": scope.name, "model_name": engine.name}
    with anyio.move_on_after(scope.quota.max_seconds or float("inf")):
        await host.send(info)
        return await host.serve()
    return None


def _result(outcome: Outcome | None, status: dict[str, int], scope: Scope, sandbox: Sandbox) -> Any:
    if outcome is None:
        raise QuotaExceededError(
            f"inferlet {scope.name!r}: wall-time quota of {scope.quota.max_seconds:g} s exceeded "
            "(its process was killed)"
        )
    if outcome.reported and outcome.error is None:
        return outcome.value
    if outcome.reported:
        raise exception_from_data(outcome.error)
    raise InferletKilledError(_death(scope, status, sandbox))


def _death(scope: Scope, status: dict[str, int], sandbox: Sandbox) -> str:
    if "signal" in status:
        number = status["signal"]
        name = (
            signal.Signals(number).name
            if number in signal.Signals.__members__.values()
            else str(number)
        )
        if number == signal.SIGXCPU or (number == signal.SIGKILL and sandbox.max_cpu_seconds):
            return (
                f"inferlet {scope.name!r}: its process was killed ({name}); the CPU-time limit "
                f"is {sandbox.max_cpu_seconds} s"
            )
        return f"inferlet {scope.name!r}: its process was killed by {name}"
    code = status.get("exit")
    return f"inferlet {scope.name!r}: its process exited with code {code} without reporting"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
