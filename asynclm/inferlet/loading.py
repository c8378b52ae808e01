"""Finding an inferlet's `main`: from a file, a module, or a module-level function.

An out-of-process inferlet is named, not sent: the engine tells the inferlet's process which
file or module to load and which function to run, and the process loads it itself (after its
sandbox is in place). So a `main` passed as a function must be importable by its module and
name; a function defined inside another one (or in `__main__`) can run only in process.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from asynclm.inferlet.errors import InferletError

__all__ = ["InferletMain", "entry_point", "load_entry_point", "load_inferlet", "parse_cli_args"]

InferletMain = Callable[..., Awaitable[Any]]


def load_inferlet(source: str | Path) -> InferletMain:
    """The `main` coroutine function of an inferlet file (or `package.module` name)."""
    path = Path(source)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise InferletError(f"no inferlet file at {path}")
        spec = importlib.util.spec_from_file_location(f"asynclm_inferlet_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise InferletError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)
            raise
    else:
        try:
            module = importlib.import_module(str(source))
        except ModuleNotFoundError as e:
            raise InferletError(f"no inferlet file or module {source!r}") from e
    return _checked_main(getattr(module, "main", None), str(source))


def entry_point(main: InferletMain | str | Path) -> dict[str, str]:
    """How another process finds `main`: `{"file": path}`, or `{"module", "name"}`.

    Raises:
        InferletError: `main` is a function another process cannot import by its name.
    """
    if isinstance(main, (str, Path)):
        path = Path(main)
        if path.suffix == ".py" or path.exists():
            if not path.is_file():
                raise InferletError(f"no inferlet file at {path}")
            return {"file": str(path.resolve())}
        return {"module": str(main), "name": "main"}
    module, name = getattr(main, "__module__", None), getattr(main, "__qualname__", "")
    if not module or module == "__main__" or "<" in name or not name:
        raise InferletError(
            f"{main!r} cannot be found by another process: give its file, or define it at the "
            "top level of an importable module (or run it with isolation='in-process')"
        )
    return {"module": module, "name": name}


def load_entry_point(entry: dict[str, str]) -> InferletMain:
    """The `main` an `entry_point` describes (imports the module, runs the file)."""
    if "file" in entry:
        return load_inferlet(entry["file"])
    module = importlib.import_module(entry["module"])
    target: Any = module
    for part in entry.get("name", "main").split("."):
        target = getattr(target, part, None)
    return _checked_main(target, f"{entry['module']}:{entry.get('name', 'main')}")


def _checked_main(main: object, source: str) -> InferletMain:
    if main is None or not inspect.iscoroutinefunction(main):
        raise InferletError(f"{source} must define `async def main(runtime, **args)`")
    return main  # type: ignore[return-value]


def parse_cli_args(pairs: Iterable[str]) -> dict[str, Any]:
    """`k=v` strings → kwargs; values are Python literals when they parse as one."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--arg expects key=value with a Python identifier key, got {pair!r}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out
