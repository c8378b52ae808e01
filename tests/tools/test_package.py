"""The asynclm.tools package exports ready tools and factories."""

import asynclm.tools as tools
from asynclm.agent.tool import Tool


def test_exports() -> None:
    for name in tools.__all__:
        assert getattr(tools, name) is not None
    for ready in (tools.calculator, tools.now, tools.sleep):
        assert isinstance(ready, Tool)
        assert ready.openai_schema()["function"]["name"] == ready.name
