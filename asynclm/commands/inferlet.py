"""`asynclm inferlet FILE --arg k=v`: run an inferlet on the default model.

It runs out of process, in a sandboxed process of its own (see docs/SECURITY.md), unless
`--in-process` (trusted code).
"""

from __future__ import annotations

import argparse
import json
import threading

import anyio


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a Python file defining `async def main(runtime, **args)`")
    p.add_argument("--arg", action="append", default=[], metavar="K=V", help="argument for main")
    p.add_argument("--model", default="smollm2-135m", help="preset name or local model path")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder to merge")
    p.add_argument("--max-pages", type=int, default=None, help="KV page quota")
    p.add_argument("--max-tokens", type=int, default=None, help="processed-token quota")
    p.add_argument("--max-seconds", type=float, default=None, help="wall-time quota")
    p.add_argument("--max-contexts", type=int, default=None, help="open-context quota")
    p.add_argument(
        "--in-process", action="store_true", help="run on the engine's event loop (trusted code)"
    )
    p.add_argument("--max-memory-mb", type=int, default=4096, help="the process's address space")
    p.add_argument("--max-cpu-seconds", type=int, default=None, help="the process's CPU time")
    p.add_argument("--user", default=None, help="run the process as this user (needs root)")
    p.add_argument("--no-network", action="store_true", help="run the process without network")


def main(args: argparse.Namespace) -> int:
    from asynclm.engine.engine import Engine
    from asynclm.inferlet import Isolation, Quota, Sandbox, parse_cli_args, run_inferlet
    from asynclm.inferlet.loading import entry_point, load_inferlet
    from asynclm.inferlet.spawner import Spawner

    kwargs = parse_cli_args(args.arg)
    quota = Quota(args.max_pages, args.max_tokens, args.max_seconds, args.max_contexts)
    isolation: Isolation = "in-process" if args.in_process else "process"
    if args.in_process:
        source = load_inferlet(args.file)
    else:
        entry_point(args.file)  # a missing file fails now, not after the model loads
        source = args.file
        threading.Thread(target=Spawner.shared().start, daemon=True).start()  # loads torch
    sandbox = Sandbox(
        max_memory_bytes=args.max_memory_mb << 20,
        max_cpu_seconds=args.max_cpu_seconds,
        user=args.user,
        network=not args.no_network,
    )
    engine = Engine.load(args.model, args.adapter)
    result = anyio.run(
        lambda: run_inferlet(
            engine, source, kwargs, quota=quota, isolation=isolation, sandbox=sandbox
        )
    )
    if result is not None:
        print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0
