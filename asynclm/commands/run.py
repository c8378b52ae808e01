"""`asynclm run "prompt" --tool module:attr ... --mode async`: run an agent from the shell.

The answer streams as the model writes it; calls and interrupts are listed as they happen, and
the run's timeline is drawn at the end.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import anyio

from asynclm.agent.result import MODES

BUILTIN_TOOLS = {
    "calculator": "asynclm.tools.calculator:calculator",
    "now": "asynclm.tools.clock:now",
    "sleep": "asynclm.tools.clock:sleep",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt")
    p.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a Tool, a function or a list of them; built in: " + ", ".join(BUILTIN_TOOLS),
    )
    p.add_argument("--mode", choices=MODES, default="async")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument(
        "--adapter",
        default="auto",
        help="auto: the CML adapter shipped for the model (SmolLM2), if any; none; or a folder",
    )
    p.add_argument("--system", default=None, help="instructions before the tool documentation")
    p.add_argument(
        "--constrained",
        nargs="?",
        const="turn",
        default=None,
        choices=("turn", "calls"),
        help="hold the model to a grammar: turn (the default when given alone): its whole "
        "turn, for an untuned model; calls: only the call blocks it writes, for a tuned one",
    )
    p.add_argument(
        "--backend",
        default=None,
        metavar="openai:URL",
        help="run on a server: openai:URL (CML, all modes) or openai-chat:URL (tool calling)",
    )
    p.add_argument("--tokenizer", default=None, help="with --backend: the served model's tokenizer")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--trace", default=None, help="write the run's Chrome trace JSON here")
    p.add_argument("--png", default=None, help="write the run's Gantt chart here")


def load_tools(specs: list[str]) -> list[Any]:
    """Tools from `module:attr` specs (or built-in names)."""
    tools: list[Any] = []
    for spec in specs:
        target = BUILTIN_TOOLS.get(spec, spec)
        module_name, sep, attr = target.partition(":")
        if not sep or not attr:
            raise ValueError(f"--tool expects MODULE:ATTR or a built-in name, got {spec!r}")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load tool {spec!r}: {e}") from e
        tools.extend(obj if isinstance(obj, (list, tuple)) else [obj])
    return tools


def main(args: argparse.Namespace) -> int:
    from asynclm.agent import Agent
    from asynclm.trace import render_timeline

    backend = None
    if args.backend:
        from asynclm.backends.remote import RemoteBackend

        backend = RemoteBackend(args.backend, tokenizer=args.tokenizer)
    agent = Agent(
        load_tools(args.tool),
        backend=backend,
        mode=args.mode,
        model=args.model,
        adapter=args.adapter,
        system=args.system,
        constrained=args.constrained,
        max_tokens=args.max_tokens,
    )
    result = anyio.run(_stream, agent, args.prompt)
    print(
        f"\n\n{args.mode} mode: {result.elapsed:.2f} s, {result.usage.generated_tokens} tokens "
        f"written, {len(result.calls)} calls, {result.usage.interrupts} interrupts"
    )
    print(render_timeline(result.timeline))
    if args.trace:
        print(f"trace: {result.timeline.save_chrome(args.trace)}")
    if args.png:
        from asynclm.trace import draw_gantt

        print(f"gantt: {draw_gantt(result.timeline, args.png, title=args.prompt[:60])}")
    return 0


async def _stream(agent: Any, prompt: str) -> Any:
    from asynclm.agent import CallDispatched, CallFinished, TextDelta

    async with agent.run_stream(prompt) as run:
        async for event in run:
            if isinstance(event, TextDelta):
                sys.stdout.write(event.text)
            elif isinstance(event, CallDispatched):
                sys.stdout.write(
                    f"\n  [{event.t:6.2f} s] -> {event.call_id}: {event.name}({event.arguments})\n"
                )
            elif isinstance(event, CallFinished):
                state = "ok" if event.ok else "error"
                sys.stdout.write(
                    f"\n  [{event.t:6.2f} s] <- {event.call_id} {state}: {event.text[:80]}\n"
                )
            sys.stdout.flush()
    return run.result
