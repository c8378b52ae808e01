"""Tool descriptions: what a tool is, its JSON schema, its validation, its documentation.

The layer below the agent runtime: ready-made tools (`asynclm.tools`), the agent, the BFCL
harness and fine-tuning describe tools with it, without the runtime. No torch.

- `Tool` (`tool.py`): a callable and its OpenAI-style function description; `Tool.invoke`
  validates a call's arguments and runs it under its time limit; `Tool.from_schema` reads a raw
  OpenAI or BFCL description (`function_doc.py`).
- `@tool` (`decorator.py`): a typed function as a tool; its schema from the signature through
  pydantic and its docs from the Google-style docstring (`signature.py`, `docstring.py`).
- Argument validators, one per tool, built once (`validation.py`).
- `format_result` (`results.py`): a result as bounded text for the model.
- `describe_tool` (`describe.py`): the compact documentation the model reads.
- `RunContext` (`context.py`): what a tool taking one learns of its run (dependencies,
  call id, progress reports).
- `ToolThreads` (`threads.py`): the cap on sync tools' worker threads, abandoned ones included.
- `clean_text`, `xml_text` (`text.py`): any string made safe to encode.
"""

from asynclm.tooling.context import DepsT, ProgressReporter, RunContext, is_run_context
from asynclm.tooling.decorator import tool
from asynclm.tooling.describe import describe_tool, type_text
from asynclm.tooling.docstring import parse_docstring
from asynclm.tooling.errors import (
    CallArgumentError,
    ToolDefinitionError,
    ToolError,
    ToolTimeoutError,
)
from asynclm.tooling.function_doc import FunctionDoc, read_function_doc
from asynclm.tooling.results import DEFAULT_MAX_RESULT_CHARS, format_result
from asynclm.tooling.signature import FunctionDescription, describe_function
from asynclm.tooling.text import clean_text, xml_text
from asynclm.tooling.threads import ToolThreads
from asynclm.tooling.tool import Tool, is_coroutine_function
from asynclm.tooling.validation import ArgumentValidator, ModelValidator, SchemaValidator

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
    "ArgumentValidator",
    "CallArgumentError",
    "DepsT",
    "FunctionDescription",
    "FunctionDoc",
    "ModelValidator",
    "ProgressReporter",
    "RunContext",
    "SchemaValidator",
    "Tool",
    "ToolDefinitionError",
    "ToolError",
    "ToolThreads",
    "ToolTimeoutError",
    "clean_text",
    "describe_function",
    "describe_tool",
    "format_result",
    "is_coroutine_function",
    "is_run_context",
    "parse_docstring",
    "read_function_doc",
    "tool",
    "type_text",
    "xml_text",
]
