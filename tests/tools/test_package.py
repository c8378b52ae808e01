"""The asynclm.tools package exports ready tools and factories of tools."""

from pathlib import Path

import asynclm.tools as tools
from asynclm.tooling import Tool


def test_ready_tools_and_factories(tmp_path: Path) -> None:
    assert set(tools.__all__) == {
        "calculator", "fnv1a_32", "make_file_tools", "make_http_tools", "now", "simulated",
        "simulated_latency", "sleep",
    }  # fmt: skip
    for ready in (tools.calculator, tools.now, tools.sleep):
        assert isinstance(ready, Tool) and ready.function is not None
        assert ready.openai_schema()["function"]["name"] == ready.name
    made = [
        *tools.make_file_tools(tmp_path),
        *tools.make_http_tools(["example.com"]),
        tools.simulated({"name": "lookup"}),
    ]
    assert all(isinstance(t, Tool) for t in made)
    assert [t.name for t in made] == ["read_file", "list_dir", "http_get", "http_post", "lookup"]
