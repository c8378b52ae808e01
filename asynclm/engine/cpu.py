"""The CPU the engine runs on: model name, feature flags, cores, and a key for per-machine caches.

Kernel choices are made by measurement (`asynclm.engine.tuning`), never from these flags; the
flags name the machine (a cached measurement is only reused on the same kind of CPU with the same
torch) and are printed by `asynclm info`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

# Features worth printing: what decides which kernels can be fast (bf16, int8, wide vectors).
NOTABLE = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimd",
    "sve",
)


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """What identifies this machine's CPU.

    Attributes:
        model: The model name (`/proc/cpuinfo`'s "model name", else the platform's).
        vendor: e.g. `AuthenticAMD`, `GenuineIntel`.
        flags: Every feature flag the OS reports, sorted.
        logical_cores: CPUs the OS schedules on (all of them, not this process's affinity).
        physical_cores: Cores (torch's count, without SMT siblings).
        torch_version: The torch build whose kernels are measured.
        torch_isa: The vector ISA torch's own kernels were dispatched to (e.g. `AVX2`, `AVX512`).
    """

    model: str
    vendor: str
    flags: tuple[str, ...]
    logical_cores: int
    physical_cores: int
    torch_version: str
    torch_isa: str

    @property
    def key(self) -> str:
        """A short hash of everything a measurement on this machine depends on."""
        text = "|".join((self.model, ",".join(self.flags), self.torch_version, self.torch_isa))
        text += f"|{self.physical_cores}|{platform.machine()}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def notable_flags(self) -> tuple[str, ...]:
        """The flags of `NOTABLE` this CPU has, in that order."""
        return tuple(f for f in NOTABLE if f in self.flags)


def parse_cpuinfo(text: str) -> tuple[str, str, tuple[str, ...]]:
    """`(model, vendor, flags)` from the text of `/proc/cpuinfo` (first processor's entry).

    x86 lists `flags`, ARM `Features`; missing fields come back empty.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    flags = fields.get("flags") or fields.get("features") or ""
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu model") or ""
    vendor = fields.get("vendor_id") or fields.get("cpu implementer") or ""
    return model, vendor, tuple(sorted(set(flags.split())))


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    import torch

    model, vendor = "", ""
    flags: tuple[str, ...] = ()
    path = Path("/proc/cpuinfo")
    if path.exists():
        model, vendor, flags = parse_cpuinfo(path.read_text(errors="replace"))
    caps = _torch_capabilities()
    if not flags:  # not Linux: torch's own feature probe
        flags = tuple(sorted(name for name, on in caps.items() if on is True))
    return CpuInfo(
        model=model or str(caps.get("cpu_name") or platform.processor() or platform.machine()),
        vendor=vendor,
        flags=flags,
        logical_cores=os.cpu_count() or 1,
        physical_cores=_int(caps.get("num_physical_cores")) or torch.get_num_threads(),
        torch_version=torch.__version__,
        torch_isa=torch.backends.cpu.get_cpu_capability(),
    )


def _torch_capabilities() -> dict[str, object]:
    import torch

    probe = getattr(torch.cpu, "get_capabilities", None)
    try:
        return dict(probe()) if probe is not None else {}
    except RuntimeError:  # pragma: no cover - depends on the platform
        return {}


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
