"""asynclm: LLM agents that call tools asynchronously.

The heavy parts (torch, the engine) load on first use, so `import asynclm.cml` stays light;
type checkers see every name below with its real type (the imports under `TYPE_CHECKING`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asynclm.agent.agent import Agent
    from asynclm.agent.errors import AgentError, OutputError, RunStateError
    from asynclm.agent.hooks import RunHooks
    from asynclm.agent.limits import UsageLimits
    from asynclm.agent.messages import (
        AssistantMessage,
        UserMessage,
        messages_from_json,
        messages_to_json,
    )
    from asynclm.agent.result import CallRecord, RunResult
    from asynclm.agent.session import Session
    from asynclm.engine.context import Context
    from asynclm.engine.engine import Engine
    from asynclm.engine.loader import load_model
    from asynclm.engine.sampling import Sampler
    from asynclm.promptcache.cache import PromptCache
    from asynclm.tooling import RunContext, Tool, tool

__version__ = "0.1.0"

_EXPORTS = {
    "Agent": "asynclm.agent.agent",
    "AgentError": "asynclm.agent.errors",
    "AssistantMessage": "asynclm.agent.messages",
    "CallRecord": "asynclm.agent.result",
    "Context": "asynclm.engine.context",
    "Engine": "asynclm.engine.engine",
    "OutputError": "asynclm.agent.errors",
    "PromptCache": "asynclm.promptcache.cache",
    "RunContext": "asynclm.tooling",
    "RunHooks": "asynclm.agent.hooks",
    "RunResult": "asynclm.agent.result",
    "RunStateError": "asynclm.agent.errors",
    "Sampler": "asynclm.engine.sampling",
    "Session": "asynclm.agent.session",
    "Tool": "asynclm.tooling",
    "UsageLimits": "asynclm.agent.limits",
    "UserMessage": "asynclm.agent.messages",
    "load_model": "asynclm.engine.loader",
    "messages_from_json": "asynclm.agent.messages",
    "messages_to_json": "asynclm.agent.messages",
    "tool": "asynclm.tooling",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'asynclm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Agent",
    "AgentError",
    "AssistantMessage",
    "CallRecord",
    "Context",
    "Engine",
    "OutputError",
    "PromptCache",
    "RunContext",
    "RunHooks",
    "RunResult",
    "RunStateError",
    "Sampler",
    "Session",
    "Tool",
    "UsageLimits",
    "UserMessage",
    "load_model",
    "messages_from_json",
    "messages_to_json",
    "tool",
]
