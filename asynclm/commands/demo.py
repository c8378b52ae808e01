"""`asynclm demo`: one multi-tool task on the default model, in sync and in async mode.

The default model is SmolLM2-135M-Instruct with the CML adapter shipped in the package (made by
`asynclm finetune`), which writes the protocol on its own. With `--adapter none` (or when no
adapter is shipped) the plain model is held to the protocol by constrained decoding (call
blocks of known tools with valid arguments, then a trap, then the answer). The tool is
simulated with a fixed latency per city, so both modes face exactly the same work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Literal

import anyio

CITIES = {
    "Paris": (0.9, "sunny, 21 C"),
    "Tokyo": (1.4, "light rain, 17 C"),
    "London": (0.7, "cloudy, 15 C"),
    "Sydney": (1.1, "clear, 24 C"),
    "New York": (1.0, "windy, 12 C"),
}
City = Literal["Paris", "Tokyo", "London", "Sydney", "New York"]
PROMPT = "What is the weather in Paris, Tokyo and London right now?"
SYSTEM = "You are a weather assistant. Look up every city the user names, then answer briefly."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--model", default="smollm2-135m", help="preset name or local model path")
    p.add_argument(
        "--adapter",
        default="auto",
        help="auto: the shipped CML adapter (no grammar needed), none: the plain model held to "
        "the protocol by a grammar, or an adapter folder",
    )
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--out", default="runs/demo", help="folder for traces (Chrome JSON) and PNGs")


def make_tools():
    from asynclm.agent import tool

    @tool
    async def get_weather(city: City) -> str:
        """Current weather in a city."""
        latency, weather = CITIES[city]
        await anyio.sleep(latency)
        return weather

    return [get_weather]


def main(args: argparse.Namespace) -> int:
    from asynclm.agent import Agent
    from asynclm.engine.loader import resolve_adapter
    from asynclm.trace import render_timeline

    tools = make_tools()
    adapter = resolve_adapter(args.model, args.adapter)
    constrained = adapter is None
    agent = Agent(
        tools,
        model=args.model,
        adapter=str(adapter) if adapter is not None else None,
        system=SYSTEM,
        constrained=constrained,
        max_calls=3 if constrained else None,
        max_tokens=args.max_tokens,
    )
    print(f"model: {args.model}{f' + {adapter}' if adapter else ' (constrained decoding)'}")
    print(f"task:  {args.prompt}\n")
    anyio.run(agent.warm)  # the system prompt is computed once, outside the timings
    results = {}
    for mode in ("sync", "async"):
        result = agent.run_sync(args.prompt, mode=mode)
        results[mode] = result
        _report(mode, result, render_timeline(result.timeline))
    sync_s, async_s = results["sync"].elapsed, results["async"].elapsed
    print(f"latency: sync {sync_s:.2f} s, async {async_s:.2f} s -> speedup {sync_s / async_s:.2f}x")
    _save(Path(args.out), results)
    return 0


def _report(mode: str, result, timeline: str) -> None:
    print(
        f"--- {mode} mode: {result.elapsed:.2f} s, {result.usage.generated_tokens} tokens written, "
        f"{len(result.calls)} calls, {result.usage.interrupts} interrupts"
    )
    for call in result.calls:
        outcome = call.result_text if call.ok else f"error: {call.error}"
        print(f"  {call.id}: {call.body} -> {outcome}")
    print(f"  answer: {result.output or '(none)'}")
    print(timeline)
    print()


def _save(folder: Path, results: dict) -> None:
    from asynclm.trace import draw_gantt

    folder.mkdir(parents=True, exist_ok=True)
    summary = {}
    for mode, result in results.items():
        result.timeline.save_chrome(folder / f"{mode}.trace.json")
        with contextlib.suppress(ImportError):  # matplotlib is optional
            draw_gantt(result.timeline, folder / f"{mode}.png", title=f"{mode} mode")
        summary[mode] = {
            "elapsed_s": result.elapsed,
            "calls": len(result.calls),
            "generated_tokens": result.usage.generated_tokens,
            "output": result.output,
        }
    summary["speedup_async_vs_sync"] = results["sync"].elapsed / results["async"].elapsed
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"traces, Gantt charts and summary.json written to {folder}/")
