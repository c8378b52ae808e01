"""File tools confined to one directory: read_file, list_dir and (optionally) write_file.

Every path the model gives is relative to the root. Absolute paths, `..` components, NUL
bytes and paths that resolve outside the root through symlinks are refused with a clear error.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from asynclm.tooling import Tool, ToolError, tool

__all__ = ["MAX_LIST_ENTRIES", "PathNotAllowedError", "make_file_tools", "resolve_inside"]

MAX_LIST_ENTRIES = 1000


class PathNotAllowedError(ToolError, ValueError):
    """A path points outside the tools' root or is malformed."""


def resolve_inside(root: Path, path: str) -> Path:
    """Resolves a relative path inside `root`, following symlinks.

    Args:
        root: The resolved root directory.
        path: The path the model gave, relative to the root.

    Returns:
        The resolved path, guaranteed to lie inside the root.

    Raises:
        PathNotAllowedError: NUL byte, absolute path, `..`, or a symlink leading outside.
    """
    if not isinstance(path, str) or "\x00" in path:
        raise PathNotAllowedError("path must be a string without NUL bytes")
    candidate = Path(path)
    if candidate.is_absolute() or candidate.drive or path.startswith(("/", "\\")):
        raise PathNotAllowedError(f"{path!r}: absolute paths are not allowed; use a relative one")
    if ".." in candidate.parts or ".." in path.split("\\"):
        raise PathNotAllowedError(f"{path!r}: '..' is not allowed in paths")
    resolved = (root / candidate).resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise PathNotAllowedError(f"{path!r} leads outside the allowed directory (symlink)")
    return resolved


def make_file_tools(
    root: str | os.PathLike[str], *, max_bytes: int = 1_000_000, writable: bool = False
) -> list[Tool]:
    """File tools confined to `root`.

    Args:
        root: The directory the tools may see; it must exist.
        max_bytes: Largest file read_file returns and write_file writes.
        writable: Also give write_file.

    Returns:
        `[read_file, list_dir]`, plus `write_file` when writable.

    Raises:
        ValueError: `root` is not a directory or `max_bytes` is not positive.
    """
    base = Path(root).resolve()
    if not base.is_dir():
        raise ValueError(f"file tools root {str(root)!r} is not a directory")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    tools = [_read_file_tool(base, max_bytes), _list_dir_tool(base)]
    if writable:
        tools.append(_write_file_tool(base, max_bytes))
    return tools


def _read_file_tool(base: Path, max_bytes: int) -> Tool:
    @tool
    def read_file(path: str) -> str:
        """Reads a UTF-8 text file.

        Args:
            path: The file's path, relative to the working directory.
        """
        target = resolve_inside(base, path)
        if not target.is_file():
            raise ToolError(f"{path!r} is not a file")
        with target.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # never read more than the cap
        if len(data) > max_bytes:
            raise ToolError(f"{path!r} is larger than the {max_bytes}-byte limit")
        return data.decode("utf-8", errors="replace")

    return read_file


def _list_dir_tool(base: Path) -> Tool:
    @tool
    def list_dir(path: str = ".") -> list[str]:
        """Lists a directory; names of subdirectories end with "/".

        Args:
            path: The directory's path, relative to the working directory.
        """
        target = resolve_inside(base, path)
        if not target.is_dir():
            raise ToolError(f"{path!r} is not a directory")
        with os.scandir(target) as entries:
            names = sorted(
                entry.name + ("/" if entry.is_dir() else "")
                for entry in itertools.islice(entries, MAX_LIST_ENTRIES + 1)
            )
        if len(names) > MAX_LIST_ENTRIES:
            names = [*names[:MAX_LIST_ENTRIES], f"... (more than {MAX_LIST_ENTRIES} entries)"]
        return names

    return list_dir


def _write_file_tool(base: Path, max_bytes: int) -> Tool:
    @tool
    def write_file(path: str, content: str) -> str:
        """Writes a UTF-8 text file, replacing it if it exists and creating its directories.

        Args:
            path: The file's path, relative to the working directory.
            content: The text to write.
        """
        target = resolve_inside(base, path)
        if target == base or target.is_dir():
            raise ToolError(f"{path!r} is a directory")
        data = content.encode("utf-8")
        if len(data) > max_bytes:
            raise ToolError(f"content is larger than the {max_bytes}-byte limit")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return f"wrote {len(data)} bytes to {path}"

    return write_file
