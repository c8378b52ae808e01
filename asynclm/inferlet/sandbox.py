"""What an out-of-process inferlet's process may do: resource limits, user, network.

The limits are applied in the child right after it is forked, before any of the inferlet's
code runs: address space, CPU time, open files, file size, processes (`resource.setrlimit`),
no core dumps, a session of its own (so the engine can kill it with everything it started),
`PR_SET_NO_NEW_PRIVS` (no privileges gained through set-uid programs) and death with its
parent. Optionally it leaves the network (a new, empty network namespace: needs root or
unprivileged user namespaces) and runs as another, unprivileged user (needs root).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import resource
import signal
from dataclasses import dataclass

__all__ = ["DEFAULT_SANDBOX", "Sandbox", "SandboxError"]

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


class SandboxError(RuntimeError):
    """The sandbox could not be set up as asked (e.g. another user without root)."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """Limits of an inferlet's process (None: no limit).

    Attributes:
        max_memory_bytes: Address space (`RLIMIT_AS`); past it allocations fail with
            `MemoryError`. The process starts at roughly 1-2 GiB (Python with torch loaded).
        max_cpu_seconds: CPU time (`RLIMIT_CPU`); past it the process is killed.
        max_open_files: Open file descriptors (`RLIMIT_NOFILE`).
        max_file_bytes: Size of any file it writes (`RLIMIT_FSIZE`).
        max_processes: Processes and threads of its user (`RLIMIT_NPROC`); counts every
            process of that user, so meant for use with `user`. Root ignores it.
        user: Run as this user (name or uid), with its primary group and no others; the
            engine must run as root. The inferlet's file and the Python installation must be
            readable by that user for modules not already loaded.
        network: False puts the process in an empty network namespace (no interfaces but a
            down loopback): no network at all. Needs root or unprivileged user namespaces.
    """

    max_memory_bytes: int | None = 4 << 30
    max_cpu_seconds: int | None = None
    max_open_files: int | None = 64
    max_file_bytes: int | None = None
    max_processes: int | None = None
    user: str | int | None = None
    network: bool = True

    def __post_init__(self) -> None:
        for name in (
            "max_memory_bytes",
            "max_cpu_seconds",
            "max_open_files",
            "max_file_bytes",
            "max_processes",
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")

    def check(self) -> None:
        """Raise `SandboxError` for what this process cannot grant (before forking)."""
        if self.user is not None:
            _user_ids(self.user)
            if os.geteuid() != 0:
                raise SandboxError("running an inferlet as another user needs the engine as root")

    def as_data(self) -> dict[str, object]:
        """The settings as plain data (sent to the process that forks the inferlet)."""
        return {
            "max_memory_bytes": self.max_memory_bytes,
            "max_cpu_seconds": self.max_cpu_seconds,
            "max_open_files": self.max_open_files,
            "max_file_bytes": self.max_file_bytes,
            "max_processes": self.max_processes,
            "user": self.user,
            "network": self.network,
        }

    @classmethod
    def from_data(cls, data: dict[str, object]) -> Sandbox:
        return cls(**data)  # type: ignore[arg-type]


DEFAULT_SANDBOX = Sandbox()


def enter_sandbox(sandbox: Sandbox) -> None:
    """Confine the calling process (a freshly forked inferlet) as `sandbox` says; final."""
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if not sandbox.network:
        _leave_network()
    if sandbox.user is not None:
        _become(sandbox.user)
    _set_limits(sandbox)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def _set_limits(sandbox: Sandbox) -> None:
    limits = [
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_AS, sandbox.max_memory_bytes),
        (resource.RLIMIT_NOFILE, sandbox.max_open_files),
        (resource.RLIMIT_FSIZE, sandbox.max_file_bytes),
        (resource.RLIMIT_NPROC, sandbox.max_processes),
    ]
    for which, value in limits:
        if value is not None:
            resource.setrlimit(which, (value, value))
    if sandbox.max_cpu_seconds is not None:  # SIGXCPU at the limit, SIGKILL a second later
        seconds = sandbox.max_cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


def _user_ids(user: str | int) -> tuple[int, int]:
    try:
        entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        raise SandboxError(f"no user {user!r}") from None
    return entry.pw_uid, entry.pw_gid


def _become(user: str | int) -> None:
    uid, gid = _user_ids(user)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SandboxError(f"could not become user {user!r}")


def _leave_network() -> None:
    libc = _libc()
    if libc.unshare(_CLONE_NEWNET) == 0:
        return
    if os.geteuid() != 0 and libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return
    raise SandboxError(
        f"cannot leave the network: unshare failed ({os.strerror(ctypes.get_errno())})"
    )


def _prctl(option: int, value: int) -> None:
    if _libc().prctl(option, value, 0, 0, 0) != 0:
        raise SandboxError(f"prctl({option}) failed: {os.strerror(ctypes.get_errno())}")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
