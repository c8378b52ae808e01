"""Kernel plans: which kernel serves a batch of r rows, chosen from measured times (no torch).

A linear layer is measured at a few batch sizes (`BUCKETS`); a batch of r rows is served by the
winner of the smallest bucket >= r (the largest bucket's winner above it). Adjacent buckets with
the same winner merge, so a plan reads e.g. `((4, "q4_1"), (64, "packed"), (ANY, "split"))`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

BUCKETS = (1, 4, 16, 64, 256, 1024)
ANY = 1 << 62  # "every larger batch"
Plan = tuple[tuple[int, str], ...]


def choose_plan(timings: Mapping[int, Mapping[str, float]], preference: Sequence[str] = ()) -> Plan:
    """The fastest kernel of each measured bucket, as a plan.

    Args:
        timings: bucket (rows) -> kernel name -> seconds per call.
        preference: tie-break order (earlier wins among equal times); unknown names last.
    """
    if not timings or any(not row for row in timings.values()):
        raise ValueError("every measured bucket needs at least one kernel time")
    rank = {name: i for i, name in enumerate(preference)}
    plan: list[tuple[int, str]] = []
    for bucket in sorted(timings):
        row = timings[bucket]
        best = min(row, key=lambda name: (row[name], rank.get(name, len(rank)), name))
        if plan and plan[-1][1] == best:
            plan[-1] = (bucket, best)
        else:
            plan.append((bucket, best))
    plan[-1] = (ANY, plan[-1][1])
    return tuple(plan)


def kernel_for(plan: Plan, rows: int) -> str:
    """The kernel a plan runs for a batch of `rows` rows."""
    for max_rows, name in plan:
        if rows <= max_rows:
            return name
    raise ValueError(f"plan {plan} has no kernel for {rows} rows (its last bucket must be ANY)")


def describe(plan: Plan) -> str:
    """A plan for people: `q4_1 (1-4 rows), packed (5-64), split (65+)`."""
    parts, low = [], 1
    for max_rows, name in plan:
        if max_rows == ANY:
            parts.append(f"{name} ({low}+ rows)" if low > 1 else f"{name} (any rows)")
        else:
            span = f"{low} row" if low == max_rows == 1 else f"{low}-{max_rows} rows"
            span = f"{low} rows" if low == max_rows > 1 else span
            parts.append(f"{name} ({span})")
        low = max_rows + 1
    return ", ".join(parts)
