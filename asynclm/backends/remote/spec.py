"""`openai:URL` backend specifications (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

PREFIX = "openai:"


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
        ValueError: not an `openai:` spec, or not an http(s) URL with a host.
    """
    if not spec.startswith(PREFIX):
        raise ValueError(f"a remote backend is written openai:URL, got {spec!r}")
    url = spec[len(PREFIX) :].strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"openai: needs an http(s) URL with a host, got {url!r}")
    return url if url.endswith("/v1") else url + "/v1"
