"""In-process inferlets: `main` runs on the engine's own event loop (trusted code and tests).

The same scope as out of process: its own export namespace, the page, token and context
quotas (enforced by the engine's scope). What in-process cannot enforce: the wall-time quota
only cancels the inferlet at its next `await` (a blocking call, a CPU loop or code that swallows
cancellation keeps running), and the inferlet shares the engine's process, so nothing stops
Python code from reaching any object in it. Run untrusted code out of process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from asynclm.engine.context import Context
from asynclm.engine.engine import Engine
from asynclm.engine.grammar import Grammar
from asynclm.engine.sampling import Sampler
from asynclm.engine.scope import QuotaExceededError, Scope
from asynclm.engine.tokenizer import Tokenizer
from asynclm.inferlet.errors import unwrap_quota_group
from asynclm.inferlet.loading import InferletMain

__all__ = ["LocalRuntime", "run_in_process"]


class LocalRuntime:
    """The handle an in-process inferlet's `main` receives. It does not expose the engine."""

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


async def run_in_process(
    engine: Engine, main: InferletMain, args: Mapping[str, Any], scope: Scope
) -> Any:
    """Run `main` on this event loop in `scope`; quotas end it with `QuotaExceededError`."""
    runtime = LocalRuntime(engine, scope)
    seconds = scope.quota.max_seconds
    try:
        if seconds is None:
            return await main(runtime, **dict(args))
        with anyio.fail_after(seconds):
            return await main(runtime, **dict(args))
    except TimeoutError:
        raise QuotaExceededError(
            f"inferlet {scope.name!r}: wall-time quota of {seconds:g} s exceeded"
        ) from None
    except BaseException as error:  # a quota hit inside the inferlet's own task group
        plain = unwrap_quota_group(error)
        if plain is error:
            raise
        raise plain from error
