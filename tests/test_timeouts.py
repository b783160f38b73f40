"""Timeouts are honoured when the server hangs: its process is stopped (SIGSTOP), so the
socket stays open and accepts connections, but nothing ever answers.

``configure(timeout=T)`` must turn a post into ``StoreUnavailableError`` after about T
seconds, and ``watch(reconnect_timeout=T)`` must give up after about T seconds, in both
APIs. No assertion here is about time: each call runs under a hang guard of ten times T,
only so that a call that never returns fails the test instead of hanging the suite.

A hung server exists only on the wire; mongomock has no network to time out.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers import SecantusServer

import threadmem_mongo
import threadmem_mongo.aio as aio
from threadmem_mongo import RoleThread, StoreUnavailableError, _config
from threadmem_mongo.aio import AsyncRoleThread

pytestmark = [pytest.mark.wire, pytest.mark.slow]

TIMEOUT = 1.0
#: Only a hang guard: a call that has not returned by then never would (it used to take
#: 14.5 s with a 2 s timeout).
HANG_GUARD = 10 * TIMEOUT


@pytest.fixture(scope="module")
def hung_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer]:
    """A server of this module's own, since the tests stop its process for a while."""
    server = SecantusServer(tmp_path_factory.mktemp("hung"), ":memory:")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database() -> str:
    return f"tm_timeout_{uuid.uuid4().hex}"


def outcome_of(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; return what it raised (None if it returned). Fails the
    test if it is still running after the hang guard."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)
        else:
            raised.append(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_GUARD)
    assert raised, f"the call was still waiting on the hung server after {HANG_GUARD} s"
    return raised[0]


# -- the options a timeout sets ----------------------------------------------------------------


def test_configured_timeout_bounds_whole_operations_in_both_apis(
    hung_server: SecantusServer,
) -> None:
    threadmem_mongo.configure(uri=hung_server.uri, timeout=2)
    aio.configure(uri=hung_server.uri, timeout=3)
    sync_client = _config.default_store().collection.database.client
    async_client = _config.async_default_store().collection.database.client
    assert sync_client.options.timeout == 2.0
    assert async_client.options.timeout == 3.0


def test_a_timeout_the_uri_sets_is_left_to_the_uri(hung_server: SecantusServer) -> None:
    threadmem_mongo.configure(uri=hung_server.uri + "&timeoutMS=7000", timeout=2)
    client = _config.default_store().collection.database.client
    assert client.options.timeout == 7.0
    assert client.options.server_selection_timeout == 2.0


# -- posts ---------------------------------------------------------------------------------------


def test_sync_post_to_a_hung_server_raises_store_unavailable(
    hung_server: SecantusServer, database: str
) -> None:
    threadmem_mongo.configure(uri=hung_server.uri, database=database, timeout=TIMEOUT)
    thread = RoleThread(owner_id="u1")
    thread.post("user", "before")
    with hung_server.paused():
        raised = outcome_of(lambda: thread.post("user", "while hung"))
    assert isinstance(raised, StoreUnavailableError), raised
    assert RoleThread.get(thread.id).messages()[0].text == "before"


@pytest.mark.asyncio
async def test_async_post_to_a_hung_server_raises_store_unavailable(
    hung_server: SecantusServer, database: str
) -> None:
    aio.configure(uri=hung_server.uri, database=database, timeout=TIMEOUT)
    try:
        thread = await AsyncRoleThread.create(owner_id="u1")
        await thread.post("user", "before")
        with hung_server.paused(), pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(thread.post("user", "while hung"), HANG_GUARD)
        loaded = await AsyncRoleThread.get(thread.id)
        assert (await loaded.messages())[0].text == "before"
    finally:
        await aio.close()


async def drain(events: Any) -> None:
    """Read ``events`` until it raises; each event must arrive within the hang guard."""
    while True:
        await asyncio.wait_for(events.__anext__(), HANG_GUARD)


# -- watch(reconnect_timeout=) ---------------------------------------------------------------


def test_sync_watch_on_a_hung_server_gives_up_after_reconnect_timeout(
    hung_server: SecantusServer, database: str
) -> None:
    threadmem_mongo.configure(uri=hung_server.uri, database=database)
    thread = RoleThread(owner_id="u1")
    reported = threading.Event()
    raised: list[BaseException | None] = []

    def watch() -> None:
        try:
            for _event in thread.watch(reconnect_timeout=TIMEOUT):
                reported.set()
        except BaseException as exc:
            raised.append(exc)
        else:
            raised.append(None)

    worker = threading.Thread(target=watch, daemon=True)
    worker.start()
    while not reported.is_set() and worker.is_alive():
        thread.post("user", "are you there?")
        reported.wait(0.2)  # the watch may open after a post: post again until one is seen
    assert reported.is_set(), raised
    with hung_server.paused():
        worker.join(HANG_GUARD)
        assert raised, f"the watch was still waiting on the hung server after {HANG_GUARD} s"
    assert isinstance(raised[0], StoreUnavailableError), raised[0]


@pytest.mark.asyncio
async def test_async_watch_on_a_hung_server_gives_up_after_reconnect_timeout(
    hung_server: SecantusServer, database: str
) -> None:
    aio.configure(uri=hung_server.uri, database=database)
    try:
        thread = await AsyncRoleThread.create(owner_id="u1")
        events = thread.watch(reconnect_timeout=TIMEOUT).__aiter__()
        first = asyncio.ensure_future(events.__anext__())
        while not first.done():
            await thread.post("user", "are you there?")
            await asyncio.wait([first], timeout=0.2)  # post again until the watch sees one
        first.result()
        with hung_server.paused(), pytest.raises(StoreUnavailableError):
            await drain(events)
        await events.aclose()
    finally:
        await aio.close()


@pytest.mark.asyncio
async def test_cancelling_an_async_watch_on_a_client_with_a_timeout_ends_it(
    hung_server: SecantusServer, database: str
) -> None:
    # A client-side operation timeout once made a cancelled watcher carry on reading.
    aio.configure(uri=hung_server.uri, database=database, timeout=5)
    try:
        thread = await AsyncRoleThread.create(owner_id="u1")
        seen = asyncio.Event()

        async def watch_forever() -> None:
            async for _event in thread.watch():
                seen.set()

        task = asyncio.create_task(watch_forever())
        noticed = asyncio.ensure_future(seen.wait())
        while not noticed.done():
            await thread.post("user", "are you there?")
            await asyncio.wait([noticed], timeout=0.2)  # post again until the watch sees one
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, HANG_GUARD)
    finally:
        await aio.close()
