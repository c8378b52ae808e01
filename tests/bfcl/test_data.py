"""BFCL data loading: the fixture folder, the installed package, and clear errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from asynclm.bfcl_eval import data
from asynclm.bfcl_eval.data import (
    EVALUATION_CATEGORIES,
    TRAINING_CATEGORIES,
    BFCLDataError,
    Entry,
    data_root,
    load_category,
)


def test_fixture_entries_carry_functions_and_answers(fixture_data: Path) -> None:
    entries = load_category("simple_python")
    assert data_root() == fixture_data
    assert [e.id for e in entries] == ["simple_python_0", "simple_python_1"]
    first = entries[0]
    assert first.category == "simple_python"
    assert first.question[0][0]["role"] == "user"
    assert first.functions[0]["name"] == "calculate_triangle_area"
    assert first.ground_truth == [
        {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}
    ]


def test_limit_and_categories_without_answers(fixture_data: Path) -> None:
    assert len(load_category("simple_python", limit=1)) == 1
    assert load_category("simple_python", limit=0) == []
    (irrelevant,) = load_category("irrelevance")
    assert irrelevant.ground_truth is None


def test_multi_turn_entries_get_their_classes_functions(fixture_data: Path) -> None:
    entry = load_category("multi_turn_base")[0]
    assert [f["name"] for f in entry.functions] == ["cd", "mkdir", "ls"]
    first_turn, second_turn = entry.ground_truth or []
    assert first_turn == ["cd(folder='document')", "mkdir(dir_name='temp')"]
    assert second_turn == ["ls(a=True)"]


def test_entries_are_frozen(fixture_data: Path) -> None:
    entry = load_category("simple_python")[0]
    with pytest.raises(AttributeError):
        entry.id = "x"  # type: ignore[misc]


def test_unknown_category_and_bad_limit(fixture_data: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown BFCL category 'nope'.*simple_python"):
        load_category("nope")
    with pytest.raises(ValueError, match="limit"):
        load_category("simple_python", limit=-1)


def test_missing_folder_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCLM_BFCL_DATA", "/nonexistent/bfcl")
    hint = re.escape("pip install --no-deps bfcl-eval==2026.3.23")
    with pytest.raises(BFCLDataError, match=hint):
        data_root()


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delenv("ASYNCLM_BFCL_DATA", raising=False)
    monkeypatch.setattr(data.importlib.metadata, "distribution", not_installed)
    data._installed_root.cache_clear()
    try:
        with pytest.raises(BFCLDataError, match="pip install --no-deps bfcl-eval"):
            load_category("simple_python")
    finally:
        data._installed_root.cache_clear()


def test_malformed_line_is_reported_with_its_place(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "BFCL_v4_simple_python.json").write_text('{"id": "a"\n')
    monkeypatch.setenv("ASYNCLM_BFCL_DATA", str(tmp_path))
    with pytest.raises(BFCLDataError, match=re.escape("BFCL_v4_simple_python.json:1")):
        load_category("simple_python")


def test_category_constants() -> None:
    assert "multistep_parallel" in EVALUATION_CATEGORIES
    assert all(c.startswith("live_") for c in TRAINING_CATEGORIES)
    assert not set(EVALUATION_CATEGORIES) & set(TRAINING_CATEGORIES)
    assert Entry.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.usefixtures("real_data")
def test_real_files_every_category_loads() -> None:
    sizes = {
        "simple_python": 400,
        "multiple": 200,
        "parallel": 200,
        "parallel_multiple": 200,
        "irrelevance": 240,
        "multi_turn_base": 200,
        "live_simple": 258,
        "live_multiple": 1053,
    }
    for category in [*EVALUATION_CATEGORIES, *TRAINING_CATEGORIES]:
        entries = load_category(category)
        assert entries, category
        assert len({e.id for e in entries}) == len(entries), category
        assert all(isinstance(e.functions, list) for e in entries), category  # some are []
        if category in sizes:
            assert len(entries) == sizes[category], category
        has_answer = "irrelevance" not in category and category != "live_relevance"
        assert all((e.ground_truth is not None) == has_answer for e in entries), category


@pytest.mark.usefixtures("real_data")
def test_real_data_is_read_without_importing_bfcl_packages() -> None:
    code = (
        "import sys; from asynclm.bfcl_eval.data import load_category; "
        "load_category('parallel', limit=3); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'bfcl_eval'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
