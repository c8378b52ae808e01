"""Out-of-process inferlets cannot escape their scope, their quotas or their sandbox.

Each escape the hardening review found is tried from inside a real inferlet process: reaching
the engine, naming another inferlet's contexts or exports, taking pages through forks and
exports, outliving the wall-time quota by blocking, spinning or swallowing cancellation, and
breaking the protocol. Then the sandbox: memory, CPU time, open files, another user, no network.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from asynclm.engine.engine import Engine
from asynclm.inferlet import (
    InferletError,
    InferletKilledError,
    Namespace,
    Quota,
    QuotaExceededError,
    Runtime,
    Sandbox,
    run_inferlet,
    run_many,
)
from asynclm.inferlet.protocol import encode

pytestmark = pytest.mark.anyio


# ---- inferlets (module level: the inferlet's process imports them by name) ------------------
async def engine_objects(runtime: Runtime) -> dict[str, Any]:
    ctx = runtime.context()
    ctx.append("hello")
    await ctx.flush()
    state = {"Engine", "PagePool", "Scheduler", "Exports", "KVCache", "ModelRunner", "Scope"}
    state |= {"Sequence", "Context", "InferletHost"}
    found = sorted(
        {
            type(o).__qualname__
            for o in gc.get_objects()
            if type(o).__qualname__ in state and type(o).__module__.startswith("asynclm.")
        }
    )
    return {"found": found, "has_engine": hasattr(ctx, "engine"), "pid": os.getpid()}


async def make_context(runtime: Runtime) -> int:
    ctx = runtime.context()
    ctx.append("mine")
    await ctx.flush()
    return ctx.id


async def poke_context(runtime: Runtime, handle: int) -> Any:
    return runtime._channel.call("state", ctx=handle)  # type: ignore[attr-defined]


async def fork_bomb(runtime: Runtime) -> None:
    root = runtime.context()
    root.append(list(range(10, 30)))
    await root.flush()
    children = []  # kept: a dropped fork gives its pages back
    for _ in range(1000):
        child = root.fork()
        child.append([1])
        await child.flush()  # each fork's write takes a page of its own
        children.append(child)


async def export_hoard(runtime: Runtime) -> None:
    for k in range(1000):
        async with runtime.context() as ctx:
            ctx.append(list(range(k, k + 8)))
            await ctx.flush()
            ctx.save(f"hoard{k}")  # the context goes, the export's pages stay


async def sleep_blocking(runtime: Runtime) -> None:
    time.sleep(300)


async def spin(runtime: Runtime) -> None:
    while True:
        pass


async def swallow_cancellation(runtime: Runtime) -> None:
    while True:
        with contextlib.suppress(BaseException):  # cancellation included
            await anyio.sleep(300)


async def start_a_sleeper_and_block(runtime: Runtime, pid_file: str) -> None:
    import subprocess

    sleeper = subprocess.Popen(["sleep", "300"])
    Path(pid_file).write_text(str(sleeper.pid))
    time.sleep(300)


async def send_raw(runtime: Runtime, frame: bytes) -> str:
    runtime._channel._sock.sendall(frame)  # type: ignore[attr-defined]
    await anyio.sleep(30)
    return "still here"


async def unknown_requests(runtime: Runtime) -> list[str]:
    channel = runtime._channel  # type: ignore[attr-defined]
    errors = []
    for op, args in [
        ("shutdown_engine", {}),
        ("state", {"ctx": "1; rm -rf /"}),
        ("append", {"ctx": 10**30, "tokens": [1]}),
        ("grammar", {"options": {"python": "import os"}}),
        ("generate", {"ctx": 999, "sampler": {"temperature": float("nan")}}),
    ]:
        try:
            channel.call(op, **args)
        except Exception as exc:
            errors.append(type(exc).__name__)
    ctx = runtime.context()
    ctx.append([1, 2, 3])
    await ctx.flush()
    return errors


async def allocate(runtime: Runtime, mb: int) -> int:
    block = bytearray(mb << 20)
    return len(block)


async def open_files(runtime: Runtime, n: int) -> int:
    files = [open(os.devnull) for _ in range(n)]  # noqa: SIM115
    return len(files)


async def who_am_i(runtime: Runtime, secret: str) -> dict[str, Any]:
    try:
        Path(secret).read_text()
        readable = True
    except PermissionError:
        readable = False
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "read": readable}


async def connect(runtime: Runtime, port: int) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return sock.recv(100).decode(errors="replace").split("\r\n")[0]
    except OSError as exc:
        return f"refused: {type(exc).__name__}"


async def quick(runtime: Runtime) -> str:
    ctx = runtime.context()
    ctx.user("hi")
    ctx.assistant()
    return await ctx.generate(max_tokens=3, stop_at_eos=False).collect_text()


# ---- the engine is out of reach --------------------------------------------------------------
async def test_the_inferlet_holds_no_engine_object(engine: Engine) -> None:
    result = await run_inferlet(engine, engine_objects)
    assert result["found"] == [] and result["has_engine"] is False
    assert result["pid"] != os.getpid()
    local = await run_inferlet(engine, engine_objects, isolation="in-process")
    assert local["has_engine"] is False  # in process: no public way either (not a boundary)


async def test_another_inferlets_contexts_cannot_be_named(engine: Engine) -> None:
    handle = await run_inferlet(engine, make_context, name="first")
    for candidate in (handle, handle + 1, 0, -1):
        with pytest.raises(KeyError, match="no context"):
            await run_inferlet(engine, poke_context, {"handle": candidate}, name="second")


async def test_inferlets_of_the_same_name_get_separate_namespaces(engine: Engine) -> None:
    from tests.inferlet.test_examples import _open_and_generate, _save

    shared = Namespace("shared")
    results = await run_many(engine, [(_save, {}), (_save, {}), (_open_and_generate, {})])
    assert [r.ok for r in results] == [True, True, False]  # the third sees neither
    assert await run_inferlet(engine, _save, name="x", namespace=shared) == ["secret"]
    assert await run_inferlet(engine, _open_and_generate, name="x", namespace=shared)
    engine.drop_scope_exports(engine.scope("x", namespace=shared))
    assert engine.pool.num_used == 0 and len(engine.exports) == 0


# ---- quotas the engine enforces --------------------------------------------------------------
async def _max_pages_during(engine: Engine, coro: Any) -> tuple[int, BaseException | None]:
    """Run `coro`, sampling the pool's use; its peak and the error it ended with."""
    peak, error = 0, None

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, engine.pool.num_used)
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            await coro
        except BaseException as exc:
            error = exc
        tg.cancel_scope.cancel()
    return peak, error


@pytest.mark.parametrize("inferlet", [fork_bomb, export_hoard])
async def test_forks_and_exports_cannot_take_pages_past_the_quota(
    engine: Engine, inferlet: Any
) -> None:
    quota = Quota(max_pages=12)
    peak, error = await _max_pages_during(engine, run_inferlet(engine, inferlet, quota=quota))
    assert isinstance(error, QuotaExceededError) and "page quota of 12" in str(error)
    assert peak <= 12
    assert engine.pool.num_used == 0 and len(engine.exports) == 0


async def test_forks_cannot_pass_the_context_quota(engine: Engine) -> None:
    with pytest.raises(QuotaExceededError, match="context quota of 50"):
        await run_inferlet(engine, fork_bomb, quota=Quota(max_contexts=50))
    assert engine.pool.num_used == 0


@pytest.mark.parametrize("inferlet", [sleep_blocking, spin, swallow_cancellation])
async def test_the_wall_time_quota_holds_whatever_the_inferlet_does(
    engine: Engine, inferlet: Any
) -> None:
    start = time.monotonic()
    with anyio.fail_after(60), pytest.raises(QuotaExceededError, match="wall-time quota of 1 s"):
        await run_inferlet(engine, inferlet, quota=Quota(max_seconds=1))
    assert time.monotonic() - start < 10
    assert await run_inferlet(engine, quick)  # the engine goes on


async def test_what_the_inferlet_started_dies_with_it(engine: Engine, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    with pytest.raises(QuotaExceededError):
        await run_inferlet(
            engine,
            start_a_sleeper_and_block,
            {"pid_file": str(pid_file)},
            quota=Quota(max_seconds=2),
        )
    pid = int(pid_file.read_text())
    await anyio.sleep(0.2)
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()  # gone, or dead unreaped


# ---- the protocol ----------------------------------------------------------------------------
def _raw_frame(header: bytes) -> bytes:
    body = len(header).to_bytes(4, "big") + header
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ((1 << 31).to_bytes(4, "big"), "a message of 2147483648 bytes"),
        ((8).to_bytes(4, "big") + b"\xff" * 8, "broke the protocol"),
        (encode({"no": "op"}), "a message without op"),
        (encode({"op": "state"}), "a request without id"),
        (_raw_frame(b'{"id":1,"op":"x","v":{"$tensor":99,"dtype":"float32","shape":[9]}}'), "past"),
    ],
)
async def test_a_process_that_breaks_the_protocol_is_ended(
    engine: Engine, frame: bytes, message: str
) -> None:
    with anyio.fail_after(60), pytest.raises(InferletError, match=message):
        await run_inferlet(engine, send_raw, {"frame": frame})
    assert engine.pool.num_used == 0
    assert await run_inferlet(engine, quick)


async def test_bad_requests_get_errors_and_the_session_goes_on(engine: Engine) -> None:
    errors = await run_inferlet(engine, unknown_requests)
    assert errors == ["ValueError", "KeyError", "KeyError", "ValueError", "KeyError"]


# ---- the sandbox -----------------------------------------------------------------------------
async def test_memory_is_limited(engine: Engine) -> None:
    sandbox = Sandbox(max_memory_bytes=3 << 30)
    assert await run_inferlet(engine, allocate, {"mb": 64}, sandbox=sandbox) == 64 << 20
    with pytest.raises(MemoryError):
        await run_inferlet(engine, allocate, {"mb": 4096}, sandbox=sandbox)


async def test_cpu_time_is_limited(engine: Engine) -> None:
    with anyio.fail_after(60), pytest.raises(InferletKilledError, match="CPU-time limit is 1 s"):
        await run_inferlet(engine, spin, sandbox=Sandbox(max_cpu_seconds=1))


async def test_open_files_are_limited(engine: Engine) -> None:
    assert await run_inferlet(engine, open_files, {"n": 10}) == 10
    with pytest.raises(OSError, match="Too many open files"):
        await run_inferlet(engine, open_files, {"n": 100})


def _nobody_can_run_python() -> bool:
    return os.geteuid() == 0 and os.access(sys.executable, os.X_OK)


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
async def test_the_inferlet_can_run_as_an_unprivileged_user(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    folder = Path(tmp_path_factory.mktemp("public"))
    folder.chmod(0o755)
    for parent in folder.parents:
        if parent == Path("/tmp") or not str(parent).startswith("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    inferlet = folder / "whoami.py"
    inferlet.write_text(
        "import os\n\n\nasync def main(runtime, secret):\n"
        "    try:\n        open(secret).read()\n        readable = True\n"
        "    except PermissionError:\n        readable = False\n"
        "    return {'uid': os.getuid(), 'groups': os.getgroups(), 'read': readable}\n"
    )
    inferlet.chmod(0o644)
    secret = folder / "secret.txt"
    secret.write_text("root only")
    secret.chmod(0o600)
    result = await run_inferlet(
        engine, inferlet, {"secret": str(secret)}, sandbox=Sandbox(user="nobody")
    )
    assert result == {"uid": nobody.pw_uid, "groups": [], "read": False}
    assert (await run_inferlet(engine, inferlet, {"secret": str(secret)}))["read"] is True


@pytest.fixture
def http_port() -> Any:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


async def test_the_inferlet_can_be_kept_off_the_network(engine: Engine, http_port: int) -> None:
    reached = await run_inferlet(engine, connect, {"port": http_port})
    assert reached.startswith("HTTP/1.0 200")  # with the network (the default) it can connect
    try:
        cut = await run_inferlet(
            engine, connect, {"port": http_port}, sandbox=Sandbox(network=False)
        )
    except InferletError as exc:  # this machine cannot make network namespaces
        pytest.skip(f"no network namespaces here: {exc}")
    assert cut.startswith("refused")


async def environment(runtime: Runtime) -> dict[str, list[str]]:
    initial = Path("/proc/self/environ").read_bytes().split(b"\0")
    return {
        "os": sorted(os.environ),
        "proc": sorted(item.split(b"=")[0].decode() for item in initial if item),
    }


async def test_the_engines_environment_stays_with_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asynclm.inferlet.spawner import ENVIRONMENT_KEPT

    monkeypatch.setenv("ASYNCLM_TEST_SECRET", "api-key")
    allowed = {*ENVIRONMENT_KEPT, "TOKENIZERS_PARALLELISM", "PYTHONNOUSERSITE"}
    seen = await run_inferlet(engine, environment)
    assert set(seen["os"]) <= allowed and set(seen["proc"]) <= allowed
    assert "HOME" in os.environ and "HOME" not in seen["proc"]  # the engine's own are not there


async def overfill(runtime: Runtime, n: int) -> str:
    ctx = runtime.context()
    ctx.append([5] * n)
    return "no error"


async def flood(runtime: Runtime) -> list[str]:
    root = runtime.context()
    root.append(list(range(10, 200)))
    await root.flush()
    forks = [root.fork() for _ in range(10)]
    outcomes: list[str] = []

    async def step(ctx: Any) -> None:
        try:
            await ctx.forward(list(range(300, 364)))
            outcomes.append("ok")
        except RuntimeError as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tg:
        for ctx in forks:
            tg.start_soon(step, ctx)
    return outcomes


async def test_an_inferlets_context_holds_at_most_the_window(engine: Engine) -> None:
    window = engine.config.max_position
    assert await run_inferlet(engine, overfill, {"n": window}) == "no error"
    with pytest.raises(ValueError, match=f"at most {window} tokens"):
        await run_inferlet(engine, overfill, {"n": window + 1})


async def test_requests_in_flight_are_bounded(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asynclm.inferlet.host as host

    monkeypatch.setattr(host, "MAX_IN_FLIGHT", 2)
    outcomes = await run_inferlet(engine, flood)
    refused = [o for o in outcomes if "more than 2 requests" in o]
    assert refused and outcomes.count("ok") >= 2 and len(outcomes) == 10
