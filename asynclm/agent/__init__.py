"""The agent runtime: tools, `Agent`, calling modes, interrupts, traces."""

from asynclm.agent.agent import Agent
from asynclm.agent.events import (
    AgentEvent,
    CallDispatched,
    CallFinished,
    InterruptInjected,
    TextDelta,
    TrapEnded,
    TrapStarted,
)
from asynclm.agent.result import CallRecord, RunResult, Usage
from asynclm.agent.tool import Tool, ToolDefinitionError, ToolError, ToolTimeoutError, tool
from asynclm.agent.trace import Trace, summarize

__all__ = [
    "Agent",
    "AgentEvent",
    "CallDispatched",
    "CallFinished",
    "CallRecord",
    "InterruptInjected",
    "RunResult",
    "TextDelta",
    "Tool",
    "ToolDefinitionError",
    "ToolError",
    "ToolTimeoutError",
    "Trace",
    "TrapEnded",
    "TrapStarted",
    "Usage",
    "summarize",
    "tool",
]
