"""How often our AST checker agrees with BFCL's official one, on perturbed real answers.

    python -m asynclm.bfcl_eval.agreement --count 50000 --json runs/bfcl_agreement.json

Cases come from `perturb.perturbations` over the AST categories' possible answers; the official
checker runs in a subprocess (`official_worker.py`) from the installed `bfcl-eval` files (or
`--wheel`), so its package never meets ours. The report gives the agreement on validity, on
BFCL's error type where both reject, and every disagreement found (with its perturbations).
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import pickle
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asynclm.bfcl_eval.checker import check_answer
from asynclm.bfcl_eval.data import INSTALL_HINT, BFCLDataError, Entry, load_category
from asynclm.bfcl_eval.perturb import Case, perturbations

__all__ = ["AST_CATEGORIES", "Report", "compare", "official_root", "official_verdicts"]

AST_CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
WORKER = Path(__file__).with_name("official_worker.py")


@dataclass
class Report:
    """The comparison's outcome."""

    cases: int = 0
    agree: int = 0
    official_errors: int = 0  # cases the official checker raised on (not counted as cases)
    valid_fraction: float = 0.0  # share of cases both checkers accept
    error_type_agree: int = 0
    both_invalid: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [cases, agree]
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agree / self.cases if self.cases else 1.0

    def summary(self) -> str:
        lines = [
            f"{self.cases} perturbed answers: verdicts agree on {self.agree} "
            f"({100 * self.agreement:.3f}%); {100 * self.valid_fraction:.1f}% are right answers",
            f"error type agrees on {self.error_type_agree} of {self.both_invalid} both reject",
            f"official checker raised on {self.official_errors} more (not counted)",
        ]
        shown = self.disagreements[:10]
        lines += [f"  disagreement: {json.dumps(d, default=repr)[:300]}" for d in shown]
        return "\n".join(lines)


def official_root(wheel: str | None = None) -> str:
    """Where the official `bfcl_eval` package is: the wheel given, or the installed files."""
    if wheel:
        if not Path(wheel).is_file():
            raise FileNotFoundError(f"no wheel at {wheel}")
        return str(Path(wheel).resolve())
    try:
        dist = importlib.metadata.distribution("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:
        raise BFCLDataError(f"the official checker is not installed: {INSTALL_HINT}") from None
    return str(dist.locate_file(""))


def official_verdicts(
    cases: Sequence[Case], entries: dict[str, Entry], root: str
) -> list[tuple[bool | None, str]]:
    """BFCL's own verdicts on the cases (run in a subprocess, see `official_worker.py`)."""
    payload = [
        (entries[c.entry_id].functions, c.calls, entries[c.entry_id].ground_truth, c.category)
        for c in cases
    ]
    done = subprocess.run(
        [sys.executable, "-I", str(WORKER), root],
        input=pickle.dumps(payload),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the official checker failed: {done.stderr.decode()[-2000:]}")
    return pickle.loads(done.stdout)  # our own subprocess's output


def compare(
    count: int,
    *,
    seed: int = 0,
    categories: Sequence[str] = AST_CATEGORIES,
    wheel: str | None = None,
) -> Report:
    """Checks `count` perturbed answers with both checkers and compares the verdicts."""
    entries = {e.id: e for c in categories for e in load_category(c)}
    cases = perturbations(list(entries.values()), count, seed=seed)
    official = official_verdicts(cases, entries, official_root(wheel))
    report = Report()
    kinds: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    valid = 0
    for case, (their_valid, their_type) in zip(cases, official, strict=True):
        if their_valid is None:
            report.official_errors += 1
            continue
        entry = entries[case.entry_id]
        ours = check_answer(entry.category, entry.functions, case.calls, entry.ground_truth)
        same = ours.valid == their_valid
        report.cases += 1
        report.agree += same
        valid += same and ours.valid
        for kind in case.kinds:
            kinds[kind][0] += 1
            kinds[kind][1] += same
        if same and not ours.valid:
            report.both_invalid += 1
            report.error_type_agree += ours.error_type == their_type
        if not same:
            report.disagreements.append(_disagreement(case, ours, their_valid, their_type))
    report.valid_fraction = valid / max(1, report.cases)
    report.by_kind = dict(sorted(kinds.items()))
    return report


def _disagreement(case: Case, ours: Any, their_valid: bool, their_type: str) -> dict[str, Any]:
    return {
        "entry": case.entry_id,
        "kinds": case.kinds,
        "calls": case.calls,
        "ours": [ours.valid, ours.error_type, ours.error],
        "official": [their_valid, their_type],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m asynclm.bfcl_eval.agreement", description=__doc__)
    p.add_argument("--count", type=int, default=50_000, help="perturbed answers to check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--categories", default=",".join(AST_CATEGORIES))
    p.add_argument("--wheel", default=None, help="a bfcl-eval wheel to take the checker from")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    report = compare(
        args.count, seed=args.seed, categories=args.categories.split(","), wheel=args.wheel
    )
    print(report.summary())
    for kind, (n, agree) in report.by_kind.items():
        print(f"  {kind:14s} {n:7d} cases, {agree:7d} agree")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        data = {**report.__dict__, "agreement": report.agreement, "count": args.count}
        Path(args.json).write_text(json.dumps(data, indent=1, default=repr))
    return 0 if report.agree == report.cases else 1


if __name__ == "__main__":
    sys.exit(main())
