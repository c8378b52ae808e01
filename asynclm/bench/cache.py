"""`asynclm bench cache`: Prompt Cache time-to-first-token vs a full prefill, on real text.

A schema holds a system prompt and a document module of 512 ... 4096 tokens (the Python
documentation shipped in the standard library, `pydoc_data.topics`, PSF-licensed: nothing is
downloaded); a prompt selects it and asks a short question. Measured side by side in one run:

- TTFT of the cached path (`cache.context` + first token) under the "prefix" encoding (exact)
  and the "modular" one (modules computed alone), vs a full prefill of the same tokens at the
  same positions (+ first token); medians of `--reps` runs.
- Greedy answers: "prefix" must equal the full prefill; "modular" agreement over a few
  documents and questions.
- Warm start: a second process (this module, with a hidden flag) reads the module K/V from the
  disk store; its first request vs a cold first request (compute + store).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SIZES = (512, 1024, 2048, 4096)
SYSTEM = "You are a helpful assistant. Answer questions about the Python documentation."
QUESTIONS = (
    "What is this documentation about? Answer in one sentence.",
    "Name one concept this documentation explains.",
)
PAPER = {
    "cpu_speedup": 60.0,
    "gpu_speedup": 8.0,
    "demo_cpu_full_s": 17.9,
    "demo_cpu_cached_s": 0.51,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `asynclm bench cache`."""
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="document module sizes in tokens, comma-separated (default: 512,1024,2048,4096)",
    )
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (default: 3)")
    parser.add_argument("--model", default="smollm2-135m", help="model (default: smollm2-135m)")
    parser.add_argument(
        "--answer-tokens", type=int, default=16, help="greedy answer length (default: 16)"
    )
    parser.add_argument(
        "--docs", type=int, default=4, help="documents in the answer-agreement set (default: 4)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")
    parser.add_argument("--warm-child", default=None, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table (and write JSON with `--json`)."""
    import anyio

    if args.reps < 1 or args.docs < 1 or args.answer_tokens < 1:
        raise ValueError("--reps, --docs and --answer-tokens must be >= 1")
    if args.warm_child:
        print(json.dumps(anyio.run(_warm_child, args)))
        return 0
    results = anyio.run(_run, args)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 16:
        raise argparse.ArgumentTypeError("sizes must be integers >= 16")
    return sizes


# ---- the workload ----------------------------------------------------------------------------


def documents(count: int) -> list[tuple[str, str]]:
    """The `count` longest topics of the standard library's documentation, as (name, text)."""
    from pydoc_data.topics import topics

    ranked = sorted(topics.items(), key=lambda item: (-len(item[1]), item[0]))
    return [(name, text.strip()) for name, text in ranked[:count]]


def _truncate(engine: Any, text: str, tokens: int) -> str:
    ids = engine.tokenizer.encode(text)
    return engine.tokenizer.decode(ids[:tokens])


def build_schema(engine: Any, name: str, docs: Sequence[str], size: int, encoding: str) -> Any:
    """System prompt, then one document module per text (a union if several) of ~`size` tokens."""
    from asynclm.promptcache import Module, Schema, System, Union, User

    wrapper = engine.tokenizer.chat.render("user", "Documentation:\n\n")
    overhead = len(engine.tokenizer.encode(wrapper))
    modules = [
        Module(f"doc{i}", User(["Documentation:\n\n", _truncate(engine, text, size - overhead)]))
        for i, text in enumerate(docs)
    ]
    body = modules[0] if len(modules) == 1 else Union(modules)
    return Schema(name, [System(SYSTEM), body], encoding=encoding)  # type: ignore[arg-type]


def ask(schema: str, doc: int, question: str) -> Any:
    from asynclm.promptcache import Prompt, Select, User

    return Prompt(schema, [Select(f"doc{doc}")], [User(question)])


# ---- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shot:
    """One request: time to its first token and its greedy answer."""

    seconds: float
    answer: tuple[int, ...]


async def measure(make: Callable[[], Awaitable[Any]], answer_tokens: int, full: bool) -> Shot:
    """Time `make()` (a context) + its first generated token; then finish the answer if `full`."""
    start = time.perf_counter()
    ctx = await make()
    try:
        generation = ctx.generate(max_tokens=answer_tokens if full else 1)
        first = await generation.__anext__()
        seconds = time.perf_counter() - start
        answer = [first.token] + [step.token async for step in generation]
    finally:
        ctx.release()
    return Shot(seconds, tuple(answer))


def cached(cache: Any, prompt: Any) -> Callable[[], Awaitable[Any]]:
    async def make() -> Any:
        ctx = await cache.context(prompt)
        ctx.assistant()
        return ctx

    return make


def prefilled(engine: Any, tokens: list[int], positions: list[int]) -> Callable[[], Awaitable[Any]]:
    async def make() -> Any:
        ctx = engine.context()
        ctx.append(tokens, positions)
        return ctx

    return make


async def prompt_tokens(cache: Any, prompt: Any) -> tuple[list[int], list[int]]:
    """Tokens and positions of the cached path's prompt (for the full-prefill reference)."""
    ctx = await cached(cache, prompt)()
    try:
        return ctx.tokens, ctx.positions
    finally:
        ctx.release()


class Progress:
    """A tqdm bar on stderr over every timed request."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, file=sys.stderr, unit="req", dynamic_ncols=True)

    def step(self, what: str) -> None:
        self.bar.set_description(what)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ---- the phases ------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from asynclm.engine.engine import Engine
    from asynclm.promptcache import PromptCache

    engine = Engine.load(args.model)
    docs = documents(args.docs)
    steps = len(args.sizes) * (3 * args.reps + 2) + len(docs) * len(QUESTIONS) * 3 + 2
    progress = Progress(steps)
    caches = {"prefix": PromptCache(engine), "modular": PromptCache(engine)}
    await measure(prefilled(engine, [1] * 8, list(range(8))), 1, False)  # first-call overhead
    try:
        ttft, answers = {}, []
        for size in args.sizes:
            ttft[str(size)], pair = await _ttft(engine, caches, docs[0][1], size, args, progress)
            answers.append(pair)
        answers += await _agreement(engine, caches, docs, min(args.sizes), args, progress)
        warm = await _warm_start(engine, docs[0][1], max(args.sizes), args, progress)
    finally:
        progress.close()
    return {
        "model": args.model,
        "device": str(engine.device),
        "threads": torch.get_num_threads(),
        "reps": args.reps,
        "answer_tokens": args.answer_tokens,
        "documents": [name for name, _ in docs],
        "ttft": ttft,
        **_agreement_summary(answers),
        "warm_start": warm,
        "paper": PAPER,
    }


async def _ttft(
    engine: Any,
    caches: dict[str, Any],
    doc: str,
    size: int,
    args: argparse.Namespace,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """Full prefill vs the two cached paths at one module size, interleaved."""
    name = f"ttft-{size}"
    prompt = ask(name, 0, QUESTIONS[0])
    cold = {}
    for encoding, cache in caches.items():
        layout = cache.register(build_schema(engine, name, [doc], size, encoding))
        cold[encoding] = (await measure(cached(cache, prompt), 1, False)).seconds  # computes
        progress.step(f"{size}: cold {encoding}")
    tokens, positions = await prompt_tokens(caches["prefix"], prompt)
    makers = {
        "full": prefilled(engine, tokens, positions),
        "prefix": cached(caches["prefix"], prompt),
        "modular": cached(caches["modular"], prompt),
    }
    runs: dict[str, list[Shot]] = {kind: [] for kind in makers}
    for rep in range(args.reps):
        for kind, make in makers.items():  # interleaved: noise hits all three alike
            runs[kind].append(await measure(make, args.answer_tokens, rep == 0))
            progress.step(f"{size}: {kind} {rep + 1}/{args.reps}")
    for cache in caches.values():
        cache.clear()
    full, prefix, modular = (statistics.median(s.seconds for s in runs[k]) for k in runs)
    row = {
        "module_tokens": len(layout.module(["doc0"]).tokens),
        "prompt_tokens": len(tokens),
        "full_s": full,
        "cached_s": prefix,
        "speedup": full / prefix,
        "modular_s": modular,
        "modular_speedup": full / modular,
        "cold_s": cold,
        "runs": {k: [s.seconds for s in shots] for k, shots in runs.items()},
    }
    return row, {k: shots[0].answer for k, shots in runs.items()}


async def _agreement(
    engine: Any,
    caches: dict[str, Any],
    docs: list[tuple[str, str]],
    size: int,
    args: argparse.Namespace,
    progress: Progress,
) -> list[dict[str, tuple[int, ...]]]:
    """Greedy answers of several documents and questions: full prefill vs both encodings."""
    name = f"answers-{size}"
    texts = [text for _, text in docs[: args.docs]]
    for encoding, cache in caches.items():
        cache.register(build_schema(engine, name, texts, size, encoding))
        await cache.warm(name)
    answers = []
    for doc in range(len(texts)):
        for question in QUESTIONS:
            prompt = ask(name, doc, question)
            tokens, positions = await prompt_tokens(caches["prefix"], prompt)
            makers = {
                "full": prefilled(engine, tokens, positions),
                **{encoding: cached(cache, prompt) for encoding, cache in caches.items()},
            }
            pair = {}
            for kind, make in makers.items():
                pair[kind] = (await measure(make, args.answer_tokens, True)).answer
                progress.step(f"answers: doc {doc + 1}/{len(texts)} {kind}")
            answers.append(pair)
    for cache in caches.values():
        cache.clear()
    return answers


def _agreement_summary(answers: list[dict[str, tuple[int, ...]]]) -> dict[str, Any]:
    def same(kind: str) -> int:
        return sum(a[kind] == a["full"] for a in answers)

    def common_prefix(a: dict[str, tuple[int, ...]]) -> float:
        """Share of the full-prefill answer the modular one reproduces before diverging."""
        full, mod = a["full"], a["modular"]
        n = next((i for i, (x, y) in enumerate(zip(full, mod, strict=False)) if x != y), None)
        same = min(len(full), len(mod)) if n is None else n
        return same / max(len(full), 1) if full != mod else 1.0

    n = len(answers)
    return {
        "prefix_identical": same("prefix") == n,
        "prefix_answers": {"identical": same("prefix"), "total": n},
        "modular_agreement": same("modular") / n,
        "modular_prefix_agreement": sum(common_prefix(a) for a in answers) / n,
        "modular_answers": {"identical": same("modular"), "total": n},
    }


async def _warm_start(
    engine: Any, doc: str, size: int, args: argparse.Namespace, progress: Progress
) -> dict[str, Any]:
    """A cold first request (compute + store to disk) here; a warm one in a second process."""
    from asynclm.promptcache import PromptCache

    with tempfile.TemporaryDirectory(prefix="asynclm-pc-") as folder:
        cache = PromptCache(engine, disk_dir=folder)
        name = f"ttft-{size}"
        cache.register(build_schema(engine, name, [doc], size, "prefix"))
        cold = await measure(cached(cache, ask(name, 0, QUESTIONS[0])), args.answer_tokens, True)
        cache.clear()
        progress.step("warm start: cold request")
        child = _spawn_child(folder, size, args)
        progress.step("warm start: second process")
    return {
        "module_tokens": size,
        "cold_s": cold.seconds,
        "warm_s": child["warm_s"],
        "speedup": cold.seconds / child["warm_s"],
        "identical": tuple(child["answer"]) == cold.answer,
        "disk_loads": child["disk_loads"],
        "computed_tokens": child["computed_tokens"],
        "child_model_load_s": child["load_s"],
    }


def _spawn_child(folder: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "asynclm.bench.cache", "--warm-child", folder, "--model", args.model,
        "--sizes", str(size), "--answer-tokens", str(args.answer_tokens),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the warm-start process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def _warm_child(args: argparse.Namespace) -> dict[str, Any]:
    """The second process: a fresh engine whose first request reads the module from disk."""
    from asynclm.engine.engine import Engine
    from asynclm.promptcache import PromptCache

    start = time.perf_counter()
    engine = Engine.load(args.model)
    load_s = time.perf_counter() - start
    await measure(prefilled(engine, [1] * 8, list(range(8))), 1, False)  # first-call overhead
    size = args.sizes[0]
    doc = documents(1)[0][1]
    cache = PromptCache(engine, disk_dir=args.warm_child)
    name = f"ttft-{size}"
    cache.register(build_schema(engine, name, [doc], size, "prefix"))
    shot = await measure(cached(cache, ask(name, 0, QUESTIONS[0])), args.answer_tokens, True)
    stats = cache.stats
    return {
        "warm_s": shot.seconds,
        "answer": list(shot.answer),
        "load_s": load_s,
        "disk_loads": stats.disk_loads,
        "computed_tokens": stats.computed_tokens,
    }


# ---- the report ------------------------------------------------------------------------------


def format_table(r: dict[str, Any]) -> str:
    """The results as text: ours beside the reference (full prefill, and the paper's figures)."""
    lines = [
        f"Prompt Cache on {r['model']} ({r['device']}, {r['threads']} threads): "
        f"TTFT = context + first token, median of {r['reps']}",
        "",
        "module  prompt | full prefill | prefix cached  speedup | modular cached  speedup",
        "tokens  tokens |          (s) |           (s)          |            (s)",
    ]
    for size, row in r["ttft"].items():
        lines.append(
            f"{size:>6}  {row['prompt_tokens']:>6} | {row['full_s']:>12.3f} | "
            f"{row['cached_s']:>13.3f}  {row['speedup']:>6.1f}x | "
            f"{row['modular_s']:>14.3f}  {row['modular_speedup']:>6.1f}x"
        )
    p, m, w = r["prefix_answers"], r["modular_answers"], r["warm_start"]
    lines += [
        f"paper (Prompt Cache, MLSys 2024): TTFT {PAPER['cpu_speedup']:.0f}x lower on CPU "
        f"(demo {PAPER['demo_cpu_full_s']} s -> {PAPER['demo_cpu_cached_s']} s), "
        f"{PAPER['gpu_speedup']:.0f}x on GPU",
        "",
        f"greedy answers ({r['answer_tokens']} tokens) vs full prefill:",
        f"  prefix:  {p['identical']}/{p['total']} identical "
        f"({'exact, as it must be' if r['prefix_identical'] else 'NOT EXACT'})",
        f"  modular: {m['identical']}/{m['total']} identical = {r['modular_agreement']:.2f}, "
        f"common prefix {r['modular_prefix_agreement']:.2f} (the modular approximation)",
        "",
        f"warm start ({w['module_tokens']}-token module, disk store):",
        f"  cold first request (compute + store):        {w['cold_s']:8.3f} s",
        f"  second process, first request (from disk):   {w['warm_s']:8.3f} s  "
        f"-> {w['speedup']:.1f}x, answer identical: {'yes' if w['identical'] else 'NO'}, "
        f"{w['computed_tokens']} module tokens computed",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m asynclm.bench.cache", description=__doc__)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
