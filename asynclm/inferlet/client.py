"""The Context API inside an out-of-process inferlet: every call a request to the engine.

`RemoteRuntime`, `RemoteContext` and `RemoteGeneration` have the methods of `LocalRuntime`,
`Context` and `Generation`; they hold handles (numbers the engine gave this inferlet), never an
engine object. Text is encoded here, with the model's tokenizer (a copy in this process), and
sent as token ids; the engine checks everything again.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

from torch import Tensor

from asynclm.engine.context import ContextClosedError
from asynclm.engine.generation import GenerationResult, Step
from asynclm.engine.sampling import Sampler
from asynclm.engine.tokenizer import Tokenizer
from asynclm.engine.turns import ChatTurns
from asynclm.inferlet.channel import Channel

__all__ = ["RemoteContext", "RemoteGeneration", "RemoteGrammar", "RemoteRuntime"]


class RemoteGrammar:
    """A grammar compiled by the engine, for `generate(constrain=...)`."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __repr__(self) -> str:
        return f"RemoteGrammar({self.handle})"


class RemoteRuntime:
    """What an out-of-process inferlet's `main` receives (see `LocalRuntime`)."""

    def __init__(self, channel: Channel, tokenizer: Tokenizer, info: dict[str, Any]) -> None:
        self._channel = channel
        self._tokenizer = tokenizer
        self._info = info

    @property
    def name(self) -> str:
        return str(self._info["name"])

    @property
    def model_name(self) -> str:
        return str(self._info["model_name"])

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def context(self) -> RemoteContext:
        """A new empty context owned by this inferlet."""
        return RemoteContext(self._channel, self._tokenizer, self._channel.call("context"))

    def open(self, name: str) -> RemoteContext:
        """A context starting from an export this inferlet made or was given."""
        handle = self._channel.call("open", name=name)
        return RemoteContext(self._channel, self._tokenizer, handle)

    def exports(self) -> list[str]:
        return list(self._channel.call("exports"))

    def drop_export(self, name: str) -> None:
        self._channel.call("drop_export", name=name)

    def grammar(self, **kwargs: Any) -> RemoteGrammar:
        """Compile a grammar (`ebnf=`, `json_schema=` or `regex=`) for `generate(constrain=)`."""
        return RemoteGrammar(self._channel.call("grammar", options=kwargs))

    @staticmethod
    def sampler(**kwargs: Any) -> Sampler:
        return Sampler(**kwargs)

    @property
    def tokens_used(self) -> int:
        return int(self._channel.call("usage")["tokens_used"])

    @property
    def pages_in_use(self) -> int:
        return int(self._channel.call("usage")["pages_in_use"])


class RemoteContext(ChatTurns):
    """A context on the engine, seen from the inferlet's process (see `Context`)."""

    def __init__(self, channel: Channel, tokenizer: Tokenizer, handle: int) -> None:
        self._channel = channel
        self._tokenizer = tokenizer
        self._handle = handle
        self._released = False
        # Dropped without release (as a local context is), its pages go back all the same.
        self._finalizer = weakref.finalize(self, channel.forget, handle)

    # ---- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        self._check_open()
        return dict(self._call("state"))

    @property
    def id(self) -> int:
        return self._handle

    @property
    def tokens(self) -> list[int]:
        return list(self._state()["tokens"])

    @property
    def positions(self) -> list[int]:
        return list(self._state()["positions"])

    @property
    def num_tokens(self) -> int:
        return len(self._state()["tokens"])

    @property
    def num_cached(self) -> int:
        return int(self._state()["num_cached"])

    @property
    def num_pages(self) -> int:
        return int(self._state()["num_pages"])

    @property
    def next_position(self) -> int:
        return int(self._state()["next_position"])

    @property
    def seed(self) -> int:
        return int(self._state()["seed"])

    @property
    def text(self) -> str:
        return self._tokenizer.decode(self.tokens)

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def is_released(self) -> bool:
        return self._released

    # ---- filling -----------------------------------------------------------------------------
    def append(
        self,
        content: str | Sequence[int],
        positions: Sequence[int] | None = None,
        *,
        special: bool = False,
    ) -> None:
        """Queue text (plain unless `special`) or token ids (see `Context.append`)."""
        self._check_open()
        tokens = (
            self._tokenizer.encode(content, special=special)
            if isinstance(content, str)
            else _plain_list(content)
        )
        self._call("append", tokens=tokens, positions=_plain_list(positions))

    async def flush(self) -> None:
        """Compute the K/V of everything pending."""
        self._check_open()
        await self._channel.acall("flush", ctx=self._handle)

    async def forward(
        self, tokens: Sequence[int], positions: Sequence[int] | None = None
    ) -> Tensor:
        """Append tokens and return their logits `[len(tokens), vocab]`."""
        self._check_open()
        return await self._channel.acall(
            "forward",
            ctx=self._handle,
            tokens=_plain_list(tokens),
            positions=_plain_list(positions),
        )

    async def next_logits(self) -> Tensor:
        """Compute everything pending; the logits `[1, vocab]` of the token after the last."""
        self._check_open()
        return await self._channel.acall("next_logits", ctx=self._handle)

    # ---- generation --------------------------------------------------------------------------
    def generate(
        self,
        sampler: Sampler | None = None,
        *,
        max_tokens: int = 256,
        stop: Sequence[str | int] | None = None,
        constrain: RemoteGrammar | None = None,
        ban: Sequence[int] | None = None,
        stop_at_eos: bool = True,
    ) -> RemoteGeneration:
        """Start generating (see `Context.generate`); out of process, `constrain` takes a grammar
        from `runtime.grammar(...)` only."""
        self._check_open()
        if constrain is not None and not isinstance(constrain, RemoteGrammar):
            raise TypeError("out of process, constrain with a grammar from runtime.grammar(...)")
        if sampler is not None and not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a Sampler, got {type(sampler).__name__}")
        handle = self._call(
            "generate",
            sampler=None if sampler is None else _sampler_data(sampler),
            max_tokens=max_tokens,
            stop=None if stop is None else _plain_list(stop),
            constrain=None if constrain is None else constrain.handle,
            ban=None if ban is None else _plain_list(ban),
            stop_at_eos=stop_at_eos,
        )
        return RemoteGeneration(self._channel, self._tokenizer, handle)

    # ---- KV sharing --------------------------------------------------------------------------
    def fork(self) -> RemoteContext:
        """A new context with the same tokens; computed pages are shared, not copied."""
        self._check_open()
        return RemoteContext(self._channel, self._tokenizer, self._call("fork"))

    def save(self, name: str, *, start: int = 0, overwrite: bool = False) -> None:
        """Export the computed K/V of tokens [start:] under `name`."""
        self._check_open()
        self._call("save", name=name, start=start, overwrite=overwrite)

    def attach(self, *names: str) -> None:
        """Append exports' K/V after this context's tokens, in order."""
        self._check_open()
        self._call("attach", names=list(names))

    def truncate(self, n: int) -> None:
        """Keep the first n tokens."""
        self._check_open()
        self._call("truncate", n=n)

    def release(self) -> None:
        """Give the context's pages back; it cannot be used afterwards. Idempotent."""
        if not self._released:
            self._released = True
            self._finalizer.detach()
            self._channel.call("release", ctx=self._handle)

    async def __aenter__(self) -> RemoteContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def _call(self, op: str, **args: Any) -> Any:
        return self._channel.call(op, ctx=self._handle, **args)

    def _check_open(self) -> None:
        if self._released:
            raise ContextClosedError("this context was released")

    def __repr__(self) -> str:
        return f"RemoteContext(id={self._handle})"


class RemoteGeneration:
    """A generation running on the engine (see `Generation`): iterate it for `Step`s."""

    def __init__(self, channel: Channel, tokenizer: Tokenizer, handle: int) -> None:
        self._channel = channel
        self._tokenizer = tokenizer
        self._handle = handle
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None

    def accept(self, tokens: str | Sequence[int], *, special: bool = False) -> None:
        """Inject tokens into the live context; they are prefilled with the next step."""
        ids = (
            self._tokenizer.encode(tokens, special=special)
            if isinstance(tokens, str)
            else _plain_list(tokens)
        )
        self._channel.call("gen_accept", gen=self._handle, tokens=ids)

    def stop(self) -> None:
        """End the generation before its next step."""
        self.finish_reason = self._channel.call("gen_stop", gen=self._handle)

    def __aiter__(self) -> AsyncIterator[Step]:
        return self

    async def __anext__(self) -> Step:
        reply = await self._channel.acall("gen_next", gen=self._handle)
        if reply is None:
            raise StopAsyncIteration
        step = Step(reply["token"], reply["text"], reply["index"], reply["finish_reason"])
        self.tokens.append(step.token)
        self.text += step.text
        self.finish_reason = step.finish_reason
        return step

    def output_text(self) -> str:
        """The generated text, cut before the first stop string."""
        return str(self._channel.call("gen_output", gen=self._handle))

    async def collect(self) -> GenerationResult:
        reply = await self._channel.acall("gen_collect", gen=self._handle)
        self.tokens = list(reply["tokens"])
        self.finish_reason = reply["finish_reason"]
        return GenerationResult(reply["text"], tuple(reply["tokens"]), reply["finish_reason"])

    async def collect_text(self) -> str:
        return (await self.collect()).text


def _plain_list(values: Sequence[Any] | None) -> list[Any] | None:
    """A list of plain values (numpy and tensor integers as ints), or None."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise TypeError(f"expected a sequence of token ids, got text {values!r:.40}")
    if isinstance(values, Tensor):
        return list(values.tolist())
    return [v if isinstance(v, (str, bool, float)) else _as_int(v) for v in values]


def _as_int(value: Any) -> Any:
    try:
        return int(value.__index__())
    except (AttributeError, TypeError):
        return value  # sent as is: the engine reports what is wrong with it


def _sampler_data(sampler: Sampler) -> dict[str, Any]:
    return {
        "temperature": float(sampler.temperature),
        "top_k": int(sampler.top_k),
        "top_p": float(sampler.top_p),
        "min_p": float(sampler.min_p),
        "seed": None if sampler.seed is None else int(sampler.seed),
    }
