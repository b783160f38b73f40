"""Concurrent writers on one thread, over the wire (SecantusDB): threads and processes.

Appends never conflict and never get lost; conditional changes made through ``apply()``
never lose an update.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bson
import pytest

import threadmem_mongo
from threadmem_mongo import RoleMessage, RoleThread, ThreadStore

pytestmark = pytest.mark.wire

Document = dict[str, Any]

THREAD_WRITERS = 8
THREAD_POSTS = 25
PROCESS_WRITERS = 4
PROCESS_POSTS = 30
PROCESS_TIMEOUT = 90.0
APPLY_ATTEMPTS = 1000


@pytest.fixture
def wire_store(wire_store: ThreadStore) -> ThreadStore:
    """The wire store with every message inline: these tests compare versions with
    message counts, which moves to overflow pages would also raise. Concurrent writers
    across pages are in ``test_overflow_processes.py``."""
    return ThreadStore(wire_store.collection, max_inline_messages=None)


def stored(store: ThreadStore, thread_id: str) -> Document:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None
    return doc


def assert_every_post_landed_once(doc: Document, writers: int, posts: int) -> list[str]:
    """Check the stored thread after ``writers`` each posted ``posts`` messages."""
    texts = [m["text"] for m in doc["messages"]]
    expected = {f"w{w}-{i}" for w in range(writers) for i in range(posts)}
    assert len(texts) == writers * posts
    assert set(texts) == expected
    for w in range(writers):
        own = [text for text in texts if text.startswith(f"w{w}-")]
        assert own == [f"w{w}-{i}" for i in range(posts)], f"writer {w} out of order"
    assert doc["version"] == writers * posts
    assert doc["message_count"] == len(doc["messages"])
    assert len({m["id"] for m in doc["messages"]}) == len(texts)
    assert doc["size_bytes"] >= len(bson.encode(doc))
    return [m["id"] for m in doc["messages"]]


def run_writers(count: int, writer: Callable[[int], object]) -> list[object]:
    """Run ``writer(0..count-1)`` in threads started together; re-raise their errors."""
    barrier = threading.Barrier(count)

    def started_together(index: int) -> object:
        barrier.wait()
        return writer(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(started_together, index) for index in range(count)]
        return [future.result(timeout=120) for future in futures]


# -- threads of one process ---------------------------------------------------------------------


@pytest.mark.slow
def test_threads_posting_through_own_objects_land_every_message_once(
    wire_store: ThreadStore,
) -> None:
    thread = RoleThread(store=wire_store)

    def writer(w: int) -> RoleThread:
        mine = RoleThread.get(thread.id, store=wire_store)
        for i in range(THREAD_POSTS):
            mine.post("user", f"w{w}-{i}", metadata={"writer": w})
        return mine

    objects = run_writers(THREAD_WRITERS, writer)
    final_ids = assert_every_post_landed_once(
        stored(wire_store, thread.id), THREAD_WRITERS, THREAD_POSTS
    )
    for w, mine in enumerate(objects):
        assert isinstance(mine, RoleThread)
        local = [m.id for m in mine.messages()]
        # Each object holds a state the store had: a prefix of the final list that
        # includes every message it posted itself.
        assert local == final_ids[: len(local)], (
            f"writer {w}'s object at version {mine.version} holds a message list the "
            "store never had"
        )
        assert mine.version == len(local)
        own = [m.text for m in mine.messages() if m.text.startswith(f"w{w}-")]
        assert own == [f"w{w}-{i}" for i in range(THREAD_POSTS)]
    thread.refresh()
    assert [m.id for m in thread.messages()] == final_ids


@pytest.mark.slow
def test_threads_posting_through_one_shared_object_land_every_message_once(
    wire_store: ThreadStore,
) -> None:
    shared = RoleThread(store=wire_store)

    def writer(w: int) -> None:
        for i in range(THREAD_POSTS):
            shared.post("user", f"w{w}-{i}")

    run_writers(THREAD_WRITERS, writer)
    final_ids = assert_every_post_landed_once(
        stored(wire_store, shared.id), THREAD_WRITERS, THREAD_POSTS
    )
    assert [m.id for m in shared.messages()] == final_ids
    assert shared.version == THREAD_WRITERS * THREAD_POSTS


def test_threads_applying_increments_lose_no_update(wire_store: ThreadStore) -> None:
    thread = RoleThread(metadata={"counter": 0}, store=wire_store)
    increments = 10

    def writer(_: int) -> int:
        mine = RoleThread.get(thread.id, store=wire_store)
        calls = 0

        def increment(t: RoleThread) -> None:
            nonlocal calls
            calls += 1
            assert t.metadata is not None
            t.metadata = {"counter": t.metadata["counter"] + 1}
            t.save()

        for _ in range(increments):
            mine.apply(increment, attempts=APPLY_ATTEMPTS)
        return calls

    calls = run_writers(THREAD_WRITERS, writer)
    doc = stored(wire_store, thread.id)
    assert doc["metadata"] == {"counter": THREAD_WRITERS * increments}
    assert doc["version"] == THREAD_WRITERS * increments
    assert sum(c for c in calls if isinstance(c, int)) >= THREAD_WRITERS * increments


def test_concurrent_retries_of_one_message_land_it_once(wire_store: ThreadStore) -> None:
    thread = RoleThread(store=wire_store)
    message = threadmem_mongo.RoleMessage(role="user", text="retried everywhere")

    def writer(_: int) -> None:
        RoleThread.get(thread.id, store=wire_store).add_msg(message)

    run_writers(THREAD_WRITERS, writer)
    doc = stored(wire_store, thread.id)
    assert [m["id"] for m in doc["messages"]] == [message.id]
    assert doc["version"] == 1
    assert doc["message_count"] == 1


# -- separate processes ---------------------------------------------------------------------------


def post_from_process(
    uri: str,
    database: str,
    thread_id: str,
    worker: int,
    posts: int,
    barrier: Any,
    results: Any,
) -> None:
    """Child process: post ``posts`` messages through its own object, report what it holds."""
    threadmem_mongo.configure(uri=uri, database=database, timeout=10, max_inline_messages=None)
    try:
        mine = RoleThread.get(thread_id)
        barrier.wait(timeout=60)
        own = [mine.post("user", f"w{worker}-{i}").id for i in range(posts)]
        local = [m.id for m in mine.messages()]
        results.put((worker, own, local, mine.version))
    finally:
        threadmem_mongo._config.reset()


def increment_from_process(
    uri: str,
    database: str,
    thread_id: str,
    worker: int,
    increments: int,
    barrier: Any,
    results: Any,
) -> None:
    """Child process: add one to metadata["counter"] ``increments`` times through apply()."""
    threadmem_mongo.configure(uri=uri, database=database, timeout=10, max_inline_messages=None)
    try:
        mine = RoleThread.get(thread_id)
        calls = 0

        def increment(t: RoleThread) -> None:
            nonlocal calls
            calls += 1
            assert t.metadata is not None
            t.metadata = {**t.metadata, "counter": t.metadata["counter"] + 1}
            t.save()

        barrier.wait(timeout=60)
        for _ in range(increments):
            mine.apply(increment, attempts=APPLY_ATTEMPTS)
        results.put((worker, calls, mine.version))
    finally:
        threadmem_mongo._config.reset()


def run_processes(
    target: Callable[..., None],
    workers: int,
    uri: str,
    database: str,
    thread_id: str,
    amount: int,
) -> list[Any]:
    """Run ``target`` in ``workers`` spawned processes started together; return their reports."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(
            target=target, args=(uri, database, thread_id, worker, amount, barrier, results)
        )
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    collected = []
    try:
        for _ in range(workers):
            collected.append(results.get(timeout=PROCESS_TIMEOUT))
    except queue.Empty:
        pytest.fail(f"only {len(collected)} of {workers} processes reported")
    finally:
        for process in processes:
            process.join(timeout=PROCESS_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    assert [process.exitcode for process in processes] == [0] * workers
    return sorted(collected)


@pytest.mark.slow
def test_processes_posting_to_one_thread_land_every_message_once(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    thread = RoleThread(store=wire_store)
    database = wire_store.collection.database.name
    reports = run_processes(
        post_from_process, PROCESS_WRITERS, wire_uri, database, thread.id, PROCESS_POSTS
    )
    final_ids = assert_every_post_landed_once(
        stored(wire_store, thread.id), PROCESS_WRITERS, PROCESS_POSTS
    )
    for worker, own, local, version in reports:
        assert len(own) == PROCESS_POSTS, worker
        assert local == final_ids[: len(local)], f"process {worker} holds a state never stored"
        assert set(own) <= set(local), f"process {worker} lost its own messages"
        assert version == len(local)


@pytest.mark.slow
def test_processes_applying_increments_lose_no_update(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    increments = 10
    thread = RoleThread(metadata={"counter": 0, "keep": "me"}, store=wire_store)
    database = wire_store.collection.database.name
    reports = run_processes(
        increment_from_process, PROCESS_WRITERS, wire_uri, database, thread.id, increments
    )
    landed = PROCESS_WRITERS * increments
    doc = stored(wire_store, thread.id)
    assert doc["metadata"] == {"counter": landed, "keep": "me"}
    assert doc["version"] == landed
    assert sum(calls for _, calls, _ in reports) >= landed
    assert all(1 <= version <= landed for _, _, version in reports)


def test_object_behind_others_appends_catches_up_without_reading_the_whole_thread(
    wire_uri: str,
) -> None:
    import uuid

    from pymongo import MongoClient, monitoring

    class Commands(monitoring.CommandListener):
        def __init__(self) -> None:
            self.names: list[str] = []
            self.reply_bytes = 0

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            self.names.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            self.reply_bytes += len(bson.encode(event.reply))

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    listener = Commands()
    watched_client: MongoClient[dict[str, Any]] = MongoClient(wire_uri, event_listeners=[listener])
    database = f"tm_test_{uuid.uuid4().hex}"
    try:
        # Every message inline, so the whole thread is one document to compare with.
        store = ThreadStore(watched_client[database]["threads"], max_inline_messages=None)
        mine = RoleThread(store=store)
        mine.extend([RoleMessage(role="user", text=f"old {i} " + "x" * 200) for i in range(200)])
        other = RoleThread.get(mine.id, store=store)
        other.post("assistant", "from the other writer")
        listener.names.clear()
        listener.reply_bytes = 0
        posted = mine.post("user", "mine, after theirs")
        # Pinned update (missed), the unpinned append, and one read of what came after.
        assert listener.names == ["update", "update", "aggregate"]
        assert listener.reply_bytes < 4_000  # not the 200 earlier messages
        stored_ids = [m["id"] for m in store.collection.find_one({"_id": mine.id})["messages"]]
        assert [m.id for m in mine.messages()] == stored_ids
        assert mine.messages()[-1].id == posted.id
        assert mine.version == 3  # the batch, theirs, then mine
        # Any change other than an append makes it read the whole thread instead.
        other.refresh()
        other.name = "renamed"
        other.save()
        other.post("assistant", "and another")
        mine.post("user", "one more")
        assert mine.name == "renamed"
        assert [m.id for m in mine.messages()] == [
            m["id"] for m in store.collection.find_one({"_id": mine.id})["messages"]
        ]
    finally:
        watched_client.drop_database(database)
        watched_client.close()
