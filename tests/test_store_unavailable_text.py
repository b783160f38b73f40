"""The error for an unreachable server says what to check and how to wait longer, and fits
a read as well as a write: it gives no advice about retrying a post."""

from __future__ import annotations

import re

import pytest

import threadmem_mongo
import threadmem_mongo.aio
from threadmem_mongo import RoleThread, StoreUnavailableError
from threadmem_mongo.aio import AsyncRoleThread

DEAD_URI = "mongodb://127.0.0.1:1/?directConnection=true"


def assert_fits_any_operation(exc: StoreUnavailableError) -> None:
    text = str(exc)
    assert re.match(r"MongoDB did not answer \(\w+\): check that the server is running", text)
    assert "THREADMEM_TIMEOUT=SECONDS" in text
    assert "configure(timeout=SECONDS)" in text
    assert "post" not in text
    assert "\n" not in text


def test_a_read_from_an_unreachable_server_names_both_timeout_settings() -> None:
    threadmem_mongo.configure(uri=DEAD_URI, timeout=0.2)

    with pytest.raises(StoreUnavailableError) as info:
        RoleThread.get("any-thread")

    assert_fits_any_operation(info.value)


@pytest.mark.asyncio
async def test_an_async_read_from_an_unreachable_server_names_both_timeout_settings() -> None:
    threadmem_mongo.aio.configure(uri=DEAD_URI, timeout=0.2)
    try:
        with pytest.raises(StoreUnavailableError) as info:
            await AsyncRoleThread.get("any-thread")
    finally:
        await threadmem_mongo.aio.close()

    assert_fits_any_operation(info.value)
