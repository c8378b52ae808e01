"""The scripted-model example of docs/AGENTS.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "AGENTS.md"


def test_scripted_model_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    tool_definition = blocks[0].split("agent = ")[0]  # the tool, without the real-model run
    namespace: dict = {}
    exec(tool_definition, namespace)  # our own documentation
    exec(blocks[-1], namespace)  # it asserts its own outcome
    assert namespace["result"].calls[0].result == "sunny, 21 C"
