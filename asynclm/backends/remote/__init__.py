"""Run agents on existing serving engines: `openai:URL` backends.

`RemoteBackend` gives contexts that generate on an OpenAI-compatible server (streamed
`/v1/completions`; an interrupt aborts and resubmits the stream). `openai-chat:URL`
(OpenAI tool calling over `/v1/chat/completions`) serves sync and sync-parallel modes on
any model.
"""

from asynclm.backends.remote.backend import RemoteBackend, load_tokenizer
from asynclm.backends.remote.constraints import (
    AllRemote,
    Ban,
    ForcedText,
    RemoteConstraint,
    gbnf_literal,
)
from asynclm.backends.remote.context import RemoteContext
from asynclm.backends.remote.errors import (
    MalformedResponse,
    RemoteError,
    RemoteHTTPError,
    RemoteTimeout,
    ServerUnavailable,
)
from asynclm.backends.remote.generation import RemoteGeneration
from asynclm.backends.remote.retry import RetryPolicy
from asynclm.backends.remote.spec import Timeouts, parse_backend
from asynclm.backends.remote.stats import RemoteStats, Submission

__all__ = [
    "AllRemote",
    "Ban",
    "ForcedText",
    "MalformedResponse",
    "RemoteBackend",
    "RemoteConstraint",
    "RemoteContext",
    "RemoteError",
    "RemoteGeneration",
    "RemoteHTTPError",
    "RemoteStats",
    "RemoteTimeout",
    "RetryPolicy",
    "ServerUnavailable",
    "Submission",
    "Timeouts",
    "gbnf_literal",
    "load_tokenizer",
    "parse_backend",
]
