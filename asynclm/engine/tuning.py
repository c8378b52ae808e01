"""Kernel choices by measurement at load, cached per machine.

Each kind of linear layer (a "site": the q/k/v projection of every block, the output layer...)
is timed with every kernel the weight policy allows (`asynclm.engine.weights`), at a few batch
sizes, on the model's own weights. A timing sweeps the site's weights across layers, so the
weights stream from memory as they do when decoding (one weight alone stays in the caches and
says nothing about decode). The fastest kernel per batch size becomes the site's plan.

Timings are cached in `cache_root()/tuning/<cpu key>.json`, keyed by the site's shape, its
candidates and the thread count: a later load with the same shapes on this kind of machine (same
CPU model and flags, same torch) reads them back instead of measuring. `asynclm info` prints
them; `retune=True` (or `asynclm info --retune`) measures again.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asynclm.engine.cpu import CpuInfo, cpu_info
from asynclm.engine.kernels.formats import BlockWeight
from asynclm.engine.kernels.linear import FP32_KERNELS, LinearKernel, make_kernel
from asynclm.engine.kernels.lowrank import LowRank
from asynclm.engine.kernels.native import NativeStatus, build_key, native_status
from asynclm.engine.kernels.plan import BUCKETS, Plan, choose_plan
from asynclm.engine.model import Linear
from asynclm.engine.paths import cache_root
from asynclm.engine.weights import WeightPolicy

_SWEEP_BYTES = 48 << 20  # a timing at few rows streams at least this much (beyond the caches)
_MAX_FLOPS = 2e9  # larger batches than this per call are not measured (the last winner holds)
_PRUNE = 3.0  # a kernel this much slower than the best at one size is dropped for larger ones
_REPS = 3  # sweeps per kernel and batch size (2 when one call takes over _SLOW_MS)
_SLOW_MS = 10.0
_LAYER = re.compile(r"^layers\.\d+\.")
_VERSION = 3  # of the measuring method: older entries are measured again


@dataclass(frozen=True, slots=True)
class SiteReport:
    """What was measured for one site and what it runs.

    Attributes:
        site: e.g. `attention.wqkv` (every block's) or `output`.
        shape: `(out, in)` of its weight.
        layers: How many layers share the site.
        block: The block format its weights are kept in (`q4_1`...; `q4_1+lora` for an exact
            base with an unmerged adapter), or None.
        exact: Whether that block format reproduces the weights bit for bit.
        plan: The fastest kernel per batch size.
        timings: Batch size (rows) -> kernel -> milliseconds per call.
        cached: Read from the cache rather than measured now.
    """

    site: str
    shape: tuple[int, int]
    layers: int
    block: str | None
    exact: bool
    plan: Plan
    timings: dict[int, dict[str, float]]
    cached: bool


@dataclass(frozen=True, slots=True)
class KernelReport:
    """The kernel choices of one model on this machine."""

    cpu: CpuInfo
    threads: int
    weights: str
    native: NativeStatus | None
    sites: tuple[SiteReport, ...] = ()
    seconds: float = 0.0  # spent measuring (0 when everything came from the cache)
    notes: tuple[str, ...] = field(default=())

    def updated(self, other: KernelReport) -> KernelReport:
        """This report with the sites `other` measured since replaced by its reports."""
        fresh = {s.site: s for s in other.sites}
        sites = tuple(fresh.pop(s.site, s) for s in self.sites) + tuple(fresh.values())
        return replace(self, sites=sites, native=other.native)

    def as_dict(self) -> dict[str, Any]:
        """For JSON output (benchmarks, `asynclm info --json`)."""
        return {
            "cpu": {
                "model": self.cpu.model,
                "flags": list(self.cpu.notable_flags),
                "key": self.cpu.key,
                "torch_isa": self.cpu.torch_isa,
            },
            "threads": self.threads,
            "weights": self.weights,
            "native": None if self.native is None else self.native.detail,
            "seconds": self.seconds,
            "sites": {
                s.site: {
                    "shape": list(s.shape),
                    "layers": s.layers,
                    "block": s.block,
                    "exact": s.exact,
                    "plan": [list(step) for step in s.plan],
                    "timings_ms": {str(k): v for k, v in s.timings.items()},
                    "cached": s.cached,
                }
                for s in self.sites
            },
        }


def plan_kernels(
    model: Any,
    policy: WeightPolicy,
    *,
    sites: Iterable[str] | None = None,
    use_cache: bool = True,
    retune: bool = False,
) -> KernelReport:
    """Measure (or read back) and install the fastest kernels of the linear layers of `model`.

    Args:
        model: a `Transformer` (anything with `linears()`).
        policy: the weight formats allowed.
        sites: only these sites (e.g. `("output",)` after the vocabulary grew); default all.
        use_cache: read and write the per-machine timings file.
        retune: measure even what the cache holds.
    """
    info, threads = cpu_info(), torch.get_num_threads()
    all_sites = _sites(model.linears())
    wanted = set(all_sites) if sites is None else set(sites)
    selected = {name: modules for name, modules in all_sites.items() if name in wanted}
    store = TimingStore.for_machine(use_cache)
    start, measured = time.perf_counter(), False
    reports = []
    for site, modules in selected.items():
        blocks = [policy.block_weight(m.weight) for m in modules]
        lowrank = _common_lowrank(modules)
        candidates = policy.candidates(_common_block(blocks), lowrank)
        kernels = _kernels(modules, blocks, candidates)
        key = _key(site, modules[0], candidates, threads, lowrank)
        timings = None if retune else store.get(key)
        cached = timings is not None
        if timings is None:
            if not measured:
                _announce()
                measured = True
            timings = _measure_site(modules[0], kernels)
            store.put(key, timings)
        plan = choose_plan(timings, preference=candidates)
        for module, by_name in zip(modules, _per_module(kernels), strict=True):
            module.use(_install(timings, plan, by_name))
        reports.append(_report(site, modules, blocks, plan, timings, cached))
    store.save()
    seconds = time.perf_counter() - start if measured else 0.0
    return KernelReport(info, threads, policy.spec, native_status(), tuple(reports), seconds)


def site_of(name: str) -> str:
    """`layers.12.attention.wqkv` -> `attention.wqkv` (every block's layer is one site)."""
    return _LAYER.sub("", name)


def _sites(linears: Iterable[tuple[str, Linear]]) -> dict[str, list[Linear]]:
    sites: dict[str, list[Linear]] = {}
    for name, module in linears:
        sites.setdefault(site_of(name), []).append(module)
    return sites


def _common_block(blocks: list[BlockWeight | None]) -> BlockWeight | None:
    """A block format every layer of the site has (the first one, as a sample), else None."""
    formats = {b.format if b is not None else None for b in blocks}
    return blocks[0] if len(formats) == 1 else None


def _common_lowrank(modules: list[Linear]) -> LowRank | None:
    """An unmerged adapter every layer of the site has, same base format (a sample), else None."""
    formats = {m.lowrank.base.format if m.lowrank is not None else None for m in modules}
    return modules[0].lowrank if len(formats) == 1 else None


def _kernels(
    modules: list[Linear], blocks: list[BlockWeight | None], names: tuple[str, ...]
) -> dict[str, list[LinearKernel]]:
    """Each candidate's kernel for every layer; a candidate some layer cannot run is dropped."""
    out: dict[str, list[LinearKernel]] = {}
    for name in names:
        built = [
            make_kernel(name, m.weight, m.bias, b, m.lowrank)
            for m, b in zip(modules, blocks, strict=True)
        ]
        if all(k is not None for k in built):
            out[name] = [k for k in built if k is not None]
    return out


def _per_module(kernels: dict[str, list[LinearKernel]]) -> list[dict[str, LinearKernel]]:
    count = len(next(iter(kernels.values())))
    return [{name: ks[i] for name, ks in kernels.items()} for i in range(count)]


def _install(
    timings: dict[int, dict[str, float]], plan: Plan, kernels: dict[str, LinearKernel]
) -> tuple[tuple[int, LinearKernel], ...]:
    """The plan as kernels; where a planned kernel is missing, the next fastest measured one."""
    out: list[tuple[int, LinearKernel]] = []
    for max_rows, name in plan:
        kernel = kernels.get(name)
        if kernel is None:
            bucket = min((b for b in timings if b >= max_rows), default=max(timings))
            ranked = sorted(timings[bucket], key=timings[bucket].__getitem__)
            kernel = next((kernels[n] for n in ranked if n in kernels), kernels.get("plain"))
        if kernel is not None:
            out.append((max_rows, kernel))
    return tuple(out)


def _measure_site(
    module: Linear, kernels: dict[str, list[LinearKernel]]
) -> dict[int, dict[str, float]]:
    """Milliseconds per call of the kernels at every batch size worth measuring.

    A block or half-precision kernel more than `_PRUNE` times slower than the best at one size
    is not measured at larger ones (a GEMV kernel losing at 16 rows does not win at 1024).
    """
    out_features, in_features = module.weight.shape
    available = len(next(iter(kernels.values())))
    timings: dict[int, dict[str, float]] = {}
    alive = dict(kernels)
    for rows in BUCKETS:
        if rows > 1 and 2.0 * rows * out_features * in_features > _MAX_FLOPS:
            break
        layers = _sweep_layers(rows, out_features * in_features * 4, available)
        row = _time_kernels(alive, torch.randn(rows, in_features), layers)
        timings[rows] = row
        best = min(row.values())
        alive = {n: ks for n, ks in alive.items() if n in FP32_KERNELS or row[n] <= _PRUNE * best}
    return timings


def _sweep_layers(rows: int, weight_bytes: int, available: int) -> int:
    """Layers per timing: enough to leave the caches at few rows, one at compute-bound sizes."""
    wanted = math.ceil(_SWEEP_BYTES / max(1, weight_bytes))
    return max(1, min(available, wanted if rows <= 16 else 1))


@torch.inference_mode()
def _time_kernels(
    kernels: dict[str, list[LinearKernel]], x: Tensor, layers: int
) -> dict[str, float]:
    """The fastest of a few sweeps per kernel (noise from other work only ever adds time)."""
    samples: dict[str, list[float]] = {name: [] for name in kernels}
    for rep in range(_REPS):
        for name, ks in kernels.items():  # interleaved: the machine's drift hits all alike
            if rep == _REPS - 1 and min(samples[name]) > _SLOW_MS:
                continue
            start = time.perf_counter()
            for kernel in ks[:layers]:
                kernel(x)
            samples[name].append((time.perf_counter() - start) / layers * 1e3)
    return {name: min(times) for name, times in samples.items()}


def _key(
    site: str,
    module: Linear,
    candidates: tuple[str, ...],
    threads: int,
    lowrank: LowRank | None = None,
) -> str:
    out, inp = module.weight.shape
    bias = "+bias" if module.bias is not None else ""
    rank = f"|rank={lowrank.rank}" if lowrank is not None else ""
    return f"v{_VERSION}|{site}|{out}x{inp}{bias}|{','.join(candidates)}{rank}|threads={threads}"


def _report(
    site: str,
    modules: list[Linear],
    blocks: list[BlockWeight | None],
    plan: Plan,
    timings: dict[int, dict[str, float]],
    cached: bool,
) -> SiteReport:
    block = _common_block(blocks)
    shape = (int(modules[0].weight.shape[0]), int(modules[0].weight.shape[1]))
    exact = block is not None and block.tail is None
    name = None if block is None else block.format
    lowrank = _common_lowrank(modules)
    if block is None and lowrank is not None:  # exact base + unmerged adapter
        name, exact = f"{lowrank.base.format}+lora", lowrank.base.tail is None
    return SiteReport(
        site,
        shape,
        len(modules),
        name,
        exact,
        plan,
        timings,
        cached,
    )


def _announce() -> None:
    print(
        "asynclm: measuring the kernels of this model on this machine (cached afterwards)...",
        file=sys.stderr,
        flush=True,
    )


class TimingStore:
    """The per-machine JSON file of timings (merged on save; a lost race re-measures later).

    Entries map a key to `{rows or threads: {name: ms}}`; `for_machine` opens this machine's.
    """

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.entries = self._read() if enabled else {}
        self.dirty = False

    @classmethod
    def for_machine(cls, enabled: bool = True) -> TimingStore:
        # timings hold for one build of the kernels: a rebuilt library is measured afresh
        name = f"{cpu_info().key}-{build_key()}.json"
        return cls(cache_root() / "tuning" / name, enabled)

    def get(self, key: str) -> dict[int, dict[str, float]] | None:
        entry = self.entries.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("timings"), dict):
            return None
        return {int(rows): dict(row) for rows, row in entry["timings"].items()}

    def put(self, key: str, timings: dict[int, dict[str, float]]) -> None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.entries[key] = {"timings": timings, "measured": time.time(), "loadavg": load}
        self.dirty = True

    def save(self) -> None:
        if not (self.enabled and self.dirty):
            return
        merged = {**self._read(), **self.entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
