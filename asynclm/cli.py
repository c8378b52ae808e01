"""The `asynclm` command line: demo, run, inferlet, trace, finetune, export, info, bench."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand → module with `add_arguments(parser)` and `main(args) -> int`; imported lazily
COMMANDS = {
    "demo": ("asynclm.commands.demo", "run the demo task on the default model"),
    "run": ("asynclm.commands.run", "run an agent on a prompt with the given tools"),
    "inferlet": ("asynclm.commands.inferlet", "run an inferlet file on the engine"),
    "trace": ("asynclm.commands.trace", "convert a run's trace to a Gantt PNG"),
    "finetune": ("asynclm.commands.finetune", "teach a model CML with LoRA; write the adapter"),
    "export": ("asynclm.commands.export", "merge an adapter and write an HF folder or GGUF file"),
    "info": ("asynclm.commands.info", "the CPU, native kernels and kernel choices on this machine"),
}
BENCHMARKS = {
    "engine": ("asynclm.bench.engine", "inference core vs transformers"),
    "cache": ("asynclm.bench.cache", "Prompt Cache vs full prefill"),
    "agent": ("asynclm.bench.agent", "sync vs sync-parallel vs async agent latency"),
    "session": ("asynclm.bench.session", "a conversation's TTFT: session (kept K/V) vs replay"),
    "bfcl": ("asynclm.bench.bfcl", "BFCL accuracy and latency: sync vs sync-parallel vs async"),
    "heldout": (
        "asynclm.bench.heldout",
        "adapters side by side on held-out tasks (tools never seen in training)",
    ),
    "lora": (
        "asynclm.bench.lora",
        "decode with a LoRA adapter: unmerged on exact blocks vs merged",
    ),
    "backends": ("asynclm.bench.backends", "interrupts on a serving engine vs our engine"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asynclm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == wanted:
            _attach(p, module)
    bench = sub.add_parser("bench", help="benchmarks that print their reference side by side")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    wanted_bench = argv[argv.index("bench") + 1] if "bench" in argv[:-1] else None
    for name, (module, help_text) in BENCHMARKS.items():
        p = bench_sub.add_parser(name, help=help_text)
        if name == wanted_bench:
            _attach(p, module)
    return parser


def _attach(parser: argparse.ArgumentParser, module_name: str) -> None:
    module = importlib.import_module(module_name)
    module.add_arguments(parser)
    parser.set_defaults(handler=module.main)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # e.g. `asynclm bench` with no benchmark
        build_parser([]).parse_args([*argv, "--help"])
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"asynclm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
