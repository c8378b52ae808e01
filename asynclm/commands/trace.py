"""`asynclm trace FILE --png OUT`: draw a saved run trace (Chrome trace JSON)."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file", help="a Chrome trace JSON written by a run (RunResult.timeline.save_chrome)"
    )
    p.add_argument("--png", default=None, help="write a Gantt chart here")
    p.add_argument("--title", default=None)


def main(args: argparse.Namespace) -> int:
    from asynclm.trace import Trace, render_timeline, summarize

    trace = Trace.load_chrome(args.file)
    print(render_timeline(trace))
    print(json.dumps(summarize(trace), indent=2, default=str))
    if args.png:
        from asynclm.trace import draw_gantt

        print(f"gantt: {draw_gantt(trace, args.png, title=args.title)}")
    return 0
