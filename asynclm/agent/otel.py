"""OpenTelemetry spans of agent runs, following the GenAI semantic conventions.

Used when `opentelemetry-api` is installed (an agent adds `OtelHooks` by default then; without
an SDK and exporter configured the API's spans cost next to nothing).

- one `invoke_agent {agent}` span per run (`gen_ai.operation.name="invoke_agent"`,
  `gen_ai.agent.name`, `gen_ai.request.model`, `gen_ai.request.max_tokens`; at the end
  `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `gen_ai.response.finish_reasons`),
  with span events for interrupts, traps and rejected answers;
- one `execute_tool {tool}` child span per call that runs (`gen_ai.operation.name=
  "execute_tool"`, `gen_ai.tool.name`, `gen_ai.tool.call.id`, `gen_ai.tool.type`); a failed
  call has status ERROR and `error.type`.

The spans are not made current in the tools' tasks: spans a tool opens itself start their own
traces.
"""

from __future__ import annotations

from typing import Any

from asynclm.agent.events import (
    CallFinished,
    CallStarted,
    InterruptInjected,
    OutputRetry,
    TrapEnded,
    TrapStarted,
)
from asynclm.agent.hooks import RunHooks, RunInfo
from asynclm.agent.result import RunResult

__all__ = ["OtelHooks", "otel_available"]

SYSTEM = "asynclm"


def otel_available() -> bool:
    """Whether `opentelemetry-api` can be imported."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


class OtelHooks(RunHooks):
    """Spans for runs and tool calls.

    Args:
        tracer: The tracer to use (default: `opentelemetry.trace.get_tracer("asynclm")`, which
            follows the tracer provider set at any time).
        max_tokens: Reported as `gen_ai.request.max_tokens`.
    """

    def __init__(self, tracer: Any = None, *, max_tokens: int | None = None) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = tracer or trace.get_tracer("asynclm")
        self.max_tokens = max_tokens
        self._runs: dict[str, Any] = {}
        self._calls: dict[tuple[str, str], Any] = {}

    def on_run_start(self, run: RunInfo) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": SYSTEM,
            "gen_ai.agent.name": run.agent,
            "gen_ai.request.model": run.model,
            "asynclm.mode": run.mode,
            "asynclm.run_id": run.run_id,
            "asynclm.tools": list(run.tools),
        }
        if self.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = self.max_tokens
        span = self.tracer.start_span(
            f"invoke_agent {run.agent}", kind=self._trace.SpanKind.INTERNAL, attributes=attributes
        )
        self._runs[run.run_id] = span

    def on_run_end(self, run: RunInfo, result: RunResult[Any]) -> None:
        span = self._runs.pop(run.run_id, None)
        if span is None:
            return
        usage = result.usage
        span.set_attribute(
            "gen_ai.usage.input_tokens", usage.prompt_tokens + usage.cached_prompt_tokens
        )
        span.set_attribute("gen_ai.usage.output_tokens", usage.generated_tokens)
        span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
        span.set_attribute("asynclm.usage.cached_input_tokens", usage.cached_prompt_tokens)
        span.set_attribute("asynclm.usage.injected_tokens", usage.injected_tokens)
        self._end_calls(run, "the run ended first")
        span.end()

    def on_run_error(self, run: RunInfo, error: BaseException) -> None:
        span = self._runs.pop(run.run_id, None)
        if span is None:
            return
        span.record_exception(error)
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(error)[:200]))
        self._end_calls(run, "the run failed")
        span.end()

    def on_call_start(self, run: RunInfo, event: CallStarted) -> None:
        parent = self._runs.get(run.run_id)
        if parent is None:
            return
        span = self.tracer.start_span(
            f"execute_tool {event.name}",
            context=self._trace.set_span_in_context(parent),
            kind=self._trace.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": event.name,
                "gen_ai.tool.call.id": event.call_id,
                "gen_ai.tool.type": "function",
            },
        )
        self._calls[(run.run_id, event.call_id)] = span

    def on_call_end(self, run: RunInfo, event: CallFinished) -> None:
        span = self._calls.pop((run.run_id, event.call_id), None)
        if span is None:
            return
        if not event.ok:
            span.set_attribute("error.type", "tool_error")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.text[:200]))
        span.end()

    def on_interrupt(self, run: RunInfo, event: InterruptInjected) -> None:
        self._event(
            run,
            "asynclm.interrupt",
            {"gen_ai.tool.call.id": event.call_id, "asynclm.tokens": event.num_tokens},
        )

    def on_trap_start(self, run: RunInfo, event: TrapStarted) -> None:
        self._event(run, "asynclm.trap.start", {"asynclm.pending": list(event.pending)})

    def on_trap_end(self, run: RunInfo, event: TrapEnded) -> None:
        self._event(run, "asynclm.trap.end", {})

    def on_output_retry(self, run: RunInfo, event: OutputRetry) -> None:
        self._event(run, "asynclm.output.retry", {"asynclm.error": event.error[:200]})

    def _event(self, run: RunInfo, name: str, attributes: dict[str, Any]) -> None:
        span = self._runs.get(run.run_id)
        if span is not None:
            span.add_event(name, attributes)

    def _end_calls(self, run: RunInfo, why: str) -> None:
        for key in [k for k in self._calls if k[0] == run.run_id]:
            span = self._calls.pop(key)
            span.set_attribute("error.type", "cancelled")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, why))
            span.end()
