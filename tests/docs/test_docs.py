"""Every Python code block of README.md and docs/*.md runs as written.

The blocks of one file run in order, in one namespace (as a reader would paste them into one
script). A block right after a `<!-- real_model -->` line needs the real model: it runs only in
the real-model step (`pytest -m real_model`), with the file's other blocks; the default run
executes the rest, which must not depend on it. Shell and text blocks are not run (the commands
are exercised by their own tests).
"""

from __future__ import annotations

import os
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REAL_MODEL = "<!-- real_model -->"
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str
    real_model: bool


def blocks(path: Path) -> list[Block]:
    """The Python blocks of a Markdown file, in order."""
    text = path.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        real = bool(before) and before[-1].strip() == REAL_MODEL
        line = text.count("\n", 0, match.start()) + 2
        found.append(Block(path, line, match.group(1), real))
    return found


def run_blocks(path: Path, *, real_model: bool, tmp_path: Path) -> int:
    module = types.ModuleType(f"docs_{path.stem.lower()}")  # dataclasses look their module up
    namespace = module.__dict__
    ran = 0
    cwd = os.getcwd()
    os.chdir(tmp_path)  # files an example writes land here
    sys.modules[module.__name__] = module
    try:
        for block in blocks(path):
            if block.real_model and not real_model:
                continue
            code = compile(block.code, f"{path.name}:{block.line}", "exec")
            exec(code, namespace)  # our own documentation
            ran += 1
    finally:
        os.chdir(cwd)
        del sys.modules[module.__name__]
    return ran


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_the_blocks_that_need_no_model_run(path: Path, tmp_path: Path) -> None:
    run_blocks(path, real_model=False, tmp_path=tmp_path)


@pytest.mark.real_model
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_block_runs_on_the_real_model(path: Path, tmp_path: Path) -> None:
    run_blocks(path, real_model=True, tmp_path=tmp_path)


def test_the_docs_have_blocks_of_both_kinds() -> None:
    found = [block for path in DOCS for block in blocks(path)]
    assert any(b.real_model for b in found) and any(not b.real_model for b in found)
    agents = blocks(ROOT / "docs" / "AGENTS.md")
    assert len([b for b in agents if b.real_model]) >= 8  # a real-model example per capability
