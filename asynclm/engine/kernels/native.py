"""The engine's C++ kernels: compiled on first use for this machine, cached, always optional.

The sources (`csrc/*.cpp`) are built once per machine with `-march=native` (so the compiler
emits the AVX2 / AVX-512 / NEON code this CPU runs) into `cache_root()/kernels/<key>`, the key
covering the sources, the CPU and torch. Later processes load the cached library in
milliseconds. Nothing is built at import: the first `Engine` on a CPU asks for them. Without a
compiler, after a failed build, or with `ASYNCLM_NATIVE=0`, the engine runs on torch's own
kernels (one log line says why); a failed build is remembered (`asynclm info --rebuild` retries).
The ops land in `torch.ops.asynclm`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from asynclm.engine.cpu import cpu_info
from asynclm.engine.paths import cache_root

SOURCES = ("quant.cpp", "fused.cpp", "attention.cpp")  # and the headers beside them
LIBRARY = "asynclm_kernels"
ENV_SWITCH = "ASYNCLM_NATIVE"  # "0": never build or load
# -fopenmp: without it every at::parallel_for of the kernels runs on one thread (the header
# falls back to a serial loop); the library then links the libgomp torch has loaded already.
_FLAGS = ("-O3", "-march=native", "-fopenmp")
_CSRC = Path(__file__).parent / "csrc"


@dataclass(frozen=True, slots=True)
class NativeStatus:
    """Whether the native kernels are loaded, from where, and how that went."""

    available: bool
    detail: str
    path: str | None = None


_lock = threading.Lock()
_status: NativeStatus | None = None


def native_status() -> NativeStatus | None:
    """The status of the last `load_native()` in this process (None before the first)."""
    return _status


def load_native(*, rebuild: bool = False) -> NativeStatus:
    """Load the native kernels, building them first if this machine has no cached build.

    Returns their status; `available` is False (with the reason in `detail`) when they cannot be
    had, and the caller falls back to torch. `rebuild` forgets a cached build or failure.
    """
    global _status
    with _lock:
        if _status is None or rebuild:
            _status = _load(rebuild)
        return _status


def build_dir() -> Path:
    """Where this machine's build of the current sources lives."""
    return cache_root() / "kernels" / build_key()


def _load(rebuild: bool) -> NativeStatus:
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return NativeStatus(False, f"disabled by {ENV_SWITCH}=0")
    folder = build_dir()
    library, failed = folder / f"{LIBRARY}.so", folder / "FAILED"
    if rebuild:
        shutil.rmtree(folder, ignore_errors=True)
    if library.exists():
        return _load_library(library, "loaded from the cache")
    if failed.exists():
        reason = failed.read_text().strip().splitlines()[-1:] or ["unknown error"]
        return NativeStatus(False, f"an earlier build failed ({reason[0]}); see {failed}")
    return _build(folder, library, failed)


def _load_library(library: Path, how: str) -> NativeStatus:
    try:
        torch.ops.load_library(str(library))
    except Exception as e:  # a broken or foreign library: torch's kernels instead
        return NativeStatus(False, f"{library} does not load: {e}")
    return NativeStatus(True, how, str(library))


def _build(folder: Path, library: Path, failed: Path) -> NativeStatus:
    """Compile in a private folder, then move the library into place atomically."""
    work = folder / f"build-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    print(
        "asynclm: compiling the native kernels for this CPU (once per machine, ~30 s)...",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    try:
        from torch.utils.cpp_extension import load

        _find_ninja()
        load(
            LIBRARY,
            [str(_CSRC / name) for name in SOURCES],
            extra_cflags=list(_FLAGS),
            extra_ldflags=["-fopenmp"],
            build_directory=str(work),
            is_python_module=False,
            verbose=False,
        )
    except Exception as e:  # any failure (no compiler, no ninja, a compile error) means torch
        failed.write_text(f"{type(e).__name__}: {e}\n")
        last = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        return NativeStatus(False, f"build failed ({last}); see {failed}")
    finally:
        built = work / f"{LIBRARY}.so"
        if built.exists():
            os.replace(built, library)
        shutil.rmtree(work, ignore_errors=True)
    return NativeStatus(True, f"built in {time.perf_counter() - start:.1f} s", str(library))


def _find_ninja() -> None:
    """Put the `ninja` of the Python package of that name on PATH if none is there (torch's
    extension builder calls `ninja` by name; a venv's bin folder is not on PATH unless active)."""
    if shutil.which("ninja"):
        return
    try:
        import ninja  # type: ignore[import-untyped]
    except ImportError:
        return  # the build then fails with torch's own message ("Ninja is required...")
    os.environ["PATH"] = os.pathsep.join((str(ninja.BIN_DIR), os.environ.get("PATH", "")))


@functools.lru_cache(maxsize=1)
def build_key() -> str:
    """What the kernels are built from (sources, flags, CPU, compiler), hashed: a build, and
    the timings taken with it, belong to one key."""
    h = hashlib.sha256()
    for path in sorted(_CSRC.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    h.update(" ".join(_FLAGS).encode())
    h.update(cpu_info().key.encode())
    h.update(_compiler_version().encode())
    return h.hexdigest()[:16]


def _compiler_version() -> str:
    compiler = os.environ.get("CXX") or shutil.which("c++") or "c++"
    try:
        done = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "no compiler"
    return done.stdout.splitlines()[0] if done.stdout else "unknown compiler"
