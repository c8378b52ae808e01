"""The engine: a model, its KV page pool, the scheduler and runner, exports and scopes."""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import anyio
import torch

from asynclm.engine import threads
from asynclm.engine.attention_choice import CausalChoice, choose_causal
from asynclm.engine.config import ModelConfig
from asynclm.engine.context import Context
from asynclm.engine.cpu import cpu_info
from asynclm.engine.exports import Exports
from asynclm.engine.grammar import Grammar, GrammarCompiler
from asynclm.engine.kernels.check import native_ops
from asynclm.engine.kv_cache import KVCache
from asynclm.engine.loader import DEFAULT_MODEL, LoadedModel, load_model
from asynclm.engine.model import EngineModel, Transformer
from asynclm.engine.pages import PagePool
from asynclm.engine.policy import BatchPolicy
from asynclm.engine.runner import ModelRunner
from asynclm.engine.scheduler import Scheduler
from asynclm.engine.scope import Namespace, Quota, Scope
from asynclm.engine.threads import ThreadPlan
from asynclm.engine.tokenizer import Tokenizer
from asynclm.engine.tuning import KernelReport, TimingStore, plan_kernels
from asynclm.engine.weights import WeightPolicy

DEFAULT_KV_BYTES = 1 << 30


class Engine:
    """Runs one model for many concurrent contexts.

    Args:
        model: the engine's `Transformer`.
        tokenizer: its tokenizer.
        kv_bytes: memory budget of the KV pool (default 1 GiB); or give `num_pages`.
        page_size: tokens per KV page.
        max_batch_tokens: tokens per forward (chunked prefill bound).
        name / fingerprint: identity of the weights (Prompt Cache keys its disk store by it).
        weights: which weight formats the kernels may use (see `asynclm.engine.weights`):
            `auto` (default, exact: float32 plus block formats that reproduce the weights bit
            for bit), `fp32`, or approximate ones allowed on top: `int8`, `bf16`, `fp16`.
        tune: on CPU, measure the kernels of every linear layer at load (cached per machine)
            and use the fastest per batch size; False runs plain `F.linear` (the fused ops
            are native either way, when this machine has them).

    Attributes:
        pool: the KV page allocator (no torch); `kv`: the KV pool tensors.
        runner: turns scheduled batches into tensors and runs the model.
        scheduler: batches every context's work (its `policy` decides what runs next).
        kernels: the kernel choices measured at load (None when not tuned).
        exports: the registry of named K/V (`save`, `open`, `drop`, `export_kv`, ...).
        root_scope: the scope of contexts and exports made outside any inferlet.
    """

    def __init__(
        self,
        model: EngineModel,
        tokenizer: Tokenizer,
        *,
        kv_bytes: int | None = None,
        num_pages: int | None = None,
        page_size: int = 16,
        max_batch_tokens: int = 512,
        name: str = "custom",
        fingerprint: str = "",
        weights: str = "auto",
        tune: bool = True,
    ) -> None:
        self.model = model
        self.weights = WeightPolicy.parse(weights)
        self.kernels: KernelReport | None = None
        if isinstance(model, Transformer) and model.device.type == "cpu":
            model.use_ops(native_ops())  # torch's ops when the native ones cannot be had
            if tune:
                self.kernels = plan_kernels(model, self.weights)
        self.tokenizer = tokenizer
        self.name = name
        self.fingerprint = fingerprint or name
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        if num_pages is None:
            per_page = model.config.kv_bytes_per_token(model.dtype.itemsize) * page_size
            kv_bytes = DEFAULT_KV_BYTES if kv_bytes is None else kv_bytes
            if kv_bytes < per_page:
                raise ValueError(f"kv_bytes={kv_bytes} is less than one KV page ({per_page} bytes)")
            num_pages = kv_bytes // per_page
        self.pool = PagePool(num_pages, page_size)
        self.kv = KVCache(
            model.config, num_pages, page_size, dtype=model.dtype, device=model.device
        )
        self.runner = ModelRunner(model, self.kv)
        self.scheduler = Scheduler(self.pool, self.runner, BatchPolicy(max_batch_tokens))
        self.root_scope = Scope()
        self.exports = Exports(self.pool, self.kv, self.root_scope)
        self._grammars: GrammarCompiler | None = None
        self.attention: CausalChoice | None = None
        if self.kernels is not None:
            self.tune_threads()
            self.tune_attention()

    @classmethod
    def load(
        cls,
        name_or_path: str = DEFAULT_MODEL,
        adapter: str | os.PathLike[str] | None = "auto",
        *,
        dtype: torch.dtype = torch.float32,
        device: str | None = None,
        **kwargs: Any,
    ) -> Engine:
        """Load a model (see `load_model`) and build an engine around it.

        `adapter="auto"` merges the CML adapter shipped for the preset (SmolLM2: the one
        `asynclm finetune` made), if the package has one; pass None for the plain model.
        """
        return cls.from_loaded(
            load_model(name_or_path, adapter, dtype=dtype, device=device), **kwargs
        )

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, **kwargs: Any) -> Engine:
        return cls(
            loaded.model,
            loaded.tokenizer,
            name=loaded.name,
            fingerprint=loaded.fingerprint,
            **kwargs,
        )

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def use_weights(self, weights: str) -> KernelReport:
        """Switch the weight formats the kernels may use (see `weights=`) and choose again.

        Timings already measured on this machine are reused, so this is quick after the first
        time. Returns the new kernel report (also `engine.kernels`).
        """
        policy = WeightPolicy.parse(weights)
        if not isinstance(self.model, Transformer) or self.model.device.type != "cpu":
            raise ValueError("weight formats apply to the engine's own model on the CPU")
        self.weights = policy
        self.kernels = plan_kernels(self.model, policy)
        return self.kernels

    def tune_threads(self, *, retune: bool = False, use_cache: bool = True) -> ThreadPlan | None:
        """Choose the thread count of decode steps and of prefills by timing this model at
        each candidate count (`asynclm.engine.threads`; cached per machine); the runner uses it
        from the next forward. None for models that do not run on the CPU."""
        if not isinstance(self.model, Transformer) or self.model.device.type != "cpu":
            return None
        info = cpu_info()
        counts = threads.candidates(max(torch.get_num_threads(), info.logical_cores))
        config, weights = self.model.config, self.weights.spec
        shape = f"{config.num_layers}x{config.hidden_size}x{config.vocab_size}"
        key = f"threads-v2|{shape}|{weights}|{','.join(map(str, counts))}"
        store = TimingStore.for_machine(use_cache)
        self.runner.threads = threads.plan_threads(
            None,  # both phases timed through a context of this engine
            counts,
            key=key,
            store=store,
            retune=retune,
            timers={"prefill": self._prefill_ms, "decode": self._decode_ms},
        )
        return self.runner.threads

    def _prefill_ms(self, count: int) -> float:
        """Milliseconds of a context's prefill of `threads.PREFILL_TOKENS` tokens at `count`
        threads (see `_timed`)."""
        return self._timed(threads.ThreadPlan(1, count, {}), tokens=0)

    def _decode_ms(self, count: int) -> float:
        """Milliseconds per token of a greedy generation whose decode steps use `count`
        threads (see `_timed`)."""
        return self._timed(threads.ThreadPlan(count, 1, {}), tokens=24)

    def _timed(self, plan: ThreadPlan, tokens: int) -> float:
        """A context of its own (released after) prefills a prompt, then generates `tokens`
        more under `plan`: the prefill's milliseconds, or per generated token if any. Runs on
        a thread with its own event loop, so that it works under a running one too."""
        before = self.runner.threads
        prompt = [t % self.config.vocab_size for t in range(100, 100 + threads.PREFILL_TOKENS)]

        async def run() -> float:
            async with self.context() as ctx:
                ctx.append(prompt)
                start = time.perf_counter()
                await ctx.flush()
                if not tokens:
                    return (time.perf_counter() - start) * 1e3
                steps = ctx.generate(max_tokens=tokens + 1, stop_at_eos=False)
                await steps.__anext__()  # the first step after the prefill
                start = time.perf_counter()
                async for _ in steps:
                    pass
                return (time.perf_counter() - start) / tokens * 1e3

        self.runner.threads = plan
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(anyio.run, run).result()
        finally:
            self.runner.threads = before

    def tune_attention(
        self, *, retune: bool = False, use_cache: bool = True
    ) -> CausalChoice | None:
        """Choose the causal attention of multi-token chunks by timing the native kernel and
        torch's on this model's heads (`asynclm.engine.attention_choice`; cached per machine).
        None for models that do not run on the CPU."""
        if not isinstance(self.model, Transformer) or self.model.device.type != "cpu":
            return None
        plan = self.runner.threads
        count = plan.prefill if plan is not None else torch.get_num_threads()
        store = TimingStore.for_machine(use_cache)
        self.attention = choose_causal(
            self.model.config, self.model.ops, count, store=store, retune=retune
        )
        self.model.use_ops(replace(self.model.ops, native_causal=self.attention.native))
        return self.attention

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- contexts and scopes -----------------------------------------------------------------
    def context(self, scope: Scope | None = None) -> Context:
        """A new empty context."""
        return Context(self, scope)

    def scope(
        self,
        name: str,
        quota: Quota | None = None,
        shared: Iterable[str] = (),
        *,
        namespace: Namespace | None = None,
    ) -> Scope:
        """A child scope with quotas; it sees its own exports and the `shared` ones.

        Its exports live in a new namespace unless `namespace` (another scope's) is given.
        """
        if not name:
            raise ValueError("a child scope needs a name")
        return Scope(name, quota, frozenset(shared), namespace=namespace)

    # ---- exports (the registry is `engine.exports`; these are its root-scope shortcuts) ------
    def export_names(self, scope: Scope | None = None) -> list[str]:
        """Exports visible from a scope (default: the root scope's own)."""
        return self.exports.names(scope)

    def has_export(self, name: str, scope: Scope | None = None) -> bool:
        return self.exports.has(name, scope)

    def drop_export(self, name: str, scope: Scope | None = None) -> None:
        """Forget an export; its pages are freed once no context uses them."""
        self.exports.drop(name, scope)

    def drop_scope_exports(self, scope: Scope) -> None:
        """Drop every export a child scope made itself (not the ones shared with it)."""
        self.exports.drop_scope(scope)

    def export_kv(self, name: str) -> tuple[list[int], list[int], torch.Tensor]:
        """An export's tokens, positions and K/V `[layers, 2, n, kv_heads, head_dim]` (a copy)."""
        return self.exports.export_kv(name)

    def import_kv(
        self,
        name: str,
        tokens: list[int],
        positions: list[int],
        kv: torch.Tensor,
        *,
        overwrite: bool = False,
    ) -> None:
        """Create an export from saved K/V (as returned by `export_kv`)."""
        self.exports.import_kv(name, tokens, positions, kv, overwrite=overwrite)

    # ---- vocabulary and grammars -------------------------------------------------------------
    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Add special tokens to the tokenizer, growing the embeddings (new rows: the mean row)."""
        ids = self.tokenizer.add_special_tokens(list(tokens))
        self._resize_vocab(max(self.tokenizer.vocab_size, max(ids, default=0) + 1))
        return ids

    def _resize_vocab(self, size: int) -> None:
        if size > self.model.config.vocab_size:
            self.model.resize_vocab(size)
            self._grammars = None
            if self.kernels is not None and isinstance(self.model, Transformer):
                output = plan_kernels(self.model, self.weights, sites=("output",))
                self.kernels = self.kernels.updated(output)

    def grammar(
        self,
        *,
        ebnf: str | None = None,
        json_schema: str | dict | None = None,
        regex: str | None = None,
        any_whitespace: bool = True,
    ) -> Grammar:
        """Compile a grammar for `generate(constrain=...)` (cached by its text).

        `any_whitespace=False` makes JSON-schema grammars compact (no free whitespace).
        """
        if self._grammars is None:
            self._grammars = GrammarCompiler(self.tokenizer, self.config.vocab_size)
        return self._grammars.compile(
            ebnf=ebnf, json_schema=json_schema, regex=regex, any_whitespace=any_whitespace
        )

    def __repr__(self) -> str:
        return (
            f"Engine({self.name!r}, pages={self.pool.num_used}/{self.pool.num_pages} used, "
            f"page_size={self.pool.page_size})"
        )
