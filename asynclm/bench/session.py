"""`asynclm bench session`: time to first token of a conversation's 5th turn, kept vs replayed.

A conversation of `--turns` user messages runs through a `Session`, which keeps the
conversation's K/V between turns as an engine export. The last turn is then measured both ways,
side by side and interleaved, from the same history:

- session: the kept K/V is opened (pages shared) and only the new user message is prefilled;
- replay: `agent.run(message, message_history=...)`, what a hosted API must do — the system
  prompt comes from the Prompt Cache in both cases, but the whole history is prefilled again.

Printed: median TTFT of each (seconds from the run's start to its first generated token), the
tokens each prefilled, the speedup; `--json` writes them with the machine's description.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import anyio

SYSTEM = "You are a helpful travel assistant. Answer in one or two short sentences."
MESSAGES = (
    "I want to visit Japan in spring. Which city should I start with?",
    "How many days should I stay there?",
    "What food should I try?",
    "Is it easy to get around by train?",
    "Summarise the plan in one sentence.",
    "What should I pack?",
    "Any etiquette tips?",
    "Thanks! One last tip?",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `asynclm bench session`."""
    parser.add_argument("--model", default="smollm2-135m", help="model (default: smollm2-135m)")
    parser.add_argument(
        "--turns", type=int, default=5, help=f"turns, the last measured (2-{len(MESSAGES)})"
    )
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (default: 5)")
    parser.add_argument(
        "--answer-tokens", type=int, default=48, help="tokens per answer (default: 48)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the conversation, then time its last turn kept and replayed, interleaved."""
    from asynclm.agent import Agent, UsageLimits

    if not 2 <= args.turns <= len(MESSAGES) or args.reps < 1 or args.answer_tokens < 1:
        raise ValueError(f"need 2 <= --turns <= {len(MESSAGES)}, --reps >= 1, --answer-tokens >= 1")
    agent = Agent(model=args.model, system=SYSTEM, instrument=False)
    limits = UsageLimits(max_tokens=args.answer_tokens)
    *history_turns, last = MESSAGES[: args.turns]
    session = agent.session()
    for message in history_turns:
        await session.run(message, limits=limits)
    kept: list[Any] = []
    replayed: list[Any] = []
    short = UsageLimits(max_tokens=min(8, args.answer_tokens))  # the TTFT is what is measured
    for _ in range(args.reps):
        async with session.fork() as branch:  # the same history each time
            kept.append(await branch.run(last, limits=short))
        replayed.append(await agent.run(last, message_history=session.messages, limits=short))
    session.close()
    return _summary(args, kept, replayed, session.messages)


def _summary(
    args: argparse.Namespace, kept: list[Any], replayed: list[Any], history: Any
) -> dict[str, Any]:
    from asynclm.bench.common import machine

    def ttft(results: list[Any]) -> float:
        return statistics.median(r.first_token_at for r in results)

    return {
        "machine": machine(),
        "model": args.model,
        "turn": args.turns,
        "reps": args.reps,
        "answer_tokens": args.answer_tokens,
        "history_messages": len(history),
        "session": {
            "ttft_s": ttft(kept),
            "prefilled_tokens": kept[0].usage.prompt_tokens,
            "reused_tokens": kept[0].usage.cached_prompt_tokens,
        },
        "replay": {
            "ttft_s": ttft(replayed),
            "prefilled_tokens": replayed[0].usage.prompt_tokens,
            "reused_tokens": replayed[0].usage.cached_prompt_tokens,
        },
        "speedup": ttft(replayed) / ttft(kept),
        "same_first_tokens": kept[0].output == replayed[0].output,
    }


def main(args: argparse.Namespace) -> int:
    from asynclm.bench.common import table, write_json

    out = anyio.run(measure, args)
    rows = [
        (
            name,
            f"{out[name]['ttft_s']:.3f} s",
            str(out[name]["prefilled_tokens"]),
            str(out[name]["reused_tokens"]),
        )
        for name in ("session", "replay")
    ]
    print(
        f"{args.model}: TTFT of turn {out['turn']} of a conversation "
        f"({out['history_messages']} earlier messages), median of {args.reps}"
    )
    print(table(rows, ("how", "TTFT", "tokens prefilled", "tokens reused")))
    print(f"session vs history replay: {out['speedup']:.2f}x faster to the first token")
    write_json(str(args.json) if args.json else None, out)
    return 0
