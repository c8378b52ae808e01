"""Inferlets: programs that drive the engine through the Context API.

An inferlet is a Python file defining `async def main(runtime, **args)`. It runs in its own
scope: it reaches only the contexts it creates and the exports it made or was given; quotas on
KV pages, processed tokens and wall time end it with a clear error; its failure never disturbs
other inferlets running beside it.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import itertools
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from asynclm.engine.context import Context
from asynclm.engine.engine import Engine
from asynclm.engine.grammar import Grammar
from asynclm.engine.sampling import Sampler
from asynclm.engine.scope import Quota, QuotaExceededError, Scope
from asynclm.engine.tokenizer import Tokenizer

if sys.version_info < (3, 11):  # pragma: no cover - depends on the interpreter
    from exceptiongroup import BaseExceptionGroup

InferletMain = Callable[..., Awaitable[Any]]
_names = itertools.count(1)


class InferletError(RuntimeError):
    """An inferlet could not be loaded or started."""


class Runtime:
    """The handle an inferlet's `main` receives. It does not expose the engine itself."""

    def __init__(self, engine: Engine, scope: Scope) -> None:
        self._engine = engine
        self._scope = scope

    @property
    def name(self) -> str:
        return self._scope.name

    @property
    def tokenizer(self) -> Tokenizer:
        return self._engine.tokenizer

    @property
    def model_name(self) -> str:
        return self._engine.name

    def context(self) -> Context:
        """A new empty context owned by this inferlet."""
        return self._engine.context(self._scope)

    def open(self, name: str) -> Context:
        """A context starting from an export this inferlet made or was given."""
        return Context.open(self._engine, name, self._scope)

    def exports(self) -> list[str]:
        return self._engine.export_names(self._scope)

    def drop_export(self, name: str) -> None:
        self._engine.drop_export(name, self._scope)

    def grammar(self, **kwargs: Any) -> Grammar:
        """Compile a grammar (`ebnf=`, `json_schema=` or `regex=`) for `generate(constrain=)`."""
        return self._engine.grammar(**kwargs)

    @staticmethod
    def sampler(**kwargs: Any) -> Sampler:
        return Sampler(**kwargs)

    @property
    def tokens_used(self) -> int:
        return self._scope.tokens_used

    @property
    def pages_in_use(self) -> int:
        return self._scope.pages_in_use


@dataclass(frozen=True, slots=True)
class InferletResult:
    name: str
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


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
    main = getattr(module, "main", None)
    if main is None or not inspect.iscoroutinefunction(main):
        raise InferletError(f"{source} must define `async def main(runtime, **args)`")
    return main


async def run_inferlet(
    engine: Engine,
    main: InferletMain | str | Path,
    args: Mapping[str, Any] | None = None,
    *,
    quota: Quota | None = None,
    shared: Iterable[str] = (),
    name: str | None = None,
    keep_exports: bool = False,
) -> Any:
    """Run one inferlet to completion in its own scope; its pages are freed when it ends.

    Raises whatever the inferlet raised, or `QuotaExceededError` when it ran out of pages,
    tokens or time.
    """
    if not callable(main):
        main = load_inferlet(main)
    quota = quota or Quota()
    scope = engine.scope(name or f"inferlet-{next(_names)}", quota, shared)
    runtime = Runtime(engine, scope)
    try:
        if quota.max_seconds is None:
            return await main(runtime, **dict(args or {}))
        try:
            with anyio.fail_after(quota.max_seconds):
                return await main(runtime, **dict(args or {}))
        except TimeoutError:
            raise QuotaExceededError(
                f"inferlet {scope.name!r}: wall-time quota of {quota.max_seconds:g} s exceeded"
            ) from None
    except BaseExceptionGroup as group:  # a quota hit inside the inferlet's own task group
        quota_errors = group.subgroup(QuotaExceededError)
        if (
            quota_errors is not None
            and quota_errors.exceptions
            and group.subgroup(
                lambda e: not isinstance(e, (QuotaExceededError, anyio.get_cancelled_exc_class()))
            )
            is None
        ):
            raise _first_leaf(quota_errors) from group
        raise
    finally:
        _clean_up(engine, scope, keep_exports)


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _clean_up(engine: Engine, scope: Scope, keep_exports: bool) -> None:
    scope.release_all(engine.pool)
    if not keep_exports:
        engine.drop_scope_exports(scope)


async def run_many(
    engine: Engine,
    jobs: Iterable[tuple[InferletMain | str | Path, Mapping[str, Any]]],
    *,
    quota: Quota | None = None,
) -> list[InferletResult]:
    """Run inferlets side by side; each one's failure is reported, never propagated."""
    jobs = list(jobs)
    results: list[InferletResult | None] = [None] * len(jobs)

    async def one(i: int, main: InferletMain | str | Path, args: Mapping[str, Any]) -> None:
        name = f"inferlet-{next(_names)}"
        try:
            value = await run_inferlet(engine, main, args, quota=quota, name=name)
            results[i] = InferletResult(name, value=value)
        except Exception as e:  # isolation: one inferlet's failure stays its own
            results[i] = InferletResult(name, error=e)

    async with anyio.create_task_group() as tg:
        for i, (main, args) in enumerate(jobs):
            tg.start_soon(one, i, main, args)
    return [r for r in results if r is not None]


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
