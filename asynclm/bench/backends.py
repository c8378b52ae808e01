"""`asynclm bench backends`: what an interrupt costs on a serving engine, beside our engine.

One model file for both: our exported SmolLM2 GGUF (with the CML tokens), served by
llama-cpp-python's server on loopback and loaded by our engine (the same weights, dequantised).

- **restart**: a stream is interrupted after some tokens and an interrupt of ~20 tokens is
  appended. On the server that is an abort + resubmission (async-naive): we time the first token
  of the new stream, count the prompt tokens the server recomputes and the tokens it generated
  in vain; beside it, a cold request for the same prompt (no cache) and the steady time per
  token. On our engine the interrupt goes into the live KV: we time its next step.
- **agent**: the scripted tasks of `bench agent` (4 parallel calls; 3 chains of 3 calls), their
  oracle trace forced on the real model (`asynclm.backends.forced`): sync and async on our
  engine; sync, sync-parallel and async-naive on the server; end-to-end latency, restarts, tokens
  recomputed per restart, time to first token after a restart.
- **bfcl**: the same on a BFCL subset (parallel by default), the oracle's calls forced onto the
  model, with BFCL's AST accuracy (`asynclm.bench.backends_bfcl`).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from asynclm.bench.backends_bfcl import add_arguments as add_bfcl_arguments
from asynclm.bench.backends_bfcl import bfcl_section, bfcl_table
from asynclm.bench.common import machine, table, write_json
from asynclm.cml.tokens import interrupt_pieces

INTERRUPT = "[INTR] w1 [HEAD] {'city': 'Paris', 'forecast': 'sunny', 'temperature_c': 21} [END]"
FILLER = "The agent reads the travel notes, the weather reports and the price lists again. "


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=None, help="an openai:URL to measure (default: start one)")
    p.add_argument("--gguf", default=None, help="the GGUF file (default: export SmolLM2 + CML)")
    p.add_argument("--prompt-tokens", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--after", type=int, default=16, help="tokens streamed before the interrupt")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="server threads (default: all)")
    p.add_argument(
        "--sections",
        nargs="+",
        default=["restart", "agent", "bfcl"],
        choices=["restart", "agent", "bfcl"],
    )
    p.add_argument("--tasks", nargs="+", default=["parallel", "multistep"])
    p.add_argument("--agent-reps", type=int, default=3)
    p.add_argument("--json", default=None)
    add_bfcl_arguments(p)


def main(args: argparse.Namespace) -> int:
    gguf = Path(args.gguf) if args.gguf else default_gguf()
    report: dict[str, Any] = {"machine": machine(), "gguf": str(gguf), "command": sys.argv}
    if args.server:
        _measure(report, args.server, gguf, args)
    else:
        from asynclm.backends.remote.llama_server import llama_cpp_server

        with llama_cpp_server(gguf, n_threads=args.threads) as spec:
            _measure(report, spec, gguf, args)
    write_json(args.json, report)
    return 0


def _measure(report: dict[str, Any], spec: str, gguf: Path, args: argparse.Namespace) -> None:
    if "restart" in args.sections:
        report["restart"] = anyio.run(restart_section, spec, gguf, args)
        print(restart_table(report["restart"]))
    if "agent" in args.sections:
        report["agent"] = anyio.run(agent_section, spec, gguf, args)
        print(agent_table(report["agent"]))
    if "bfcl" in args.sections:
        report["bfcl"] = anyio.run(bfcl_section, spec, gguf, args)
        print(bfcl_table(report["bfcl"]))


def default_gguf() -> Path:
    """SmolLM2-135M with the CML tokens as Q8_0 GGUF, exported once into the cache."""
    from asynclm.engine.paths import cache_root
    from asynclm.export import export_gguf, merge

    path = cache_root() / "exports" / "smollm2-135m-cml-q8_0.gguf"
    if not path.exists():
        print(f"exporting {path} (once) ...", file=sys.stderr)
        export_gguf(merge("smollm2-135m"), path, outtype="q8_0")
    return path


# ---- restart cost ------------------------------------------------------------------------------
async def restart_section(spec: str, gguf: Path, args: argparse.Namespace) -> dict[str, Any]:
    from asynclm.backends.remote import RemoteBackend
    from asynclm.engine.engine import Engine

    backend = RemoteBackend(spec, tokenizer=_tokenizer_for(gguf))
    await backend.connect()
    engine = Engine.load(str(gguf), device="cpu")  # the same file, dequantised
    out: dict[str, Any] = {"server": backend.profile.kind}
    for n in args.prompt_tokens:
        prompt = _prompt(backend.tokenizer, n)
        remote = [await _remote_restart(backend, prompt, args.after) for _ in range(args.reps)]
        local = [await _local_inject(engine, prompt, args.after) for _ in range(args.reps)]
        out[str(n)] = {"remote": _medians(remote), "local": _medians(local)}
        print(f"prompt {n}: remote {out[str(n)]['remote']}", file=sys.stderr)
    return out


def _tokenizer_for(gguf: Path) -> Any:
    from asynclm.backends.remote import load_tokenizer

    return load_tokenizer(gguf, None)


def _prompt(tokenizer: Any, n: int) -> str:
    text = FILLER * (n // len(tokenizer.encode(FILLER)) + 1)
    ids = tokenizer.encode(text)[: max(1, n - 16)]
    chat = tokenizer.chat
    return chat.render("user", tokenizer.decode(ids)) + chat.generation_prompt


async def _remote_restart(backend: Any, prompt: str, after: int) -> dict[str, float]:
    interrupt = _interrupt_ids(backend.tokenizer)
    await _evict(backend)
    async with backend.context() as ctx:
        ctx.append(prompt)
        gen = ctx.generate(max_tokens=after + 8, ban=backend.tokenizer.eos_token_ids)
        times = await _stream(gen, after)
        ctx.append(interrupt)
        started = time.perf_counter()
        await gen.__anext__()
        restart = time.perf_counter() - started
        gen.stop()
    first, second = backend.stats.submissions[-2:]
    return {
        "cold_first_token_s": times[0],
        "per_token_s": statistics.median(_gaps(times)),
        "restart_first_token_s": restart,
        "prompt_tokens": first.prompt_tokens,
        "restart_prompt_tokens": second.prompt_tokens,
        "recomputed_tokens": second.recomputed_tokens,
        "discarded_tokens": second.discarded_tokens,
    }


def _interrupt_ids(tokenizer: Any) -> list[int]:
    """The interrupt's tokens as the agent injects them: markers special, the value plain."""
    text, value = INTERRUPT.removeprefix("[INTR] ").removesuffix(" [END]").split(" [HEAD] ", 1)
    pieces = interrupt_pieces(text, value)
    return [t for piece, special in pieces for t in tokenizer.encode(piece, special=special)]


async def _evict(backend: Any) -> None:
    """A short unrelated request: the server's one cached sequence is no longer ours."""
    async with backend.context() as ctx:
        ctx.append("Hello")
        await ctx.generate(max_tokens=1).collect_text()


async def _local_inject(engine: Any, prompt: str, after: int) -> dict[str, float]:
    interrupt = _interrupt_ids(engine.tokenizer)
    async with engine.context() as ctx:
        ctx.append(prompt)
        gen = ctx.generate(max_tokens=after + 8, ban=engine.tokenizer.eos_token_ids)
        times = await _stream(gen, after)
        gen.accept(interrupt)
        started = time.perf_counter()
        await gen.__anext__()
        inject = time.perf_counter() - started
        gen.stop()
    return {
        "cold_first_token_s": times[0],
        "per_token_s": statistics.median(_gaps(times)),
        "inject_first_token_s": inject,
        "recomputed_tokens": 0,
    }


async def _stream(gen: Any, n: int) -> list[float]:
    """Times (from the start) at which the first n tokens arrived."""
    started, times = time.perf_counter(), []
    async for _ in gen:
        times.append(time.perf_counter() - started)
        if len(times) >= n:
            break
    return times


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)] or [0.0]


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def restart_table(section: dict[str, Any]) -> str:
    rows = []
    for n, data in section.items():
        if n == "server":
            continue
        r, loc = data["remote"], data["local"]
        rows.append(
            (
                n,
                f"{r['cold_first_token_s'] * 1000:.0f}",
                f"{r['restart_first_token_s'] * 1000:.0f}",
                f"{r['recomputed_tokens']:.0f}",
                f"{r['discarded_tokens']:.0f}",
                f"{r['per_token_s'] * 1000:.0f}",
                f"{loc['inject_first_token_s'] * 1000:.0f}",
                f"{loc['per_token_s'] * 1000:.0f}",
            )
        )
    header = (
        "prompt",
        "server cold TTFT ms",
        "server restart TTFT ms",
        "recomputed",
        "discarded",
        "server ms/token",
        "engine inject ms",
        "engine ms/token",
    )
    return table(rows, header)


# ---- agent runs --------------------------------------------------------------------------------
AGENT_RUNS = (
    ("engine", "sync"),
    ("engine", "async"),
    ("server", "sync"),
    ("server", "sync-parallel"),
    ("server", "async"),
)


async def agent_section(spec: str, gguf: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Each task in each mode and place, interleaved (drifts of the machine hit all alike)."""
    from asynclm.backends.remote import RemoteBackend
    from asynclm.bench.agent import TASKS
    from asynclm.engine.engine import Engine

    engine = Engine.load(str(gguf), device="cpu")
    backend = RemoteBackend(spec, tokenizer=_tokenizer_for(gguf))
    await backend.connect()
    out: dict[str, Any] = {}
    for name in args.tasks:
        runs: dict[str, list[dict[str, Any]]] = {f"{w}/{m}": [] for w, m in AGENT_RUNS}
        for _ in range(args.agent_reps):
            for where, mode in AGENT_RUNS:
                before = len(backend.stats.submissions)
                place = engine if where == "engine" else backend
                result = await _agent_run(TASKS[name], mode, place)
                subs = backend.stats.submissions[before:] if where == "server" else []
                runs[f"{where}/{mode}"].append(_figures(result, subs))
                print(f"{name} {where}/{mode}: {result.elapsed:.2f} s", file=sys.stderr)
        out[name] = {key: _summary(rs) for key, rs in runs.items()}
    return out


async def _agent_run(task: Any, mode: str, place: Any) -> Any:
    """One run of the task's oracle trace forced on the real model (`asynclm.backends.forced`)."""
    from contextlib import asynccontextmanager
    from dataclasses import replace

    from asynclm.agent import Agent, AgentRun
    from asynclm.backends.forced import ForcedTrace
    from asynclm.bench.agent import make_policy, make_tools
    from asynclm.engine.engine import Engine
    from asynclm.tools.simulated import simulated_latency

    policy = make_policy(task, {s.name: simulated_latency(s.name) for s in task.steps})
    local = isinstance(place, Engine)
    kwargs: dict[str, Any] = {"model": place} if local else {"backend": place}
    agent = Agent(make_tools(task), mode=mode, max_tokens=800, **kwargs)  # type: ignore[arg-type]
    await agent.warm()  # the system prompt is cached before the clock starts
    live: list[Any] = []

    @asynccontextmanager
    async def open_context(prompt: str) -> Any:
        async with agent.open_context(prompt) as ctx:
            live.append(ctx)
            yield ctx

    tokenizer = place.tokenizer
    forced = ForcedTrace(policy, tokenizer, lambda: tokenizer.decode(live[-1].context.tokens))
    spec = replace(agent.run_spec(), open_context=open_context, make_constraint=lambda: forced)
    return await AgentRun(spec, task.prompt).execute()


def _figures(result: Any, submissions: list[Any]) -> dict[str, float]:
    from asynclm.backends.remote.stats import summarize

    figures = {
        "latency_s": result.elapsed,
        "calls": len(result.calls),
        "calls_ok": sum(c.ok for c in result.calls),
        "generated_tokens": result.usage.generated_tokens,
        "interrupts": result.usage.interrupts,
    }
    if submissions:
        figures.update(summarize(submissions))
    return figures


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {f"{k}_median": statistics.median(r[k] for r in runs) for k in runs[0]}
    out["latency_s_min"] = min(r["latency_s"] for r in runs)
    out["latency_s_max"] = max(r["latency_s"] for r in runs)
    return out


def agent_table(section: dict[str, Any]) -> str:
    rows = []
    for task, runs in section.items():
        sync = runs["engine/sync"]["latency_s_median"]
        for key, r in runs.items():
            rows.append(
                (
                    task,
                    key,
                    f"{r['latency_s_median']:.2f}",
                    f"{sync / r['latency_s_median']:.2f}x",
                    f"{r['calls_ok_median']:.0f}/{r['calls_median']:.0f}",
                    f"{r.get('requests_median', 0):.0f}",
                    f"{r.get('recomputed_tokens_per_restart_median', 0):.1f}",
                    f"{r.get('discarded_tokens_per_restart_median', 0):.1f}",
                    f"{r.get('restart_first_token_s_median', 0) * 1000:.0f}",
                )
            )
    header = (
        "task",
        "where/mode",
        "latency s",
        "vs engine sync",
        "calls ok",
        "requests",
        "recomputed/restart",
        "discarded/restart",
        "restart TTFT ms",
    )
    return table(rows, header)
