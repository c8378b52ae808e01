"""`asynclm info`: this machine's CPU, the native kernels, and the kernels chosen for a model.

Loading the model measures the kernels of its linear layers on this machine, or reads the
timings cached for this kind of CPU (`--retune` measures again; `--rebuild` compiles the native
kernels again, e.g. after a failed build).
"""

from __future__ import annotations

import argparse
import json

from asynclm.engine.kernels.plan import describe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m", help="model whose kernels to show")
    p.add_argument(
        "--adapter", default="auto", help="LoRA adapter merged at load ('auto', 'none', a folder)"
    )
    p.add_argument("--weights", default="auto", help="weight formats allowed (auto, fp32, int8...)")
    p.add_argument("--retune", action="store_true", help="measure the kernels again")
    p.add_argument("--rebuild", action="store_true", help="compile the native kernels again")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args: argparse.Namespace) -> int:
    from asynclm.engine.engine import Engine
    from asynclm.engine.kernels.check import problems
    from asynclm.engine.kernels.native import load_native
    from asynclm.engine.tuning import plan_kernels
    from asynclm.engine.weights import WeightPolicy

    if args.rebuild:
        load_native(rebuild=True)
        problems.cache_clear()
    engine = Engine.load(args.model, args.adapter, weights=args.weights, tune=not args.retune)
    if args.retune:
        engine.kernels = plan_kernels(engine.model, WeightPolicy.parse(args.weights), retune=True)
        engine.tune_threads(retune=True)
        engine.tune_attention(retune=True)
    report = engine.kernels
    plan = engine.runner.threads
    causal = engine.attention
    if report is None:
        print("the model does not run on the CPU: no kernel choices to show")
        return 0
    if args.json:
        extra = {"thread_plan": plan and plan.as_dict(), "attention": causal and causal.as_dict()}
        print(json.dumps({**report.as_dict(), **extra}, indent=2))
        return 0
    cpu = report.cpu
    found = problems()
    print(f"cpu: {cpu.model} ({cpu.vendor}), {cpu.physical_cores} cores, torch ISA {cpu.torch_isa}")
    print(f"features: {' '.join(cpu.notable_flags) or '(none notable)'}; machine key {cpu.key}")
    print(f"native kernels: {'in use' if not found else 'off: ' + found[0]}")
    print(f"threads: {report.threads}; weights: {report.weights}")
    if plan is not None:
        print(
            f"threads per forward ({'from the cache' if plan.cached else 'measured'}): "
            f"{plan.describe()}"
        )
    if causal is not None:
        how = "from the cache" if causal.cached else "measured"
        print(f"causal attention of prefill chunks ({how}): {causal.describe()}")
    measured = f"measured in {report.seconds:.1f} s" if report.seconds else "from the cache"
    print(f"kernel choices ({measured}):")
    for site in report.sites:
        block = f", {site.block}{' exact' if site.exact else ''}" if site.block else ""
        shape = f"{site.shape[0]}x{site.shape[1]}"
        print(f"  {site.site:<22} {shape:>11} x{site.layers:<3}{block}: {describe(site.plan)}")
    return 0
