"""Running inferlets: one (`run_inferlet`) or several side by side (`run_many`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from asynclm.engine.engine import Engine
from asynclm.engine.scope import Namespace, Quota
from asynclm.inferlet.loading import InferletMain, entry_point, load_inferlet
from asynclm.inferlet.local import run_in_process
from asynclm.inferlet.process import run_in_subprocess
from asynclm.inferlet.sandbox import DEFAULT_SANDBOX, Sandbox

__all__ = ["InferletResult", "Isolation", "run_inferlet", "run_many"]

Isolation = Literal["process", "in-process"]
_names = itertools.count(1)


@dataclass(frozen=True, slots=True)
class InferletResult:
    """How one inferlet of `run_many` ended: its value, or its error."""

    name: str
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def run_inferlet(
    engine: Engine,
    main: InferletMain | str | Path,
    args: Mapping[str, Any] | None = None,
    *,
    quota: Quota | None = None,
    shared: Iterable[str] = (),
    name: str | None = None,
    namespace: Namespace | None = None,
    isolation: Isolation = "process",
    sandbox: Sandbox | None = None,
) -> Any:
    """Run one inferlet to completion in a scope of its own; its pages are freed when it ends.

    Args:
        engine: The engine it drives.
        main: Its `async def main(runtime, **args)`, or the file or module defining it.
        args: Keyword arguments of `main` (JSON-like data, out of process).
        quota: Its limits (pages, tokens, contexts, wall time).
        shared: Root exports it may open (read-only).
        name: Its scope's name, for messages (default `inferlet-N`); never shared by name.
        namespace: Keep its exports in this namespace instead of a new one of its own; they
            then outlive it (whoever made the namespace drops them). Without it, its exports
            are dropped when it ends.
        isolation: "process" (default): a sandboxed process of its own, for any code;
            "in-process": on this event loop, for trusted code (see `asynclm.inferlet.local`).
        sandbox: The process's limits (default `Sandbox()`); out of process only.

    Raises:
        QuotaExceededError: It ran out of pages, tokens, contexts or time.
        InferletError: It could not be loaded or started (or, out of process, died or raised
            an error that cannot cross as itself).
        Exception: Whatever it raised.
    """
    if isolation not in ("process", "in-process"):
        raise ValueError(f"isolation must be 'process' or 'in-process', got {isolation!r}")
    scope = engine.scope(name or f"inferlet-{next(_names)}", quota, shared, namespace=namespace)
    try:
        if isolation == "process":
            entry = entry_point(main)
            return await run_in_subprocess(
                engine, entry, args or {}, scope, sandbox or DEFAULT_SANDBOX
            )
        function = main if callable(main) else load_inferlet(main)
        return await run_in_process(engine, function, args or {}, scope)
    finally:
        scope.release_all(engine.pool)
        if namespace is None:
            engine.drop_scope_exports(scope)


async def run_many(
    engine: Engine,
    jobs: Iterable[tuple[InferletMain | str | Path, Mapping[str, Any]]],
    *,
    quota: Quota | None = None,
    isolation: Isolation = "process",
    sandbox: Sandbox | None = None,
) -> list[InferletResult]:
    """Run inferlets side by side; each one's failure is reported, never propagated."""
    jobs = list(jobs)
    results: list[InferletResult | None] = [None] * len(jobs)

    async def one(i: int, main: InferletMain | str | Path, args: Mapping[str, Any]) -> None:
        name = f"inferlet-{next(_names)}"
        try:
            value = await run_inferlet(
                engine, main, args, quota=quota, name=name, isolation=isolation, sandbox=sandbox
            )
            results[i] = InferletResult(name, value=value)
        except Exception as e:  # isolation: one inferlet's failure stays its own
            results[i] = InferletResult(name, error=e)

    async with anyio.create_task_group() as tg:
        for i, (main, args) in enumerate(jobs):
            tg.start_soon(one, i, main, args)
    return [r for r in results if r is not None]
