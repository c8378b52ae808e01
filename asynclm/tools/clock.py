"""Clock tools: the current time and a bounded sleep."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated

import anyio
from pydantic import Field

from asynclm.tooling import ToolError, tool

__all__ = ["MAX_SLEEP_SECONDS", "now", "sleep"]

MAX_SLEEP_SECONDS = 60.0


def _zone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "Z"):  # no tz database needed for the common case
        return dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        message = f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'"
        raise ToolError(message) from None


@tool
def now(timezone: str = "UTC") -> str:
    """The current date and time, in ISO 8601 format.

    Args:
        timezone: An IANA time zone name such as "UTC" or "Asia/Tokyo".
    """
    return dt.datetime.now(_zone(timezone)).isoformat(timespec="seconds")


@tool
async def sleep(seconds: Annotated[float, Field(ge=0, le=MAX_SLEEP_SECONDS)]) -> float:
    """Waits for a number of seconds (at most 60), then returns how long it waited.

    Args:
        seconds: How long to wait.
    """
    await anyio.sleep(seconds)
    return seconds
