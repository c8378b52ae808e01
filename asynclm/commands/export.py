"""`asynclm export --adapter DIR --format hf|gguf --out PATH`: hand the tuned model to servers.

The base model with the adapter merged and the CML markers as tokens, as a transformers folder
(vLLM, SGLang: `vllm serve PATH`) or as a GGUF file (llama.cpp:
`python -m llama_cpp.server --model PATH`).
"""

from __future__ import annotations

import argparse
import sys
import time

from asynclm.engine.loader import DEFAULT_MODEL


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="base model: preset, folder or .gguf")
    p.add_argument(
        "--adapter",
        default="auto",
        help="PEFT LoRA adapter folder; auto (default): the CML adapter shipped for the model "
        "preset, if any; none: the base model",
    )
    p.add_argument("--format", choices=["hf", "gguf"], required=True)
    p.add_argument("--out", required=True, help="folder (hf) or .gguf file (gguf) to write")
    p.add_argument(
        "--dtype",
        default=None,
        help="hf: float32 (default), bfloat16, float16; gguf: f16 (default), f32, q8_0",
    )
    p.add_argument("--pre", default=None, help="gguf: llama.cpp pre-tokenizer name if unknown")
    p.add_argument("--force", action="store_true", help="replace an existing output")


def main(args: argparse.Namespace) -> int:
    from asynclm.engine.loader import resolve_adapter
    from asynclm.export import export_gguf, export_hf, merge

    adapter = resolve_adapter(args.model, args.adapter)
    started = time.perf_counter()
    print(f"merging {adapter or 'no adapter'} into {args.model} ...", file=sys.stderr)
    merged = merge(args.model, adapter)
    if merged.added_markers:
        print(
            f"note: {', '.join(merged.added_markers)} added untrained (the adapter lacks them)",
            file=sys.stderr,
        )
    try:
        if args.format == "hf":
            out = export_hf(merged, args.out, dtype=args.dtype or "float32", force=args.force)
        else:
            out = export_gguf(
                merged, args.out, outtype=args.dtype or "f16", pre=args.pre, force=args.force
            )
    except FileExistsError as e:
        print(f"asynclm: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return 0
