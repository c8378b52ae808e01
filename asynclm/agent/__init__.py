"""The agent runtime: `Agent`, calling modes, interrupts, and the events and results of runs.

Tools are described by `asynclm.tooling` and traces recorded by `asynclm.trace`; their main names
are re-exported here.
"""

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
from asynclm.agent.modes import AsyncMode, CallingMode, SyncMode, SyncParallelMode, calling_mode
from asynclm.agent.prompting import PromptPart, prompt_pieces, system_parts
from asynclm.agent.result import CallRecord, RunResult, Usage
from asynclm.agent.run import AgentRun
from asynclm.agent.spec import RunSpec
from asynclm.tooling import Tool, ToolDefinitionError, ToolError, ToolTimeoutError, tool
from asynclm.trace import Trace, summarize

__all__ = [
    "Agent",
    "AgentEvent",
    "AgentRun",
    "AsyncMode",
    "CallDispatched",
    "CallFinished",
    "CallRecord",
    "CallingMode",
    "InterruptInjected",
    "PromptPart",
    "RunResult",
    "RunSpec",
    "SyncMode",
    "SyncParallelMode",
    "TextDelta",
    "Tool",
    "ToolDefinitionError",
    "ToolError",
    "ToolTimeoutError",
    "Trace",
    "TrapEnded",
    "TrapStarted",
    "Usage",
    "calling_mode",
    "prompt_pieces",
    "summarize",
    "system_parts",
    "tool",
]
