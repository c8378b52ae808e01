"""Where the engine keeps files between runs: converted weights, native kernels, measurements."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$ASYNCLM_CACHE`, else `~/.cache/asynclm`."""
    return Path(os.environ.get("ASYNCLM_CACHE") or Path.home() / ".cache" / "asynclm")
