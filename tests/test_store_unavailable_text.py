"""The error for an unreachable server says what to check and how to wait longer, and fits
a read as well as a write: it gives no advice about retrying a post."""

from __future__ import annotations

import re

import pytest
from pymongo import errors as mongo_errors

import threadmem_mongo
from threadmem_mongo import RoleThread, StoreUnavailableError, _driver

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


# The async API raises through the same translation; an AsyncMongoClient closed while its
# monitor is still connecting to a dead port can leak a socket (a ResourceWarning in some
# later test), so the async side is checked on the driver errors themselves.
@pytest.mark.parametrize(
    "error",
    [
        mongo_errors.ServerSelectionTimeoutError("no server"),
        mongo_errors.NetworkTimeout("timed out"),
        mongo_errors.AutoReconnect("connection reset"),
        mongo_errors.ExecutionTimeout("operation exceeded time limit", 50),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_timeout_or_lost_connection_gets_the_same_operation_neutral_text(
    error: Exception,
) -> None:
    translated = _driver.translated(error, "thread-1")

    assert isinstance(translated, StoreUnavailableError)
    text = str(translated)
    assert text.startswith(f"MongoDB did not answer ({type(error).__name__}): ")
    assert "THREADMEM_TIMEOUT=SECONDS" in text
    assert "configure(timeout=SECONDS)" in text
    assert "post" not in text
