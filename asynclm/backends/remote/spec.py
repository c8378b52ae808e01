"""`openai:URL` backend specifications (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

ApiProtocol = Literal["completions", "chat"]
PREFIXES: dict[str, ApiProtocol] = {"openai:": "completions", "openai-chat:": "chat"}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait, per stage of a request.

    Attributes:
        connect: to open a connection.
        first_token: from sending a request to its first streamed chunk (prefill included).
        between_tokens: between two chunks of a stream; a silent server past this is dropped.
        request: a whole non-streaming request (chat tool calling).
    """

    connect: float = 5.0
    first_token: float = 120.0
    between_tokens: float = 30.0
    request: float = 300.0

    def __post_init__(self) -> None:
        bad = [name for name in self.__slots__ if getattr(self, name) <= 0]
        if bad:
            raise ValueError(f"timeouts must be positive: {', '.join(bad)}")


def parse_backend(spec: str) -> str:
    """The base URL (ending in `/v1`) of an `openai:http://host:port[/v1]` spec.

    Raises:
        ValueError: not an `openai:` (or `openai-chat:`) spec, or not an http(s) URL with a
            host.
    """
    prefix = next((p for p in PREFIXES if spec.startswith(p)), None)
    if prefix is None:
        raise ValueError(
            f"a remote backend is written openai:URL (CML over streamed completions) or "
            f"openai-chat:URL (OpenAI tool calling), got {spec!r}"
        )
    url = spec[len(prefix) :].strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{prefix} needs an http(s) URL with a host, got {url!r}")
    return url if url.endswith("/v1") else url + "/v1"


def backend_protocol(spec: str) -> ApiProtocol:
    """`completions` for `openai:` specs, `chat` for `openai-chat:` ones."""
    parse_backend(spec)
    return next(v for p, v in PREFIXES.items() if spec.startswith(p))
