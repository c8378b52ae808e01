"""BFCL v4 data, read from the files of the installed `bfcl-eval` package (never imported).

The official package is also named `bfcl_eval`, like this folder, and it pins heavy
dependencies; so it is installed without them (`pip install --no-deps bfcl-eval==2026.3.23`)
and only its data files are read, located through `importlib.metadata`. `ASYNCLM_BFCL_DATA`
may point at another folder laid out like the package's `bfcl_eval/data` (tests use a fixture).

Layout read here:
- `BFCL_v4_<category>.json`: JSON lines with `id`, `question` (turns of chat messages) and
  `function` (the function documents), or `involved_classes` for the multi-turn categories;
- `possible_answer/BFCL_v4_<category>.json`: JSON lines with `id` and `ground_truth`;
- `multi_turn_func_doc/<file>.json`: the function documents of each multi-turn API class.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from asynclm.bfcl_eval.entry import Entry
from asynclm.bfcl_eval.multistep import build_multistep

__all__ = [
    "BFCL_VERSION",
    "EVALUATION_CATEGORIES",
    "TRAINING_CATEGORIES",
    "BFCLDataError",
    "Entry",
    "data_root",
    "function_classes",
    "load_category",
]

BFCL_VERSION = "2026.3.23"
INSTALL_HINT = (
    f"install BFCL's data with `pip install --no-deps bfcl-eval=={BFCL_VERSION}` "
    "(its own dependencies are not needed), or set ASYNCLM_BFCL_DATA to a folder holding "
    "BFCL_v4_<category>.json files"
)
DATA_ENV = "ASYNCLM_BFCL_DATA"

EVALUATION_CATEGORIES: tuple[str, ...] = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "multi_turn_base",
    "multistep_parallel",
)
"""Categories the harness evaluates on (never used for training)."""

TRAINING_CATEGORIES: tuple[str, ...] = (
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
    "live_relevance",
)
"""BFCL's user-contributed ("live") categories, the source of fine-tuning data."""

DERIVED_CATEGORIES = ("multistep_parallel",)  # built from other categories, no file of its own

# The multi-turn API classes and their documentation files (as BFCL maps them).
MULTI_TURN_CLASS_DOCS = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}


class BFCLDataError(FileNotFoundError):
    """BFCL's data files are missing or unreadable; the message says how to get them."""


def data_root() -> Path:
    """The folder holding the `BFCL_v4_*.json` files.

    Returns:
        `$ASYNCLM_BFCL_DATA` if set, else the `bfcl_eval/data` folder of the installed
        `bfcl-eval` distribution.

    Raises:
        BFCLDataError: Neither is available; the message says how to install the data.
    """
    override = os.environ.get(DATA_ENV)
    if override:
        root = Path(override).expanduser()
        if not root.is_dir():
            raise BFCLDataError(f"{DATA_ENV}={override} is not a folder; {INSTALL_HINT}")
        return root
    return _installed_root()


@cache
def _installed_root() -> Path:
    try:
        dist = importlib.metadata.distribution("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:
        raise BFCLDataError(f"BFCL data not found: {INSTALL_HINT}") from None
    marker = "bfcl_eval/data/BFCL_v4_simple_python.json"
    for file in dist.files or ():
        if str(file).replace("\\", "/") == marker:
            return Path(str(dist.locate_file(file))).parent
    raise BFCLDataError(
        f"bfcl-eval {dist.version} is installed but ships no {marker}; {INSTALL_HINT}"
    )


def installed_version() -> str | None:
    """The installed `bfcl-eval` version, or None (data from `$ASYNCLM_BFCL_DATA` or absent)."""
    if os.environ.get(DATA_ENV):
        return None
    try:
        return importlib.metadata.version("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def load_category(category: str, *, limit: int | None = None) -> list[Entry]:
    """The entries of one category, in BFCL's order.

    Args:
        category: A BFCL v4 category (`simple_python`, `parallel`, `live_simple`, ...,
            `multi_turn_base`) or `multistep_parallel` (built from multi_turn_base, see
            `asynclm.bfcl_eval.multistep`).
        limit: Keep only the first `limit` entries.

    Returns:
        The entries, each with its function documents and ground truth.

    Raises:
        ValueError: An unknown category or a negative limit.
        BFCLDataError: The data is missing or malformed.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if category == "multistep_parallel":
        return build_multistep(load_category("multi_turn_base"), function_classes())[:limit]
    rows = _read_lines(_category_file(category))[:limit]
    answers = _answers(category)
    return [_entry(category, row, answers) for row in rows]


def _category_file(category: str) -> Path:
    root = data_root()
    path = root / f"BFCL_v4_{category}.json"
    if not path.is_file():
        known = [p.name[len("BFCL_v4_") : -len(".json")] for p in root.glob("BFCL_v4_*.json")]
        known = sorted(known + list(DERIVED_CATEGORIES))
        raise ValueError(f"unknown BFCL category {category!r}; known: {', '.join(known)}")
    return path


def _answers(category: str) -> dict[str, list]:
    path = data_root() / "possible_answer" / f"BFCL_v4_{category}.json"
    if not path.is_file():
        return {}
    return {row["id"]: row["ground_truth"] for row in _read_lines(path)}


def _entry(category: str, row: dict[str, Any], answers: dict[str, list]) -> Entry:
    try:
        if "function" in row:
            functions = row["function"]
        else:  # multi-turn entries name their API classes instead
            functions = class_functions(row["involved_classes"])
        return Entry(
            id=row["id"],
            category=category,
            question=row["question"],
            functions=functions,
            ground_truth=answers.get(row["id"]),
        )
    except KeyError as e:
        raise BFCLDataError(f"BFCL entry {row.get('id', '?')} has no {e} field") from None


def class_functions(classes: list[str]) -> list[dict]:
    """The function documents of multi-turn API classes, concatenated in the order given.

    Args:
        classes: Class names as in an entry's `involved_classes` (e.g. `GorillaFileSystem`).

    Returns:
        Their function documents.

    Raises:
        ValueError: An unknown class.
    """
    docs: list[dict] = []
    for name in classes:
        if name not in MULTI_TURN_CLASS_DOCS:
            known = ", ".join(MULTI_TURN_CLASS_DOCS)
            raise ValueError(f"unknown multi-turn class {name!r}; known: {known}")
        docs += _read_lines(data_root() / "multi_turn_func_doc" / MULTI_TURN_CLASS_DOCS[name])
    return docs


def function_classes() -> dict[str, str]:
    """Function name → multi-turn API class, for the classes whose documents are present."""
    folder = data_root() / "multi_turn_func_doc"
    owners: dict[str, str] = {}
    for cls, file in MULTI_TURN_CLASS_DOCS.items():
        if (folder / file).is_file():
            owners.update((f["name"], cls) for f in class_functions([cls]))
    return owners


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file (BFCL's `.json` files hold one object per line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BFCLDataError(f"cannot read {path}: {e}; {INSTALL_HINT}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise BFCLDataError(f"{path}:{number}: not valid JSON ({e.msg})") from None
    return rows
