"""The agent runtime: `Agent`, calling modes, interrupts, conversations, structured output,
limits, hooks, toolsets, and the events and results of runs.

Tools are described by `asynclm.tooling` and traces recorded by `asynclm.trace`; their main names
are re-exported here. `MCPServer` (asynclm.agent.mcp) needs the `mcp` package.
"""

from asynclm.agent.agent import Agent
from asynclm.agent.approval import Approver, Decision
from asynclm.agent.chat_run import ChatRun
from asynclm.agent.errors import AgentError, OutputError, RunStateError
from asynclm.agent.events import (
    AgentEvent,
    ApprovalRequested,
    CallDispatched,
    CallFinished,
    CallProgress,
    CallStarted,
    InterruptInjected,
    OutputRetry,
    TextDelta,
    TrapEnded,
    TrapStarted,
)
from asynclm.agent.handle import RunHandle
from asynclm.agent.hooks import RunHooks, RunInfo
from asynclm.agent.limits import FINISH_REASONS, UsageLimits
from asynclm.agent.messages import (
    AssistantMessage,
    CallPart,
    InterruptPart,
    MalformedPart,
    Message,
    TextPart,
    TrapPart,
    UserMessage,
    messages_from_json,
    messages_to_json,
)
from asynclm.agent.modes import AsyncMode, CallingMode, SyncMode, SyncParallelMode, calling_mode
from asynclm.agent.observe import LoggingHooks
from asynclm.agent.otel import OtelHooks
from asynclm.agent.prompting import PromptPart, prompt_pieces, system_parts
from asynclm.agent.result import CallRecord, RunResult, Usage
from asynclm.agent.run import AgentRun
from asynclm.agent.session import Session
from asynclm.agent.spec import RunSpec
from asynclm.agent.toolset import Toolset
from asynclm.tooling import (
    RunContext,
    Tool,
    ToolDefinitionError,
    ToolError,
    ToolTimeoutError,
    tool,
)
from asynclm.trace import Trace, summarize

__all__ = [
    "FINISH_REASONS",
    "Agent",
    "AgentError",
    "AgentEvent",
    "AgentRun",
    "ApprovalRequested",
    "Approver",
    "AssistantMessage",
    "AsyncMode",
    "CallDispatched",
    "CallFinished",
    "CallPart",
    "CallProgress",
    "CallRecord",
    "CallStarted",
    "CallingMode",
    "ChatRun",
    "Decision",
    "InterruptInjected",
    "InterruptPart",
    "LoggingHooks",
    "MalformedPart",
    "Message",
    "OtelHooks",
    "OutputError",
    "OutputRetry",
    "PromptPart",
    "RunContext",
    "RunHandle",
    "RunHooks",
    "RunInfo",
    "RunResult",
    "RunSpec",
    "RunStateError",
    "Session",
    "SyncMode",
    "SyncParallelMode",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolDefinitionError",
    "ToolError",
    "ToolTimeoutError",
    "Toolset",
    "Trace",
    "TrapEnded",
    "TrapPart",
    "TrapStarted",
    "Usage",
    "UsageLimits",
    "UserMessage",
    "calling_mode",
    "messages_from_json",
    "messages_to_json",
    "prompt_pieces",
    "summarize",
    "system_parts",
    "tool",
]
