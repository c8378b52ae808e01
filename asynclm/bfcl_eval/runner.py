"""Running BFCL tasks through the agent: one task, one mode, one record.

Each entry's function documents become `simulated` tools (the agent's tool docs, which Prompt
Cache keeps as modules) with the latency model's delays; the agent runs the entry's question
in the requested mode on the shared engine or on a served model (`backend`, an `openai:URL`);
the run's CML calls are decoded and checked by the AST checker; the record keeps the latency,
the verdict, token counts, the ideal bound and, on a server, what its stream restarts cost.

Where the text comes from: a real model; the oracle on the scripted model (`model="oracle"`);
or the oracle's text forced onto a real model (`forced`: every token a real forward, the
oracle's calls; `asynclm.backends.forced`), which compares places and modes like with like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from asynclm.bfcl_eval.checker import category_kind, check_answer
from asynclm.bfcl_eval.decode import decode_calls
from asynclm.bfcl_eval.oracle import Oracle, call_block
from asynclm.bfcl_eval.rules import Verdict, fail
from asynclm.bfcl_eval.tasks import (
    INSTRUCTIONS,
    LatencyModel,
    Task,
    cheat_sheet,
    latencies,
    simulated_result,
)
from asynclm.trace.schedule import Step, ideal_makespan

if TYPE_CHECKING:
    from asynclm.agent.constrained import Constrained

__all__ = ["ORACLE", "Runner", "Settings"]

ORACLE = "oracle"
ORACLE_MAX_TOKENS = 8192  # the oracle stops by itself; never cut it short
CONSTRAINED_MAX_CALLS = 16  # the grammar's cap on calls per turn (BFCL tasks need at most 13)


@dataclass(frozen=True, slots=True)
class Settings:
    """What a benchmark run holds fixed; runs of different settings are never mixed.

    Attributes:
        model: "oracle" or a model preset/path (default "smollm2-135m").
        adapter: A LoRA adapter folder for the model, or None.
        backend: An `openai:URL` serving the model, or None for the local engine.
        tokenizer: The served model's tokenizer (a transformers folder or `.gguf` file), where
            the model path the server reports is not on this machine.
        forced: The oracle's text forced onto the real model (local or served).
        latency: The simulated tools' latency model.
        cheat_sheet: Put the ground-truth calls in the prompt.
        constrained: Hold the model to a grammar: `"turn"` (its whole turn; untuned models) or
            `"calls"` (only the call blocks it writes; fine-tuned models); None for none.
        max_tokens: The most tokens the model may write in a run (the oracle is not capped).
        token_rate: The oracle's tokens/s.
        prefill_rate: The oracle's prefill tokens/s.
        seed: Seed of the uniform latency model.
    """

    model: str = "smollm2-135m"
    adapter: str | None = None
    backend: str | None = None
    tokenizer: str | None = None
    forced: bool = False
    latency: LatencyModel = field(default_factory=LatencyModel)
    cheat_sheet: bool = False
    constrained: Constrained | None = None
    max_tokens: int = 256
    token_rate: float = 50.0
    prefill_rate: float = 1000.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.model == ORACLE and self.backend:
            problems.append(
                "the scripted oracle runs on the local engine; with a backend use "
                "the oracle forced onto the served model (forced=True)"
            )
        if self.model == ORACLE and self.forced:
            problems.append("forced=True forces the oracle onto a real model, not 'oracle'")
        if self.constrained and (self.backend or self.forced):
            problems.append("constrained decoding needs the local engine and a free model")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def is_oracle(self) -> bool:
        """The oracle's text: on the scripted model, or forced onto a real one."""
        return self.model == ORACLE or self.forced

    def describe(self) -> dict[str, Any]:
        """JSON-ready, for the summary and the resumable record file's header."""
        data = asdict(self)
        data["latency"] = self.latency.describe()
        if self.model != ORACLE:  # the oracle's rates apply to the scripted model only
            data.pop("token_rate")
            data.pop("prefill_rate")
        return data


def short_result(name: str) -> Any:
    """The simulated function `name`'s result (`simulated_result`) as a tool's callable."""

    def result(**arguments: Any) -> str:
        return simulated_result(name, arguments)

    return result


class Runner:
    """Runs tasks in one place: the scripted oracle, a real model, or a served one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.oracle: Oracle | None = Oracle() if settings.is_oracle else None
        self.engine: Any = None
        self.backend: Any = None
        if settings.backend:
            from asynclm.backends.remote import RemoteBackend

            self.backend = RemoteBackend(settings.backend, tokenizer=settings.tokenizer)
        else:
            self.engine = self._engine()

    def _oracle(self) -> Oracle:
        if self.oracle is None:
            raise ValueError("this runner writes a model's own text, not the oracle's")
        return self.oracle

    def _engine(self) -> Any:
        if self.settings.model == ORACLE:
            from asynclm.backends.scripted import Timing, scripted_engine
            from asynclm.cml.tokens import MARKERS

            timing = Timing(1 / self.settings.token_rate, 1 / self.settings.prefill_rate)
            engine = scripted_engine(self._oracle(), timing=timing)
            engine.add_special_tokens(MARKERS)  # as a CML-tuned model has them
            return engine
        from asynclm.engine.engine import Engine

        return Engine.load(self.settings.model, self.settings.adapter)

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (the server's model's, once connected)."""
        return (self.backend or self.engine).tokenizer

    async def run(self, task: Task, mode: str) -> tuple[dict[str, Any], Any]:
        """Runs one task in one mode; returns its record and the `RunResult`."""
        latency = latencies(task, self.settings.latency, seed=self.settings.seed)
        if self.oracle is not None:
            self.oracle.use(task, latency)
        agent = self._agent(task, mode, latency)
        await agent.warm()  # the system prompt and tool docs are cached before the clock starts
        prompt = task.prompt
        if self.settings.cheat_sheet:
            prompt += "\n\n" + cheat_sheet(task)
        before = len(self.backend.stats.submissions) if self.backend else 0
        if self.settings.forced:
            result = await self._forced_run(agent, prompt)
        else:
            result = await agent.run(prompt)
        record = self._record(task, mode, result, latency)
        if self.backend is not None:
            from asynclm.backends.remote.stats import summarize

            record["server"] = summarize(self.backend.stats.submissions[before:])
        return record, result

    def _agent(self, task: Task, mode: str, latency: Mapping[str, float]) -> Any:
        from asynclm.agent.agent import Agent

        place: dict[str, Any] = {"backend": self.backend} if self.backend else {}
        if self.engine is not None:
            place["model"] = self.engine
        return Agent(
            self._tools(task, latency),
            mode=mode,  # type: ignore[arg-type]
            system="\n\n".join(filter(None, [INSTRUCTIONS, task.system])),
            max_tokens=ORACLE_MAX_TOKENS if self.oracle else self.settings.max_tokens,
            constrained=self.settings.constrained if task.entry.functions else None,
            max_calls=CONSTRAINED_MAX_CALLS,
            **place,
        )

    async def _forced_run(self, agent: Any, prompt: str) -> Any:
        """The oracle's text forced onto the real model: a logit mask here, a grammar there."""
        from contextlib import asynccontextmanager
        from dataclasses import replace

        from asynclm.agent.run import AgentRun
        from asynclm.backends.forced import ForcedTrace

        live: list[Any] = []

        @asynccontextmanager
        async def open_context(text: str) -> Any:
            async with agent.open_context(text) as ctx:
                live.append(ctx)
                yield ctx

        tokenizer = self.tokenizer

        def context_text() -> str:  # read by the local mask only (a server gets a grammar)
            return str(tokenizer.decode(live[-1].context.tokens))

        forced = ForcedTrace(self._oracle(), tokenizer, context_text)
        spec = replace(agent.run_spec(), open_context=open_context, make_constraint=lambda: forced)
        return await AgentRun(spec, prompt).execute()

    def _tools(self, task: Task, latency: Mapping[str, float]) -> list[Any]:
        from asynclm.tools.simulated import simulated

        unique: dict[str, dict] = {}
        for doc in task.entry.functions:  # a name documented twice: the first one counts
            unique.setdefault(doc["name"], doc)
        return [
            simulated(doc, latency=latency[name], result=short_result(name))
            for name, doc in unique.items()
        ]

    def _record(
        self, task: Task, mode: str, result: Any, latency: Mapping[str, float]
    ) -> dict[str, Any]:
        verdict = self.verdict(task, [c.body for c in result.calls])
        usage = result.usage
        return {
            "category": task.entry.category,
            "id": task.id,
            "mode": mode,
            "latency_s": result.elapsed,
            "valid": verdict.valid,
            "error_type": verdict.error_type,
            "error": verdict.error,
            "calls": [
                {"id": c.id, "body": c.body, "ok": c.ok, "error": c.error} for c in result.calls
            ],
            "expected_calls": len(task.calls),
            "generated_tokens": usage.generated_tokens,
            "injected_tokens": usage.injected_tokens,
            "interrupts": usage.interrupts,
            "prompt_tokens": usage.prompt_tokens,
            "cached_prompt_tokens": usage.cached_prompt_tokens,
            "finish_reason": result.finish_reason,
            "output": result.output[:400],
            "decode_s_per_token": _measured_speeds(result.timeline)[0],
            **self.ideal(task, result, latency),
        }

    @staticmethod
    def verdict(task: Task, bodies: list[str]) -> Verdict:
        """The AST verdict on the calls a run made (given as their bodies)."""
        decoded = decode_calls(bodies, task.entry.functions)
        entry = task.entry
        if decoded.malformed and category_kind(entry.category) != "irrelevance":
            return fail("ast_decoder:decoder_failed", f"{decoded.malformed} malformed call(s)")
        return check_answer(entry.category, entry.functions, decoded.calls, entry.ground_truth)

    def ideal(
        self, task: Task, result: Any, latency: Mapping[str, float]
    ) -> dict[str, float | None]:
        """The ideal bound of the task's ground-truth call graph at this run's speeds.

        ideal = prompt prefill + the optimal single-writer schedule of the expected calls (their
        blocks written at the model's seconds per token) + the answer. The oracle's speeds are
        its settings; a real model's are measured in the run (decode seconds per token over its
        generation steps; its prompt prefill is the wait before its first step). For the oracle,
        `ideal_at_measured_s` is the same bound at the speeds measured in the run (the runtime's
        own work per step included), which separates scheduling from per-step overhead.
        """
        encode = self.tokenizer.encode
        # the model writes each block's markers as their special tokens
        blocks = [
            [len(encode(call_block(c), special=True)) for c in chain] for chain in task.chains
        ]
        measured = _measured_speeds(result.timeline)
        if self.settings.model != ORACLE and measured == (0.0, 0.0):
            # no token stream to time (a chat server's tool calling): no bound to compare with
            return dict.fromkeys(("ideal_s", "ideal_at_measured_s", "t_token_s", "prefill_s"))
        if self.oracle is not None:
            answer = len(encode(self.oracle.answer()))
        else:
            answer = len(encode(result.output)) if result.output else 0
        if self.settings.model == ORACLE:
            t_token = 1 / self.settings.token_rate
            speeds = (t_token, result.usage.prompt_tokens / self.settings.prefill_rate + t_token)
        else:
            speeds = measured
        return {
            "ideal_s": _ideal(task, blocks, latency, *speeds, answer),
            "ideal_at_measured_s": _ideal(task, blocks, latency, *measured, answer),
            "t_token_s": speeds[0],
            "prefill_s": speeds[1],
        }


def _ideal(
    task: Task,
    blocks: list[list[int]],
    latency: Mapping[str, float],
    t_token: float,
    prefill: float,
    answer_tokens: int,
) -> float:
    chains = [
        [Step(n * t_token, latency[c.name]) for c, n in zip(chain, sizes, strict=True)]
        for chain, sizes in zip(task.chains, blocks, strict=True)
    ]
    return prefill + ideal_makespan(chains) + answer_tokens * t_token


def _measured_speeds(timeline: Any) -> tuple[float, float]:
    """(seconds per generated token, seconds before the first generation step) of a run."""
    spans = [e for e in timeline.events if e.is_span and e.name == "generate"]
    tokens = sum(int(e.args.get("tokens", 0)) for e in spans)
    if not spans or tokens == 0:
        return 0.0, 0.0
    per_token = sum(e.duration for e in spans) / tokens
    first = min(e.start for e in spans)
    return per_token, first + per_token
