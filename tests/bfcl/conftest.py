"""Fixtures of the BFCL harness tests: a small data folder, and the real data when installed."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

FIXTURE = Path(__file__).with_name("fixtures") / "data"


def _installed() -> bool:
    try:
        importlib.metadata.distribution("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_bfcl = pytest.mark.skipif(
    not _installed(), reason="bfcl-eval not installed (pip install --no-deps bfcl-eval==2026.3.23)"
)


@pytest.fixture
def fixture_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    """BFCL data read from the small fixture folder."""
    monkeypatch.setenv("ASYNCLM_BFCL_DATA", str(FIXTURE))
    return FIXTURE


@pytest.fixture
def real_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """BFCL data read from the installed package (skips where it is not installed)."""
    if not _installed():
        pytest.skip("bfcl-eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    monkeypatch.delenv("ASYNCLM_BFCL_DATA", raising=False)
