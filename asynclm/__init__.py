"""asynclm: LLM agents that call tools asynchronously.

The heavy parts (torch, the engine) load lazily, so `import asynclm.cml` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Agent": "asynclm.agent.agent",
    "Tool": "asynclm.tooling",
    "tool": "asynclm.tooling",
    "RunResult": "asynclm.agent.result",
    "Engine": "asynclm.engine.engine",
    "Context": "asynclm.engine.context",
    "Sampler": "asynclm.engine.sampling",
    "load_model": "asynclm.engine.loader",
    "PromptCache": "asynclm.promptcache.cache",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'asynclm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_EXPORTS)
