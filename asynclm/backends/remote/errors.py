"""What can go wrong talking to a serving engine, as errors a user can act on."""

from __future__ import annotations


class RemoteError(RuntimeError):
    """A request to the serving engine failed (after any retries that were safe)."""


class ServerUnavailable(RemoteError):
    """The server could not be reached (connection refused, DNS, TLS)."""


class RemoteTimeout(RemoteError):
    """The server did not answer, or stopped streaming, within the configured time."""


class RemoteHTTPError(RemoteError):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, detail: str, url: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{url} answered HTTP {status}: {detail[:300]}")


class MalformedResponse(RemoteError):
    """The server sent something that is not the protocol (bad JSON, missing fields)."""
