"""`asynclm inferlet FILE --arg k=v`: run an inferlet on the default model."""

from __future__ import annotations

import argparse
import json

import anyio


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a Python file defining `async def main(runtime, **args)`")
    p.add_argument("--arg", action="append", default=[], metavar="K=V", help="argument for main")
    p.add_argument("--model", default="smollm2-135m", help="preset name or local model path")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder to merge")
    p.add_argument("--max-pages", type=int, default=None, help="KV page quota")
    p.add_argument("--max-tokens", type=int, default=None, help="processed-token quota")
    p.add_argument("--max-seconds", type=float, default=None, help="wall-time quota")


def main(args: argparse.Namespace) -> int:
    from asynclm.engine.engine import Engine
    from asynclm.engine.inferlet import load_inferlet, parse_cli_args, run_inferlet
    from asynclm.engine.scope import Quota

    entry = load_inferlet(args.file)
    kwargs = parse_cli_args(args.arg)
    engine = Engine.load(args.model, args.adapter)
    quota = Quota(args.max_pages, args.max_tokens, args.max_seconds)
    result = anyio.run(lambda: run_inferlet(engine, entry, kwargs, quota=quota))
    if result is not None:
        print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0
