"""`RemoteBackend`: contexts that generate on an OpenAI-compatible server (`openai:URL`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from asynclm.backends.remote.client import RemoteClient, ServerInfo
from asynclm.backends.remote.constraints import Ban
from asynclm.backends.remote.context import RemoteContext
from asynclm.backends.remote.retry import RetryPolicy
from asynclm.backends.remote.servers import PROFILES, ServerKind, ServerProfile
from asynclm.backends.remote.spec import Timeouts, backend_protocol, parse_backend
from asynclm.backends.remote.stats import Reason, RemoteStats, Submission, common_prefix
from asynclm.cml.tokens import INTR
from asynclm.engine.chat import ChatFormat
from asynclm.engine.sampling import Sampler
from asynclm.engine.tokenizer import Tokenizer


class RemoteBackend:
    """Generation on a serving engine: llama.cpp, vLLM, SGLang or any OpenAI-compatible one.

    Args:
        spec: `openai:http://host:port` (CML over streamed `/v1/completions`; the `/v1` suffix
            is added when missing) or `openai-chat:http://host:port` (OpenAI tool calling
            over `/v1/chat/completions`, for sync and sync-parallel modes on any model).
        tokenizer: the served model's tokenizer: a `Tokenizer`, a transformers folder or a
            `.gguf` file. By default it is read from the model path the server reports, when
            that path exists on this machine (a local llama.cpp or vLLM server).
        model: the model name sent with requests (default: the server's first model).
        kind: the engine (default: detected from the server's answers).
        api_key: sent as a bearer token (default: `$OPENAI_API_KEY`, if set).
        timeouts: connect / first token / between tokens / whole request.
        retry: how often and how patiently failed requests are retried.
    """

    def __init__(
        self,
        spec: str,
        *,
        tokenizer: Tokenizer | str | os.PathLike[str] | None = None,
        model: str | None = None,
        kind: ServerKind | None = None,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        transport: Any = None,
    ) -> None:
        if kind is not None and kind not in PROFILES:
            raise ValueError(f"kind must be one of {sorted(PROFILES)}, got {kind!r}")
        self.base_url = parse_backend(spec)
        self.protocol = backend_protocol(spec)
        self.client = RemoteClient(
            self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY"),
            timeouts=timeouts,
            retry=retry,
            transport=transport,
        )
        self.stats = RemoteStats()
        self._tokenizer_source = tokenizer
        self._tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else None
        self._model = model
        self._kind = kind
        self._info: ServerInfo | None = None
        self._lock = anyio.Lock()
        self._history: dict[int, list[int]] = {}
        self._slots: dict[int, int] = {}  # context id -> llama-server slot it is pinned to

    # ---- discovery ---------------------------------------------------------------------------
    async def connect(self) -> ServerInfo:
        """Probe the server once (engine, model) and load the tokenizer."""
        async with self._lock:
            if self._info is None:
                info = await self.client.probe()
                if self._kind is not None:
                    info = ServerInfo(PROFILES[self._kind], info.model)
                if self._tokenizer is None:
                    self._tokenizer = await anyio.to_thread.run_sync(
                        load_tokenizer, self._tokenizer_source, info.model
                    )
                self._info = info
        return self._info

    @property
    def profile(self) -> ServerProfile:
        return self._connected().profile

    @property
    def model(self) -> str | None:
        return self._model or self._connected().model

    @property
    def tokenizer(self) -> Tokenizer:
        self._connected()
        assert self._tokenizer is not None  # loaded by connect()
        return self._tokenizer

    @property
    def eos_token_id(self) -> int:
        hf_eos = self.tokenizer.hf.eos_token_id
        return hf_eos if hf_eos is not None else self.tokenizer.eos_token_ids[-1]

    def _connected(self) -> ServerInfo:
        if self._info is None:
            raise RuntimeError("the backend is not connected: `await backend.connect()` first")
        return self._info

    # ---- contexts ----------------------------------------------------------------------------
    @asynccontextmanager
    async def context(self) -> AsyncIterator[RemoteContext]:
        """A new context; leaving the block ends its streams and closes their connections."""
        await self.connect()
        async with anyio.create_task_group() as tg:
            ctx = RemoteContext(self, tg)
            self._pin(ctx)
            try:
                yield ctx
            finally:
                ctx.release()
                self._history.pop(id(ctx), None)
                self._slots.pop(id(ctx), None)
                tg.cancel_scope.cancel()

    def _pin(self, ctx: RemoteContext) -> None:
        """On llama-server, give the context a slot of its own while one is free, so that its
        restarts find their prefix in that slot's cache (`id_slot`)."""
        total = self._connected().slots
        taken = set(self._slots.values())
        free = next((s for s in range(total) if s not in taken), None)
        if free is not None:
            self._slots[id(ctx)] = free

    @asynccontextmanager
    async def open_pieces(
        self, pieces: Callable[[ChatFormat], Sequence[tuple[str, bool]]]
    ) -> AsyncIterator[RemoteContext]:
        """A context holding a prompt given as pieces of text, each encoded on its own (the
        agent renders its prompt so); `pieces` gets the model's chat format."""
        async with self.context() as ctx:
            for text, special in pieces(self.tokenizer.chat):
                ctx.append(text, special=special)
            yield ctx

    @asynccontextmanager
    async def open_chat(self, system: str | None, user: str) -> AsyncIterator[RemoteContext]:
        """A context holding a system prompt and a user message, ready for the assistant's
        turn (the agent's `open_context` on this backend)."""
        async with self.context() as ctx:
            if system:
                ctx.system(system)
            ctx.user(user)
            ctx.assistant()
            yield ctx

    def forgery_guard(self) -> ForgeryBan:
        """The run constraint that keeps the model from writing `[INTR]` itself: the marker's
        token banned by `logit_bias` (a model without the token writes it in pieces, which no
        server can mask; the CML parser still never takes a model's text for a result)."""
        return ForgeryBan(self)

    # ---- requests ----------------------------------------------------------------------------
    def prompt_field(self, ctx: object, tokens: Sequence[int]) -> dict[str, Any]:
        """The request's prompt (token ids where the server takes them, else their text) and
        the context's slot, where it has one."""
        prompt: Any = list(tokens) if self.profile.token_prompts else self.tokenizer.decode(tokens)
        slot = self._slots.get(id(ctx))
        return {"prompt": prompt} if slot is None else {"prompt": prompt, "id_slot": slot}

    def sampling_fields(self, sampler: Sampler, ban: Sequence[int]) -> dict[str, Any]:
        """The request body but for the prompt and `max_tokens`."""
        fields: dict[str, Any] = {"temperature": sampler.temperature, "top_p": sampler.top_p}
        if self.model is not None:
            fields["model"] = self.model
        if sampler.seed is not None:
            fields["seed"] = sampler.seed
        if self.profile.kind != "openai":  # extensions every open engine accepts
            fields["min_p"] = sampler.min_p
            if sampler.top_k > 0:
                fields["top_k"] = sampler.top_k
        if self.profile.kind == "llama-cpp-python":  # its defaults are not neutral
            fields.update(repeat_penalty=1.0, top_k=sampler.top_k)
        if ban:
            fields["logit_bias"] = {str(t): -100 for t in ban}
        return {**fields, **self.profile.extra}

    def record_submission(
        self, ctx: object, reason: Reason, prompt: list[int], discarded: int
    ) -> Submission:
        """Account one (re)submission; its reuse is estimated from what the server computed
        last for this context (the server's report replaces it when one comes)."""
        previous = self._history.get(id(ctx))
        if reason == "start" and previous is not None:
            reason = "resume"  # a new generation on a context that already had requests
        submission = Submission(reason, len(prompt), common_prefix(previous or [], prompt))
        submission.discarded_tokens = discarded
        self._history[id(ctx)] = list(prompt)
        self.stats.submissions.append(submission)
        return submission

    def record_received(self, ctx: object, tokens: Sequence[int]) -> None:
        """Tokens the server generated for `ctx` (it holds their K/V after the prompt's)."""
        self._history.setdefault(id(ctx), []).extend(tokens)


class ForgeryBan:
    """`[INTR]` banned on a backend, looked up when the first request is built (the backend
    connects, and learns its tokenizer, when its first context opens)."""

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend

    @property
    def token_ids(self) -> tuple[int, ...]:
        ids = self.backend.tokenizer.encode(INTR, special=True)
        return tuple(ids) if len(ids) == 1 else ()

    def remote_fields(self, prompt_text: str) -> dict[str, Any]:
        return Ban(self.token_ids).remote_fields(prompt_text)

    def reset(self) -> None:
        """Nothing to forget."""


def load_tokenizer(
    source: Tokenizer | str | os.PathLike[str] | None, model: str | None
) -> Tokenizer:
    """The served model's tokenizer: from `source`, else from the model path the server gave."""
    if isinstance(source, Tokenizer):
        return source
    path = Path(source).expanduser() if source is not None else _local_path(model)
    if path is None:
        raise ValueError(
            f"the server serves {model!r}, which is not a path on this machine: pass the "
            "model's tokenizer (tokenizer=FOLDER or a .gguf file)"
        )
    from transformers import AutoTokenizer

    if path.is_file():
        hf = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    else:
        hf = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return Tokenizer(hf)


def _local_path(model: str | None) -> Path | None:
    if not model:
        return None
    path = Path(model).expanduser()
    return path if path.exists() else None
