"""Where trace files go."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["writable_path"]


def writable_path(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path whose folder exists.

    Raises:
        FileNotFoundError: If the folder does not exist (with a message that says so).
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: folder {folder} does not exist (create it first)"
        )
    return path
