"""The engine's end of an out-of-process inferlet: serves its requests within its scope.

Everything the inferlet's process sends is untrusted. It names contexts, generations and
grammars by handles this session gave it (a table per session: another inferlet's contexts
cannot be named), every argument is checked as the Context API checks a local caller's, and the
scope's quotas apply exactly as in process. A malformed message ends the session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from asynclm.engine.context import Context
from asynclm.engine.engine import Engine
from asynclm.engine.generation import Generation
from asynclm.engine.grammar import Grammar
from asynclm.engine.sampling import Sampler
from asynclm.engine.scope import Scope
from asynclm.inferlet.errors import InferletError, exception_data
from asynclm.inferlet.protocol import MAX_FRAME_BYTES, ProtocolError, decode, encode, frame_size

__all__ = ["InferletHost", "Outcome"]

MAX_GRAMMARS = 64
MAX_GRAMMAR_CHARS = 1_000_000
MAX_IN_FLIGHT = 1024  # requests computing at once (flush, forward, generation steps)
_SAMPLER_FIELDS = ("temperature", "top_k", "top_p", "min_p", "seed")


class Outcome:
    """How the session ended: the inferlet's value, its error, or nothing (it died)."""

    def __init__(self) -> None:
        self.reported = False
        self.value: Any = None
        self.error: dict[str, Any] | None = None


class InferletHost:
    """Serves one inferlet process's requests against `engine`, within `scope`.

    Args:
        engine: The engine.
        scope: The inferlet's scope (quotas, namespace, shared exports).
        stream: The connection to the inferlet's process.
    """

    def __init__(self, engine: Engine, scope: Scope, stream: ByteStream) -> None:
        self._engine = engine
        self._scope = scope
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._send_lock = anyio.Lock()
        self._contexts: dict[int, Context] = {}
        self._generations: dict[int, tuple[int, Generation]] = {}  # handle: (context, generation)
        self._grammars: dict[int, Grammar] = {}
        self._handles = iter(range(1, 1 << 62))
        self._running: dict[int, anyio.CancelScope] = {}
        self._sync: dict[str, Callable[[dict[str, Any]], Any]] = {
            "context": self._new_context,
            "open": self._open,
            "exports": lambda m: self._engine.exports.names(self._scope),
            "drop_export": lambda m: self._engine.exports.drop(_text(m, "name"), self._scope),
            "grammar": self._grammar,
            "usage": self._usage,
            "state": self._state,
            "append": self._append,
            "fork": self._fork,
            "save": self._save,
            "attach": self._attach,
            "truncate": lambda m: self._context(m).truncate(_integer(m, "n")),
            "release": self._release,
            "generate": self._generate,
            "gen_accept": self._accept,
            "gen_stop": self._stop,
            "gen_output": lambda m: self._generation(m).output_text(),
        }
        self._async = {
            "flush": self._flush,
            "forward": self._forward,
            "next_logits": self._next_logits,
            "gen_next": self._next_step,
            "gen_collect": self._collect,
        }

    async def send(self, message: dict[str, Any]) -> None:
        """Send a message to the inferlet's process."""
        data = encode(message)
        async with self._send_lock:
            await self._stream.send(data)

    async def serve(self) -> Outcome:
        """Answer requests until the inferlet reports its end or its process is gone.

        Raises:
            InferletError: The process sent something that is not this protocol.
        """
        outcome = Outcome()
        broken: ProtocolError | None = None
        async with anyio.create_task_group() as tg:
            try:
                while not outcome.reported:
                    message = await self._receive()
                    if message is None:
                        break
                    await self._dispatch(message, tg, outcome)
            except ProtocolError as exc:
                broken = exc
            tg.cancel_scope.cancel()
        if broken is not None:
            raise InferletError(f"the inferlet's process broke the protocol: {broken}")
        return outcome

    async def _receive(self) -> dict[str, Any] | None:
        try:
            size = frame_size(await self._reader.receive_exactly(4))
            if size > MAX_FRAME_BYTES:
                raise ProtocolError(f"a message of {size} bytes (the limit is {MAX_FRAME_BYTES})")
            message = decode(await self._reader.receive_exactly(size))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
            return None
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise ProtocolError("a message without op")
        return message

    async def _dispatch(self, message: dict[str, Any], tg: TaskGroup, outcome: Outcome) -> None:
        op = message["op"]
        if op in ("done", "failed"):
            outcome.reported = True
            outcome.value = message.get("value")
            outcome.error = message.get("error") if op == "failed" else None
            if op == "failed" and not isinstance(outcome.error, dict):
                outcome.error = {"type": "InferletError", "message": "failed without an error"}
        elif op == "forget":  # a context the inferlet dropped without releasing it
            if message.get("ctx") in self._contexts:
                self._release(message)
        elif op == "cancel":
            scope = self._running.get(message.get("target"))  # type: ignore[arg-type]
            if scope is not None:
                scope.cancel()
        elif op in self._async:
            request = _request_id(message)
            if len(self._running) >= MAX_IN_FLIGHT:
                await self._reply(request, lambda: _too_many(op))
                return
            self._running[request] = anyio.CancelScope()
            tg.start_soon(self._answer_async, request, message)
        elif op in self._sync:
            await self._reply(_request_id(message), lambda: self._sync[op](message))
        else:
            await self._reply(_request_id(message), lambda: _unknown(op))

    async def _reply(self, request: int, call: Callable[[], Any]) -> None:
        try:
            reply: dict[str, Any] = {"id": request, "ok": call()}
        except Exception as exc:  # the inferlet's mistake: it gets the error, the engine goes on
            reply = {"id": request, "error": exception_data(exc)}
        await self.send(reply)

    async def _answer_async(self, request: int, message: dict[str, Any]) -> None:
        reply: dict[str, Any] | None = None
        try:
            with self._running[request]:  # cancelled when the inferlet gives up waiting
                try:
                    reply = {"id": request, "ok": await self._async[message["op"]](message)}
                except Exception as exc:
                    reply = {"id": request, "error": exception_data(exc)}
        finally:
            self._running.pop(request, None)
        if reply is not None:
            with anyio.CancelScope(shield=True):  # never half a frame on the wire
                await self.send(reply)

    # ---- runtime -----------------------------------------------------------------------------
    def _adopt(self, ctx: Context) -> int:
        handle = next(self._handles)
        self._contexts[handle] = ctx
        return handle

    def _new_context(self, message: dict[str, Any]) -> int:
        return self._adopt(self._engine.context(self._scope))

    def _open(self, message: dict[str, Any]) -> int:
        return self._adopt(Context.open(self._engine, _text(message, "name"), self._scope))

    def _grammar(self, message: dict[str, Any]) -> int:
        options = message.get("options")
        if not isinstance(options, dict) or not set(options) <= {"ebnf", "json_schema", "regex"}:
            raise ValueError("grammar() takes one of ebnf=, json_schema= or regex=")
        if len(str(options)) > MAX_GRAMMAR_CHARS:
            raise ValueError(f"a grammar's source is limited to {MAX_GRAMMAR_CHARS} characters")
        if len(self._grammars) >= MAX_GRAMMARS:
            raise ValueError(f"an inferlet may compile at most {MAX_GRAMMARS} grammars")
        handle = next(self._handles)
        self._grammars[handle] = self._engine.grammar(**options)
        return handle

    def _usage(self, message: dict[str, Any]) -> dict[str, int]:
        return {"tokens_used": self._scope.tokens_used, "pages_in_use": self._scope.pages_in_use}

    # ---- contexts ----------------------------------------------------------------------------
    def _context(self, message: dict[str, Any]) -> Context:
        handle = message.get("ctx")
        ctx = self._contexts.get(handle) if isinstance(handle, int) else None
        if ctx is None:
            raise KeyError(f"no context {handle!r} in this inferlet")
        return ctx

    def _state(self, message: dict[str, Any]) -> dict[str, Any]:
        ctx = self._context(message)
        return {
            "tokens": ctx.tokens,
            "positions": ctx.positions,
            "num_cached": ctx.num_cached,
            "num_pages": ctx.num_pages,
            "next_position": ctx.next_position,
            "seed": ctx.seed,
        }

    def _append(self, message: dict[str, Any]) -> None:
        tokens = message.get("tokens")
        if not isinstance(tokens, list):
            raise TypeError("append() takes token ids (the inferlet encodes text itself)")
        ctx = self._context(message)
        self._check_room(ctx, len(tokens))
        ctx.append(tokens, message.get("positions"))

    def _check_room(self, ctx: Context, n: int) -> None:
        """A context of an inferlet holds at most the model's window of tokens."""
        window = self._engine.config.max_position
        if ctx.num_tokens + n > window:
            raise ValueError(
                f"a context holds at most {window} tokens (the model's window); it has "
                f"{ctx.num_tokens}, {n} more were appended"
            )

    def _fork(self, message: dict[str, Any]) -> int:
        return self._adopt(self._context(message).fork())

    def _save(self, message: dict[str, Any]) -> None:
        overwrite = message.get("overwrite", False)
        ctx = self._context(message)
        ctx.save(
            _text(message, "name"), start=_integer(message, "start"), overwrite=overwrite is True
        )

    def _attach(self, message: dict[str, Any]) -> None:
        names = message.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError("attach() takes export names")
        self._context(message).attach(*names)

    def _release(self, message: dict[str, Any]) -> None:
        ctx = self._context(message)
        del self._contexts[message["ctx"]]
        for handle in [h for h, (c, _) in self._generations.items() if c == message["ctx"]]:
            del self._generations[handle]
        ctx.release()

    async def _flush(self, message: dict[str, Any]) -> None:
        await self._context(message).flush()

    async def _forward(self, message: dict[str, Any]) -> Any:
        tokens = message.get("tokens")
        if not isinstance(tokens, list):
            raise TypeError("forward() takes token ids")
        ctx = self._context(message)
        self._check_room(ctx, len(tokens))
        return await ctx.forward(tokens, message.get("positions"))

    async def _next_logits(self, message: dict[str, Any]) -> Any:
        return await self._context(message).next_logits()

    # ---- generations -------------------------------------------------------------------------
    def _generate(self, message: dict[str, Any]) -> int:
        ctx = self._context(message)
        grammar = message.get("constrain")
        if grammar is not None and grammar not in self._grammars:
            raise KeyError(f"no grammar {grammar!r} in this inferlet")
        generation = ctx.generate(
            _sampler(message.get("sampler")),
            max_tokens=message.get("max_tokens"),  # type: ignore[arg-type]
            stop=message.get("stop"),
            constrain=None if grammar is None else self._grammars[grammar],
            ban=message.get("ban"),
            stop_at_eos=message.get("stop_at_eos") is not False,
        )
        for handle in [h for h, (c, _) in self._generations.items() if c == message["ctx"]]:
            del self._generations[handle]  # a context runs one generation at a time
        handle = next(self._handles)
        self._generations[handle] = (message["ctx"], generation)
        return handle

    def _generation(self, message: dict[str, Any]) -> Generation:
        handle = message.get("gen")
        entry = self._generations.get(handle) if isinstance(handle, int) else None
        if entry is None:
            raise KeyError(f"no running generation {handle!r} in this inferlet")
        return entry[1]

    def _accept(self, message: dict[str, Any]) -> None:
        tokens = message.get("tokens")
        if not isinstance(tokens, list):
            raise TypeError("accept() takes token ids (the inferlet encodes text itself)")
        entry = self._generations.get(message.get("gen"))  # type: ignore[arg-type]
        generation = self._generation(message)
        if entry is not None:
            self._check_room(self._contexts[entry[0]], len(tokens))
        generation.accept(tokens)

    def _stop(self, message: dict[str, Any]) -> str | None:
        generation = self._generation(message)
        generation.stop()
        return generation.finish_reason

    async def _next_step(self, message: dict[str, Any]) -> dict[str, Any] | None:
        try:
            step = await self._generation(message).__anext__()
        except StopAsyncIteration:
            return None
        return {
            "token": step.token,
            "text": step.text,
            "index": step.index,
            "finish_reason": step.finish_reason,
        }

    async def _collect(self, message: dict[str, Any]) -> dict[str, Any]:
        result = await self._generation(message).collect()
        return {
            "text": result.text,
            "tokens": list(result.tokens),
            "finish_reason": result.finish_reason,
        }


def _request_id(message: dict[str, Any]) -> int:
    request = message.get("id")
    if isinstance(request, bool) or not isinstance(request, int):
        raise ProtocolError("a request without id")
    return request


def _too_many(op: str) -> None:
    raise RuntimeError(f"{op}: more than {MAX_IN_FLIGHT} requests of this inferlet are running")


def _unknown(op: str) -> None:
    raise ValueError(f"unknown request {op!r}")


def _text(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _integer(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    return value


def _sampler(data: object) -> Sampler | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not set(data) <= set(_SAMPLER_FIELDS):
        raise TypeError(f"a sampler is given by {', '.join(_SAMPLER_FIELDS)}")
    return Sampler(**data)
