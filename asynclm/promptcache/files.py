"""Module K/V files of the Prompt Cache store: one safetensors file per entry.

A file holds a module's own tokens, positions and K/V, with metadata (format version, model
fingerprint, KV dtype, module key, parent key). It is named after a hash of the format version,
the fingerprint, the dtype and the module key; the module key hashes the module's tokens and
positions, so a changed text or model never reads a stale file: it looks for another name. Files
are written to a temporary name and renamed (a crash never leaves half a file), and checked
again when read.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT_VERSION = "1"
_SUFFIX = ".safetensors"


@dataclass(frozen=True, slots=True)
class ModuleFiles:
    """The module K/V files of one model (fingerprint and KV dtype) in a folder."""

    folder: Path
    fingerprint: str
    dtype: str

    def path(self, key: str) -> Path:
        """The file of module `key`."""
        h = hashlib.blake2b(digest_size=20, person=b"pc-store")
        for part in (FORMAT_VERSION, self.fingerprint, self.dtype, key):
            h.update(part.encode() + b"\x00")
        return self.folder / (h.hexdigest() + _SUFFIX)

    def write(
        self,
        key: str,
        parent: str | None,
        tokens: Sequence[int],
        positions: Sequence[int],
        kv: torch.Tensor,
    ) -> None:
        """Write a module's file atomically (OSError when the disk refuses)."""
        tensors = {
            "tokens": torch.tensor(tokens, dtype=torch.int64),
            "positions": torch.tensor(positions, dtype=torch.int64),
            "kv": kv.contiguous(),
        }
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            save_file(tensors, str(tmp), metadata=self._meta(key, parent))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def read(
        self,
        key: str,
        parent: str | None,
        tokens: Sequence[int],
        positions: Sequence[int],
        shape: tuple[int, ...],
    ) -> torch.Tensor:
        """The K/V in module `key`'s file; ValueError (or the reader's error) if it does not fit.

        Args:
            key: The module key.
            parent: The key of the entry the module extends, as the file must record it.
            tokens: The module's own tokens, checked against the file.
            positions: Their positions, checked against the file.
            shape: The shape its K/V must have.
        """
        with safe_open(str(self.path(key)), framework="pt") as f:
            meta = f.metadata() or {}
            saved = {name: f.get_tensor(name) for name in ("tokens", "positions", "kv")}
        for field, value in self._meta(key, parent).items():
            if meta.get(field) != value:
                raise ValueError(f"{field} is {meta.get(field)!r}, expected {value!r}")
        same = saved["tokens"].tolist() == list(tokens)
        if not same or saved["positions"].tolist() != list(positions):
            raise ValueError("its tokens or positions differ from the module's")
        if tuple(saved["kv"].shape) != shape:
            raise ValueError(f"K/V of shape {tuple(saved['kv'].shape)}, expected {shape}")
        return saved["kv"]

    def _meta(self, key: str, parent: str | None) -> dict[str, str]:
        return {
            "format": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "dtype": self.dtype,
            "key": key,
            "parent": parent or "",
        }
