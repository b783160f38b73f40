"""Both APIs from any event loop and any thread, on the wire lane (pymongo's async client).

pymongo binds an ``AsyncMongoClient`` to the first event loop that uses it; the async
stores give every other loop a copy of the client and close it when that loop shuts
down (``threadmem_mongo._loops``). These tests run loops the ways apps do: one
``asyncio.run`` after another, a loop per thread, a loop closed without shutting down
its async generators, and a script checked for warnings on stderr.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import InvalidOperation

import threadmem_mongo
import threadmem_mongo.aio
from threadmem_mongo import RoleThread, _loops
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

pytestmark = pytest.mark.wire

ROOT = Path(__file__).resolve().parent.parent
THREADS = 3
POSTS = 4
#: A guard only: threads that pass finish in well under a second.
THREAD_TIMEOUT = 120.0

Document = dict[str, Any]
T = TypeVar("T")


class ClientEvents(monitoring.TopologyListener):
    """The clients that opened and closed, by topology id. A copy of a client shares the
    listeners of the client it copies, so its opening and closing are seen too."""

    def __init__(self) -> None:
        self.opened_ids: list[Any] = []
        self.closed_ids: list[Any] = []

    def opened(self, event: monitoring.TopologyOpenedEvent) -> None:
        self.opened_ids.append(event.topology_id)

    def description_changed(self, event: monitoring.TopologyDescriptionChangedEvent) -> None:
        pass

    def closed(self, event: monitoring.TopologyClosedEvent) -> None:
        self.closed_ids.append(event.topology_id)

    def still_open(self) -> set[Any]:
        return set(self.opened_ids) - set(self.closed_ids)


async def listened_client(uri: str, events: ClientEvents) -> AsyncMongoClient[Document]:
    """A client reporting to ``events`` (pymongo starts its listener task on the running
    loop, so it is made on one)."""
    return AsyncMongoClient(uri, event_listeners=[events])


@pytest.fixture
def database() -> str:
    """A fresh database name (the session's server is thrown away at the end)."""
    return f"tm_loops_{uuid.uuid4().hex}"


@pytest.fixture
def default_async_store(wire_uri: str, database: str) -> Iterator[None]:
    """``threadmem_mongo.aio``'s default store on the wire server."""
    threadmem_mongo.aio.configure(uri=wire_uri, database=database)
    yield
    threadmem_mongo._config.reset()


async def create_and_post(text: str, store: AsyncThreadStore | None = None) -> str:
    thread = await AsyncRoleThread.create(owner_id="loops", store=store)
    await thread.post(role="user", msg=text)
    return thread.id


async def post_and_read(
    thread_id: str, texts: list[str], store: AsyncThreadStore | None = None
) -> list[str]:
    thread = await AsyncRoleThread.get(thread_id, last=0, store=store)
    for text in texts:
        await thread.post(role="user", msg=text)
    again = await AsyncRoleThread.get(thread_id, store=store)
    return [message.text for message in await again.messages()]


def run_released(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(work)``, checking that the library keeps nothing for the loop after."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def noting_the_loop() -> T:
        loops.append(asyncio.get_running_loop())
        return await work

    result = asyncio.run(noting_the_loop())
    assert loops[0] not in _loops._keepers
    return result


def run_in_threads(work: Callable[[int], T], count: int = THREADS) -> list[T]:
    """Run ``work(index)`` in ``count`` threads started together; return the results,
    raising the first error. A thread still running after ``THREAD_TIMEOUT`` (stuck on
    a client of another loop, say) fails the test rather than hanging it."""
    barrier = threading.Barrier(count)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT)
    if errors:
        raise errors[0]
    stuck = sum(thread.is_alive() for thread in threads)
    assert not stuck, f"{stuck} of {count} threads still running after {THREAD_TIMEOUT} s"
    return [results[index] for index in range(count)]


# -- one loop after another ----------------------------------------------------------------


@pytest.mark.usefixtures("default_async_store")
def test_two_asyncio_runs_use_the_default_async_store() -> None:
    thread_id = run_released(create_and_post("first"))
    assert run_released(post_and_read(thread_id, ["second"])) == ["first", "second"]
    assert run_released(post_and_read(thread_id, ["third"])) == ["first", "second", "third"]


def test_two_asyncio_runs_use_a_store_built_on_your_client(wire_uri: str, database: str) -> None:
    events = ClientEvents()

    async def first() -> tuple[str, AsyncThreadStore]:
        client = await listened_client(wire_uri, events)
        store = AsyncThreadStore(client[database]["threads"])
        try:
            return await create_and_post("first", store), store
        finally:
            await client.close()  # yours: the library never closes it

    thread_id, store = run_released(first())
    assert run_released(post_and_read(thread_id, ["second"], store)) == ["first", "second"]
    # Yours, then the copy made for the second loop, closed when that loop ended.
    assert len(set(events.opened_ids)) == 2
    assert events.still_open() == set()


def test_another_loop_gets_a_copy_closed_with_it_and_your_client_stays_open(
    wire_uri: str, database: str
) -> None:
    events = ClientEvents()
    with asyncio.Runner() as home:
        client = home.run(listened_client(wire_uri, events))
        store = AsyncThreadStore(client[database]["threads"])
        thread_id = home.run(create_and_post("home", store))
        assert _loops.bound_loop(client) is home.get_loop()
        (yours,) = events.opened_ids

        async def elsewhere() -> tuple[list[str], Any]:
            texts = await post_and_read(thread_id, ["elsewhere"], store)
            return texts, store.collection.database.client

        texts, copy = run_released(elsewhere())
        assert texts == ["home", "elsewhere"]
        assert copy is not client
        assert events.still_open() == {yours}
        # The home loop still uses your client.
        assert home.run(post_and_read(thread_id, ["home again"], store))[-1] == "home again"
        assert home.run(store.collection.find_one({"_id": thread_id}))["_id"] == thread_id
        assert events.still_open() == {yours}
        home.run(client.close())
    assert events.still_open() == set()


def test_a_copy_keeps_the_database_and_collection_options(wire_uri: str, database: str) -> None:
    from pymongo.read_concern import ReadConcern
    from pymongo.write_concern import WriteConcern

    client: AsyncMongoClient[Document] = AsyncMongoClient(wire_uri, appname="loops-test")
    collection = client.get_database(database, read_concern=ReadConcern("local")).get_collection(
        "threads", write_concern=WriteConcern(w=1, j=False)
    )
    store = AsyncThreadStore(collection)
    with asyncio.Runner() as home:
        home.run(create_and_post("bind your client", store))

        async def seen() -> Any:
            return store.collection

        copied = asyncio.run(seen())
        assert copied.database.client is not client
        assert copied.full_name == collection.full_name
        assert copied.write_concern == collection.write_concern
        assert copied.read_concern == collection.read_concern
        assert copied.database.read_concern == collection.database.read_concern
        assert copied.codec_options == collection.codec_options
        home.run(client.close())


# -- a loop per thread -----------------------------------------------------------------------


@pytest.mark.usefixtures("default_async_store")
def test_threads_each_with_its_own_loop_post_to_and_read_one_thread() -> None:
    thread_id = run_released(create_and_post("start"))

    def work(index: int) -> list[str]:
        texts = [f"t{index}-{n}" for n in range(POSTS)]
        return run_released(post_and_read(thread_id, texts))

    seen = run_in_threads(work)
    final = run_released(post_and_read(thread_id, []))
    assert final[0] == "start"
    assert sorted(final[1:]) == sorted(f"t{i}-{n}" for i in range(THREADS) for n in range(POSTS))
    for index, texts in enumerate(seen):
        own = [text for text in texts if text.startswith(f"t{index}-")]
        assert own == [f"t{index}-{n}" for n in range(POSTS)]  # in order, all there


def test_threads_with_loops_share_a_store_built_on_your_client(
    wire_uri: str, database: str
) -> None:
    events = ClientEvents()
    with asyncio.Runner() as home:
        client = home.run(listened_client(wire_uri, events))
        store = AsyncThreadStore(client[database]["threads"])
        thread_id = home.run(create_and_post("start", store))

        def work(index: int) -> list[str]:
            return run_released(post_and_read(thread_id, [f"t{index}"], store))

        run_in_threads(work)
        texts = home.run(post_and_read(thread_id, [], store))
        assert sorted(texts) == sorted(["start", *(f"t{i}" for i in range(THREADS))])
        # A copy per thread's loop, each closed with it; yours is still open.
        assert len(set(events.opened_ids)) == THREADS + 1
        assert len(events.still_open()) == 1
        home.run(client.close())
    assert events.still_open() == set()


def test_threads_with_the_sync_default_store(wire_uri: str, database: str) -> None:
    threadmem_mongo.configure(uri=wire_uri, database=database)
    thread = RoleThread(owner_id="loops")

    def work(index: int) -> None:
        mine = RoleThread.get(thread.id, last=0)
        for n in range(POSTS):
            mine.post(role="user", msg=f"t{index}-{n}")

    run_in_threads(work)
    texts = [message.text for message in RoleThread.get(thread.id).messages()]
    assert sorted(texts) == sorted(f"t{i}-{n}" for i in range(THREADS) for n in range(POSTS))


# -- closing -------------------------------------------------------------------------------


def test_aio_close_closes_the_copy_made_for_its_loop_not_your_client(
    wire_uri: str, database: str
) -> None:
    events = ClientEvents()
    with asyncio.Runner() as home:
        client = home.run(listened_client(wire_uri, events))
        threadmem_mongo.aio.configure(client=client, database=database)
        thread_id = home.run(create_and_post("home"))
        (yours,) = events.opened_ids

        async def elsewhere() -> set[Any]:
            await post_and_read(thread_id, ["elsewhere"])
            assert len(events.still_open()) == 2
            await threadmem_mongo.aio.close()
            return events.still_open()

        assert asyncio.run(elsewhere()) == {yours}
        home.run(client.close())


def test_a_loop_used_after_each_shutdown_asyncgens_gets_a_client_closed_by_the_next(
    wire_uri: str, database: str
) -> None:
    """The Agents SDK's ``run_sync`` shuts down a loop's async generators after each run
    and keeps the loop for the next: each run gets a client, closed when it ends."""
    threadmem_mongo.aio.configure(uri=wire_uri, database=database)
    # pymongo's own operations start async generators, and asyncio warns about those on
    # a loop past shutdown_asyncgens, as about the library's keeper. (pytest restores
    # the filters after the test.)
    warnings.filterwarnings("ignore", "asynchronous generator", ResourceWarning)

    def client_in_use() -> Any:
        return threadmem_mongo._config.async_default_store().collection.database.client

    async def first() -> tuple[str, Any]:
        return await create_and_post("first"), client_in_use()

    async def again(thread_id: str, text: str) -> tuple[list[str], Any]:
        return await post_and_read(thread_id, [text]), client_in_use()

    async def ping(client: Any) -> None:
        await client.admin.command("ping")

    loop = asyncio.new_event_loop()
    try:
        thread_id, used = loop.run_until_complete(first())
        clients = [used]
        loop.run_until_complete(loop.shutdown_asyncgens())
        for text in ("second", "third"):
            texts, used = loop.run_until_complete(again(thread_id, text))
            assert texts[-1] == text
            clients.append(used)
            loop.run_until_complete(loop.shutdown_asyncgens())
            assert loop not in _loops._keepers
        assert len({id(client) for client in clients}) == 3
        for closed in clients:
            with pytest.raises(InvalidOperation):
                loop.run_until_complete(ping(closed))
    finally:
        loop.close()


def test_a_loop_closed_without_shutdown_asyncgens_is_dropped_and_the_next_loop_works(
    wire_uri: str, database: str
) -> None:
    """Nothing can close a client on a loop closed without ``shutdown_asyncgens()``: the
    library drops it when it next sets up a loop, and pymongo reports the background
    tasks that died with the loop once the client is collected (documented in
    docs/concepts/async-and-watch.md)."""
    threadmem_mongo.aio.configure(uri=wire_uri, database=database)
    loop = asyncio.new_event_loop()
    thread_id = loop.run_until_complete(create_and_post("first"))
    loop.close()
    assert loop in _loops._keepers
    reported: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = reported.append
    try:
        texts = run_released(post_and_read(thread_id, ["second"]))
        assert loop not in _loops._keepers
        # The default store still holds the client that served the closed loop.
        threadmem_mongo._config.reset()
        del loop
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert texts == ["first", "second"]
    # What is reported is pymongo's: cancelling its dead tasks, an unclosed client.
    assert reported
    assert {type(report.exc_value) for report in reported} <= {RuntimeError, ResourceWarning}


# -- what the library relies on, that pymongo and asyncio keep private ------------------------


def test_pymongo_still_records_the_loop_a_client_is_bound_to(wire_uri: str) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(wire_uri)
    assert _loops.bound_loop(client) is None
    with asyncio.Runner() as runner:
        runner.run(client.admin.command("ping"))
        assert _loops.bound_loop(client) is runner.get_loop()
        runner.run(client.close())


def test_pymongo_still_copies_a_client_with_its_arguments(wire_uri: str) -> None:
    events = ClientEvents()

    async def copied() -> tuple[AsyncMongoClient[Document], AsyncMongoClient[Document]]:
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            wire_uri, appname="loops-test", timeoutMS=4321, tz_aware=True, event_listeners=[events]
        )
        copy = client._duplicate()
        await client.close()
        await copy.close()
        return client, copy

    client, copy = asyncio.run(copied())
    assert type(copy) is AsyncMongoClient
    assert copy is not client
    assert copy.options.timeout == client.options.timeout == 4.321
    assert copy.options.pool_options.metadata["application"] == {"name": "loops-test"}
    assert copy.codec_options == client.codec_options
    assert copy.codec_options.tz_aware
    assert copy.options.event_listeners == client.options.event_listeners
    assert copy.topology_description.topology_type == client.topology_description.topology_type


# -- a script's stderr -----------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import asyncio, atexit, sys, threading

    # A loop left open and idle, as LlamaIndex's sync calls leave the main thread's: its
    # client is closed at exit by the library's handler, which, registered later, runs
    # before this one.
    idle = asyncio.new_event_loop()
    atexit.register(idle.close)

    from pymongo import AsyncMongoClient
    import threadmem_mongo.aio
    from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

    uri, database = sys.argv[1], sys.argv[2]
    threadmem_mongo.aio.configure(uri=uri, database=database)

    async def post(thread_id, text, store=None):
        if thread_id is None:
            thread = await AsyncRoleThread.create(owner_id="script", store=store)
        else:
            thread = await AsyncRoleThread.get(thread_id, last=0, store=store)
        await thread.post(role="user", msg=text)
        return thread.id

    # The default store, one asyncio.run after another.
    thread_id = asyncio.run(post(None, "one"))
    asyncio.run(post(thread_id, "two"))

    # Threads, each with its loop.
    workers = [
        threading.Thread(target=asyncio.run, args=(post(thread_id, f"t{n}"),))
        for n in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    # A store on your client: yours serves the first loop, a copy the second.
    client = AsyncMongoClient(uri)
    store = AsyncThreadStore(client[database]["mine"])

    async def first():
        try:
            return await post(None, "mine", store)
        finally:
            await client.close()

    mine = asyncio.run(first())
    asyncio.run(post(mine, "mine again", store))

    idle.run_until_complete(post(thread_id, "idle"))

    async def count(thread_id, store=None):
        thread = await AsyncRoleThread.get(thread_id, store=store)
        return len(await thread.messages())

    print(asyncio.run(count(thread_id)), asyncio.run(count(mine, store)))
    """
)


def test_a_script_using_many_loops_writes_nothing_to_stderr(wire_uri: str, database: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", SCRIPT, wire_uri, database],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["6", "2"]
