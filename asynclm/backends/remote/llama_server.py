"""Start llama-cpp-python's OpenAI-compatible server on loopback (tests and benchmarks).

llama-cpp-python has no prebuilt CPU wheel: it compiles from source (10-15 minutes on 2 cores;
`make install-llama-cpp`). `missing_server_modules()` says what is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


def missing_server_modules() -> list[str]:
    """What `python -m llama_cpp.server` needs and this environment lacks."""
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SKIP_REASON = (
    "llama-cpp-python with its server extras is not installed (it compiles from source for "
    "10-15 minutes: `make install-llama-cpp`, then `make test-server`); missing: "
)


@contextmanager
def llama_cpp_server(
    model: Path, *, n_ctx: int = 4096, n_threads: int | None = None, timeout: float = 180.0
) -> Iterator[str]:
    """Start the server on a free loopback port; yields its `openai:` spec; stops it after.

    Args:
        model: the GGUF file.
        n_ctx: context window of its one sequence.
        n_threads: CPU threads (default: all cores).
        timeout: seconds to wait until it answers.

    Raises:
        RuntimeError: the server exited or did not answer in time (with its log's tail).
    """
    missing = missing_server_modules()
    if missing:
        raise RuntimeError(SKIP_REASON + ", ".join(missing))
    port = free_port()
    log = model.with_suffix(f".server{port}.log")
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(n_threads or os.cpu_count() or 2),
        "--verbose", "true",
    ]  # fmt: skip
    # OpenMP threads that spin while they wait collapse on a shared machine (measured here:
    # 5-10x slower prefill and decode with 2 busy cores); passive waiting costs nothing alone.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(process, port, timeout, log)
        yield f"openai:http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen, port: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited ({process.returncode}): {_tail(log)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"llama_cpp.server not ready after {timeout:g} s: {_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
