"""Clock tools."""

import datetime as dt
import time
import zoneinfo

import pytest

from asynclm.cml.call import CallArgumentError
from asynclm.tooling import ToolError
from asynclm.tools.clock import MAX_SLEEP_SECONDS, now, sleep


@pytest.mark.anyio
async def test_now_utc_is_iso_8601() -> None:
    text = await now.invoke({})
    value = dt.datetime.fromisoformat(text)
    assert value.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - value).total_seconds()) < 5


@pytest.mark.anyio
async def test_now_in_named_zone() -> None:
    try:
        zoneinfo.ZoneInfo("Asia/Tokyo")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database on this machine")
    value = dt.datetime.fromisoformat(await now.invoke({"timezone": "Asia/Tokyo"}))
    assert value.utcoffset() == dt.timedelta(hours=9)


@pytest.mark.anyio
async def test_now_unknown_zone() -> None:
    with pytest.raises(ToolError, match="unknown time zone 'Mars/Olympus'"):
        await now.invoke({"timezone": "Mars/Olympus"})
    with pytest.raises(ToolError, match="unknown time zone"):
        await now.invoke({"timezone": "../../etc/passwd"})


@pytest.mark.anyio
async def test_sleep_waits_and_is_capped() -> None:
    start = time.monotonic()
    assert await sleep.invoke({"seconds": 0.05}) == 0.05
    assert time.monotonic() - start >= 0.05
    assert sleep.is_async
    assert sleep.parameters["properties"]["seconds"]["maximum"] == MAX_SLEEP_SECONDS
    for bad in (-1, MAX_SLEEP_SECONDS + 1, "1"):
        with pytest.raises(CallArgumentError):
            await sleep.invoke({"seconds": bad})
