"""Faults survived: connections dropped around a write, writes applied but reported as
failed, a server stopped and started again under a run of posts, a server that is gone.

The fail points are mongod's ``configureFailPoint`` ``failCommand``, which the session's
SecantusDB server offers (it runs with ``--enable-test-commands``). Each test scopes its
fail point to its own client's ``appName``, and switches it off afterwards.

What the driver does matters here: SecantusDB presents itself as a one-node replica set,
so pymongo's retryable writes are on. A write whose connection drops, or that returns a
``RetryableWriteError``, is sent once more on a new connection; only if that fails too
does the error reach the library.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure
from servers import SecantusServer

import threadmem_mongo
from threadmem_mongo import (
    RoleMessage,
    RoleThread,
    StoreUnavailableError,
    ThreadStore,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

pytestmark = pytest.mark.wire

Document = dict[str, Any]
Arm = Callable[[Any, Document], None]

START_TIMEOUT = 30.0
WAIT = 30.0
#: The socket timeout of the client used with blocking fail points, and how long the
#: server holds the blocked write: the client gives up first, the write lands after.
SOCKET_TIMEOUT_MS = 1000
BLOCK_MS = 2000


# -- fail points ----------------------------------------------------------------------------------


@pytest.fixture
def app_name() -> str:
    return f"faults-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def arm(wire_client: MongoClient[Document], app_name: str) -> Iterator[Arm]:
    """Arm ``failCommand`` for this test's client only; it is switched off afterwards."""

    def configure(mode: Any, data: Document) -> None:
        wire_client.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": mode,
                "data": {**data, "appName": app_name},
            }
        )

    try:
        yield configure
    finally:
        wire_client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


@pytest.fixture
def connect(
    wire_uri: str, wire_client: MongoClient[Document], app_name: str
) -> Iterator[Callable[..., ThreadStore]]:
    """Make stores on fresh databases through clients named ``app_name``, which this
    test's fail points apply to; each is also made the default store."""
    made: list[tuple[MongoClient[Document], str]] = []

    def make(**options: Any) -> ThreadStore:
        # A short heartbeat: after a "shutting down" error pymongo waits for the next
        # server check before it retries, 10 s by default.
        client: MongoClient[Document] = MongoClient(
            wire_uri,
            appname=app_name,
            serverSelectionTimeoutMS=5000,
            heartbeatFrequencyMS=500,
            **options,
        )
        database = f"tm_test_{uuid.uuid4().hex}"
        made.append((client, database))
        threadmem_mongo.configure(client=client, database=database)
        return ThreadStore(client[database]["threads"])

    yield make
    for client, database in made:
        client.close()
        wire_client.drop_database(database)


@pytest.fixture
def store(connect: Callable[..., ThreadStore]) -> ThreadStore:
    return connect()


@pytest.fixture
def impatient_store(connect: Callable[..., ThreadStore]) -> ThreadStore:
    """A store whose client gives up on a reply after SOCKET_TIMEOUT_MS."""
    return connect(socketTimeoutMS=SOCKET_TIMEOUT_MS)


def stored(collection: Collection[Document], thread_id: str) -> Document:
    doc = collection.find_one({"_id": thread_id})
    assert doc is not None
    return doc


def assert_landed_once(collection: Collection[Document], thread_id: str, texts: list[str]) -> None:
    """The stored thread holds exactly ``texts``, in order, and its counters agree."""
    doc = stored(collection, thread_id)
    assert [m["text"] for m in doc["messages"]] == texts
    assert len({m["id"] for m in doc["messages"]}) == len(texts)
    assert doc["version"] == len(texts)
    assert doc["message_count"] == len(texts)


def close_and_wait_until_served(
    store: ThreadStore, wire_client: MongoClient[Document], app_name: str
) -> Collection[Document]:
    """Close the store's client, wait until the server has finished every command it
    sent (a held-back write included), and return the collection through ``wire_client``.

    The server drops a closed connection only once the command it is running is done.
    """
    store.collection.database.client.close()
    deadline = time.monotonic() + WAIT
    while any(
        op.get("clientMetadata", {}).get("application", {}).get("name") == app_name
        for op in wire_client.admin.command("currentOp")["inprog"]
    ):
        assert time.monotonic() < deadline, "the server never finished the held-back write"
        time.sleep(0.05)
    return wire_client[store.collection.database.name][store.collection.name]


# -- the connection drops before the write is applied ----------------------------------------------


CLOSE_ON_UPDATE = {"failCommands": ["update"], "closeConnection": True}


def test_connection_closed_before_a_post_is_applied_is_retried_and_lands_once(
    store: ThreadStore, arm: Arm
) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "before")
    arm({"times": 1}, CLOSE_ON_UPDATE)

    thread.post("user", "dropped once")  # pymongo's retryable write sends it again

    assert_landed_once(store.collection, thread.id, ["before", "dropped once"])
    assert thread.version == 2
    assert [m.text for m in thread.messages()] == ["before", "dropped once"]


def test_connection_closed_on_a_message_and_its_retry_raises_and_a_later_retry_lands_it_once(
    store: ThreadStore, arm: Arm
) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "before")
    message = RoleMessage(role="user", text="dropped twice")
    arm({"times": 2}, CLOSE_ON_UPDATE)

    with pytest.raises(StoreUnavailableError):
        thread.add_msg(message)

    assert_landed_once(store.collection, thread.id, ["before"])
    assert thread.version == 1

    thread.add_msg(message)  # the documented retry: the same message
    thread.add_msg(message)  # and once more, as a retry after an unseen success would

    assert_landed_once(store.collection, thread.id, ["before", "dropped twice"])
    assert thread.messages()[-1].id == message.id
    assert thread.version == 2


def test_post_whose_connection_closes_twice_raises_store_unavailable_and_writes_nothing(
    store: ThreadStore, arm: Arm
) -> None:
    thread = RoleThread(store=store)
    arm({"times": 2}, CLOSE_ON_UPDATE)

    with pytest.raises(StoreUnavailableError) as info:
        thread.post("user", "lost")

    assert "retry" in str(info.value)
    assert_landed_once(store.collection, thread.id, [])
    thread.post("user", "next")
    assert_landed_once(store.collection, thread.id, ["next"])


# -- the write is applied, then an error comes back ------------------------------------------------


def test_retryable_write_concern_error_after_the_post_is_applied_lands_it_once(
    store: ThreadStore, arm: Arm
) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "before")
    arm(
        {"times": 1},
        {
            "failCommands": ["update"],
            "writeConcernError": {"code": 91, "errmsg": "the node is shutting down"},
            "errorLabels": ["RetryableWriteError"],
        },
    )

    thread.post("user", "applied, then an error")  # the driver's retry finds it applied

    assert_landed_once(store.collection, thread.id, ["before", "applied, then an error"])
    assert thread.version == 2
    assert thread.message_count == 2


def test_write_concern_error_the_driver_does_not_retry_is_store_unavailable_and_lands_once(
    store: ThreadStore, arm: Arm
) -> None:
    # The write is applied but its reply carries a write concern error that is not
    # retryable (a replication timeout), so pymongo raises WriteConcernError. The caller
    # must get the library's "may or may not have been applied; safe to retry" error.
    thread = RoleThread(store=store)
    thread.post("user", "before")
    message = RoleMessage(role="user", text="applied, error not retried")
    arm(
        {"times": 1},
        {
            "failCommands": ["update"],
            "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"},
            "errorLabels": [],
        },
    )

    with pytest.raises(StoreUnavailableError):
        thread.add_msg(message)

    thread.add_msg(message)  # the retry is a no-op: the message is there already
    assert_landed_once(store.collection, thread.id, ["before", "applied, error not retried"])
    assert thread.version == 2


HOLD_UPDATE = {"failCommands": ["update"], "blockConnection": True, "blockTimeMS": BLOCK_MS}


@pytest.mark.slow
def test_post_held_back_until_after_the_driver_retried_it_lands_once(
    impatient_store: ThreadStore,
    arm: Arm,
    wire_client: MongoClient[Document],
    app_name: str,
) -> None:
    thread = RoleThread(store=impatient_store)
    thread.post("user", "before")
    arm({"times": 1}, HOLD_UPDATE)

    # The first attempt times out on the client and is retried at once; the server runs
    # the held-back first attempt later, after the retry landed.
    thread.post("user", "slow")
    collection = close_and_wait_until_served(impatient_store, wire_client, app_name)

    assert_landed_once(collection, thread.id, ["before", "slow"])
    assert thread.version == 2


@pytest.mark.slow
def test_post_held_back_past_both_attempts_raises_and_its_retry_lands_it_once(
    impatient_store: ThreadStore,
    arm: Arm,
    wire_client: MongoClient[Document],
    app_name: str,
) -> None:
    thread = RoleThread(store=impatient_store)
    thread.post("user", "before")
    message = RoleMessage(role="user", text="slow twice")
    arm({"times": 2}, HOLD_UPDATE)

    with pytest.raises(StoreUnavailableError):
        thread.add_msg(message)
    # Retried at once, while both held-back attempts are still to run on the server.
    thread.add_msg(message)
    collection = close_and_wait_until_served(impatient_store, wire_client, app_name)

    assert_landed_once(collection, thread.id, ["before", "slow twice"])
    assert thread.version == 2
    assert thread.messages()[-1].id == message.id


# -- a server of this test's own ------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[SecantusServer]:
    """A server on a storage folder of this test, to stop and start again on its port."""
    server = SecantusServer(tmp_path, tmp_path / "data", start_timeout=START_TIMEOUT)
    server.start()
    try:
        yield server
    finally:
        threadmem_mongo._config.reset()  # close the library's client before the server
        server.kill()  # its data is this test's temporary folder, nothing to shut down for


@pytest.mark.slow
def test_server_stopped_and_restarted_under_a_run_of_posts_loses_and_repeats_nothing(
    own_server: SecantusServer,
) -> None:
    threadmem_mongo.configure(uri=own_server.uri, timeout=2)
    thread = RoleThread(name="through a restart")
    outcomes: list[tuple[str, bool]] = []  # (text, acknowledged)
    counter = iter(range(10_000))

    def post() -> bool:
        text = f"m{next(counter)}"
        try:
            thread.post("user", text)
        except StoreUnavailableError:
            outcomes.append((text, False))
            return False
        outcomes.append((text, True))
        return True

    for _ in range(10):
        assert post()

    own_server.signal(signal.SIGTERM)
    deadline = time.monotonic() + WAIT
    while not own_server.exited() or sum(not ok for _, ok in outcomes) < 2:
        assert time.monotonic() < deadline, "the server did not stop"
        post()

    own_server.start()  # same port, same storage folder
    acknowledged_after = 0
    deadline = time.monotonic() + WAIT
    while acknowledged_after < 10:
        assert time.monotonic() < deadline, "the library did not reconnect"
        acknowledged_after += post()

    doc = stored(thread.store.collection, thread.id)
    texts = [m["text"] for m in doc["messages"]]
    acknowledged = [text for text, ok in outcomes if ok]
    assert set(acknowledged) <= set(texts), "an acknowledged post was lost"
    assert all(texts.count(text) == 1 for text in acknowledged), "a post landed twice"
    assert all(texts.count(text) <= 1 for text, _ in outcomes), "a post landed twice"
    assert texts == [text for text, _ in outcomes if text in texts], "posting order changed"
    assert doc["version"] == len(texts)
    assert doc["message_count"] == len(texts)
    assert len({m["id"] for m in doc["messages"]}) == len(texts)
    # The object the posts went through holds the stored thread after a refresh.
    thread.refresh()
    assert [m.text for m in thread.messages()] == texts
    thread.name = "after the restart"
    thread.save()
    assert RoleThread.get(thread.id).name == "after the restart"


@pytest.mark.slow
def test_calls_on_a_server_that_died_raise_store_unavailable_bounded_by_the_timeout(
    own_server: SecantusServer,
) -> None:
    threadmem_mongo.configure(uri=own_server.uri, timeout=0.5)
    thread = RoleThread(name="before the server died")
    thread.post("user", "hello")
    own_server.signal(signal.SIGKILL)
    assert own_server.process is not None
    own_server.process.wait(timeout=WAIT)

    def rename() -> None:
        thread.name = "renamed"
        thread.save()

    calls: dict[str, Callable[[], object]] = {
        "post": lambda: thread.post("user", "into the void"),
        "get": lambda: RoleThread.get(thread.id),
        "find": lambda: RoleThread.find(name="before the server died"),
        "save": rename,
        "create": lambda: RoleThread(name="never stored"),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailableError) as info:
            call()
        assert isinstance(info.value.__cause__, ConnectionFailure), name
    # Each of those calls gave up on the bound the timeout set, not on a driver default.
    options = threadmem_mongo._config.default_store().collection.database.client.options
    assert options.server_selection_timeout == options.timeout == 0.5


# -- server errors in the step after a write that landed ----------------------------------------

#: The server's own error for an interrupted operation: not a network error, so no retry.
INTERRUPTED = {"errorCode": 11601}


def test_a_post_whose_move_fails_with_a_server_error_returns_and_stores_once(
    store: ThreadStore, arm: Arm
) -> None:
    small = ThreadStore(store.collection, max_inline_messages=4)
    thread = RoleThread(store=small)
    for i in range(4):
        thread.post("user", f"m{i}")
    # The post's update lands; the move's page write after it fails.
    arm({"skip": 1}, {"failCommands": ["update", "insert"], **INTERRUPTED})
    posted = thread.post("user", "m4")
    assert posted.text == "m4"
    texts = [f"m{i}" for i in range(5)]
    assert [m.text for m in thread.messages()] == texts
    fresh = RoleThread.get(thread.id, store=small)
    assert ([m.text for m in fresh.messages()], fresh.message_count) == (texts, 5)
    arm("off", {})
    thread.post("user", "m5")  # the next post past the limit moves
    assert store.collection.find_one({"_id": thread.id})["page_count"] >= 1
    assert [m.text for m in RoleThread.get(thread.id, store=small).messages()] == [
        *texts,
        "m5",
    ]


def test_a_paged_delete_whose_page_update_fails_with_a_server_error_returns_and_is_completed(
    store: ThreadStore, arm: Arm
) -> None:
    small = ThreadStore(store.collection, max_inline_messages=4)
    thread = RoleThread(store=small)
    for i in range(10):
        thread.post("user", f"m{i}")
    paged = thread.messages()[0]
    # The thread's update (the deletion, recorded as pending) lands; the page's fails.
    arm({"skip": 1, "times": 1}, {"failCommands": ["update"], **INTERRUPTED})
    thread.delete_message(paged.id)
    left = [f"m{i}" for i in range(1, 10)]
    assert ([m.text for m in thread.messages()], thread.message_count) == (left, 9)
    doc = store.collection.find_one({"_id": thread.id})
    assert doc["pending"]  # readers apply it until a writer completes it
    fresh = RoleThread.get(thread.id, store=small)
    assert ([m.text for m in fresh.messages()], fresh.message_count) == (left, 9)
    arm("off", {})
    fresh.update_message(fresh.messages()[0].id, text="edited")  # completes the record
    assert not store.collection.find_one({"_id": thread.id}).get("pending")
    assert [m.text for m in RoleThread.get(thread.id, store=small).messages()] == [
        "edited",
        *left[1:],
    ]


@pytest.mark.asyncio
async def test_async_a_post_whose_move_fails_with_a_server_error_returns_and_stores_once(
    wire_uri: str, wire_client: MongoClient[Document], app_name: str, arm: Arm
) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        wire_uri, appname=app_name, serverSelectionTimeoutMS=5000
    )
    database = f"tm_test_{uuid.uuid4().hex}"
    try:
        small = AsyncThreadStore(client[database]["threads"], max_inline_messages=4)
        thread = await AsyncRoleThread.create(store=small)
        for i in range(4):
            await thread.post("user", f"m{i}")
        arm({"skip": 1}, {"failCommands": ["update", "insert"], **INTERRUPTED})
        await thread.post("user", "m4")
        texts = [f"m{i}" for i in range(5)]
        assert [m.text for m in await thread.messages()] == texts
        fresh = await AsyncRoleThread.get(thread.id, store=small)
        assert ([m.text for m in await fresh.messages()], fresh.message_count) == (texts, 5)
    finally:
        await client.close()
        wire_client.drop_database(database)
