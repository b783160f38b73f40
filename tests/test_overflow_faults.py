"""Overflow pages under faults and races: what a move or an edit of a paged message leaves
behind when it stops half-way, and movers that overlap.

- A move writes its page, then commits it with one update conditional on the version it
  read. When the commit never lands, the post still returns, readers ignore the page
  (the thread document does not count it), and the next move replaces it.
- An edit of a paged message lands in the thread document (``pending``) first, then in
  the page. When the page update never happens, every reader still sees the edit, and
  the next change to a paged message completes it.
- Movers whose views of the thread are stale never duplicate or lose a message.

The faults are made by replacing one step (the commit builder, the page store's
``apply``) with one raising ``StoreUnavailableError``, on every backend, and on the wire
server also with ``failCommand`` (the SecantusDB server runs with
``--enable-test-commands``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from threadmem_mongo import (
    RoleMessage,
    RoleThread,
    StoreUnavailableError,
    ThreadStore,
    VersionConflictError,
    _updates,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

Document = dict[str, Any]

LIMIT = 4
WAIT = 30.0
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def big_image(tag: int) -> str:
    """A PNG data URI over the GridFS threshold, distinct per ``tag``."""
    payload = PNG + bytes([tag % 256]) * 40_000
    return "data:image/png;base64," + base64.b64encode(payload).decode()


def names(count: int) -> list[str]:
    return [f"m{i}" for i in range(count)]


@pytest.fixture
def small(store: ThreadStore) -> ThreadStore:
    """The test's store with at most 4 messages inline (a move takes the oldest 2)."""
    return ThreadStore(store.collection, max_inline_messages=LIMIT)


@pytest.fixture
def async_small(async_store: AsyncThreadStore) -> AsyncThreadStore:
    return AsyncThreadStore(async_store.collection, max_inline_messages=LIMIT)


@pytest.fixture
def sync_twin(async_raw: Any) -> ThreadStore:
    """The async test's collection through the sync API, with the same limits."""
    return ThreadStore(async_raw, max_inline_messages=LIMIT)


def long_thread(store: ThreadStore, count: int) -> RoleThread:
    thread = RoleThread(store=store)
    for i in range(count):
        thread.post("user" if i % 2 == 0 else "assistant", f"m{i}")
    return thread


def stored(store: ThreadStore, thread_id: str) -> Document:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None
    return doc


def all_pages(store: ThreadStore, thread_id: str) -> list[Document]:
    return list(store.pages.collection.find({"thread_id": thread_id}, sort=[("n", 1)]))


def assert_layout(store: ThreadStore, thread_id: str, expected: list[str]) -> Document:
    """Committed pages 0.. without a gap, then the inline part, hold ``expected`` once
    each and in order, and the counters agree."""
    doc = stored(store, thread_id)
    page_count = doc.get("page_count", 0)
    committed = [page for page in all_pages(store, thread_id) if page["n"] < page_count]
    assert [page["n"] for page in committed] == list(range(page_count))
    messages = [m for page in committed for m in page["messages"]] + doc["messages"]
    assert [m["text"] for m in messages] == expected
    assert len({m["id"] for m in messages}) == len(messages)
    assert doc["message_count"] == len(expected)
    assert doc.get("paged_count", 0) == len(messages) - len(doc["messages"])
    return doc


def assert_readers_see(store: ThreadStore, thread: RoleThread, expected: list[str]) -> None:
    """Every way of reading the thread gives ``expected``, each message once."""
    assert [m.text for m in RoleThread.get(thread.id, store=store).messages()] == expected
    for last in (1, 3, 6, len(expected)):
        partial = RoleThread.get(thread.id, last=last, store=store)
        assert [m.text for m in partial.messages()] == expected[-last:]
    collected: list[str] = []
    page = thread.history(limit=3)
    while page:
        collected = [m.text for m in page] + collected
        page = thread.history(before=page[0].id, limit=3)
    assert collected == expected
    found = [m.text for m in RoleMessage.find(thread_id=thread.id, store=store)]
    assert found == expected


# -- (a) a move whose commit never lands --------------------------------------------------------


@pytest.fixture
def commit_fails_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next move's commit raises StoreUnavailableError after its page is written.

    Returns the list of versions the failed moves were based on (one per failure).
    """
    real = _updates.move_to_page
    failed: list[int] = []

    def failing(
        thread_id: str, version: int, *args: Any, **options: Any
    ) -> tuple[Document, Document]:
        if not failed:
            failed.append(version)
            raise StoreUnavailableError("the commit of the move did not reach the server")
        return real(thread_id, version, *args, **options)

    monkeypatch.setattr(_updates, "move_to_page", failing)
    return failed


def test_a_move_whose_commit_fails_leaves_a_page_readers_ignore_and_the_next_move_replaces(
    small: ThreadStore, commit_fails_once: list[int]
) -> None:
    thread = long_thread(small, LIMIT)

    posted = thread.post("user", "m4")  # the page is written, the commit fails

    assert posted.text == "m4"
    assert commit_fails_once == [LIMIT + 1]
    doc = assert_layout(small, thread.id, names(5))
    assert doc.get("page_count", 0) == 0
    assert doc["version"] == 5 == thread.version
    (leftover,) = all_pages(small, thread.id)
    assert (leftover["n"], leftover["version"]) == (0, 5)
    assert [m["text"] for m in leftover["messages"]] == ["m0", "m1"]
    assert [m.text for m in thread.messages()] == names(5)
    assert_readers_see(small, thread, names(5))
    assert len(RoleMessage.find(text="m0", store=small)) == 1

    # The leftover holds m0 as it was; the next move must write it as it is now.
    thread.update_message(thread.messages()[0].id, text="m0 edited")
    thread.post("user", "m5")

    expected = ["m0 edited", *names(6)[1:]]
    doc = assert_layout(small, thread.id, expected)
    assert doc["page_count"] == 1
    (page,) = all_pages(small, thread.id)
    assert [m["text"] for m in page["messages"]] == ["m0 edited", "m1"]
    assert page["version"] == 7  # written from the newer view, over the leftover
    # 6 posts, an edit and the move that landed: the failed one did not count.
    assert doc["version"] == 8 == thread.version
    assert_readers_see(small, thread, expected)


@pytest.mark.asyncio
async def test_async_a_move_whose_commit_fails_is_ignored_then_replaced(
    async_small: AsyncThreadStore, sync_twin: ThreadStore, commit_fails_once: list[int]
) -> None:
    thread = await AsyncRoleThread.create(store=async_small)
    for i in range(LIMIT):
        await thread.post("user", f"m{i}")

    await thread.post("user", "m4")

    assert commit_fails_once == [LIMIT + 1]
    assert assert_layout(sync_twin, thread.id, names(5)).get("page_count", 0) == 0
    assert len(all_pages(sync_twin, thread.id)) == 1
    assert [m.text for m in await thread.messages()] == names(5)
    reloaded = await AsyncRoleThread.get(thread.id, store=async_small)
    assert [m.text for m in await reloaded.messages()] == names(5)
    assert [m.text for m in await thread.history(limit=100)] == names(5)
    found = await AsyncRoleThread.find_messages(thread_id=thread.id, store=async_small)
    assert [m.text for m in found] == names(5)
    assert_readers_see(sync_twin, RoleThread.get(thread.id, store=sync_twin), names(5))

    for i in range(5, 9):
        await thread.post("user", f"m{i}")

    doc = assert_layout(sync_twin, thread.id, names(9))
    assert doc["page_count"] == 3
    assert doc["version"] == 9 + 3 == thread.version
    assert [page["n"] for page in all_pages(sync_twin, thread.id)] == [0, 1, 2]


def test_sweep_deletes_leftover_pages_once_older_than_the_cutoff(
    small: ThreadStore, commit_fails_once: list[int]
) -> None:
    kept = long_thread(small, LIMIT)
    kept.post("user", "m4")  # leaves page 0 uncommitted
    assert commit_fails_once
    gone = RoleThread(store=small)
    for i in range(10):
        gone.post("user", f"look {i}", images=[big_image(i)] if i < 4 else None)
    assert stored(small, gone.id)["page_count"] == 3
    # The thread document goes as the TTL monitor removes it: its pages stay behind.
    small.collection.delete_one({"_id": gone.id})
    files = small.collection.database["threadmem_images.files"]
    assert files.count_documents({}) == 4

    assert small.sweep_blobs(older_than=datetime.timedelta(hours=1)) == []
    assert len(all_pages(small, kept.id)) == 1
    assert len(all_pages(small, gone.id)) == 3
    assert files.count_documents({}) == 4

    released = small.sweep_blobs(older_than=datetime.timedelta(0))

    assert all_pages(small, gone.id) == []
    assert all_pages(small, kept.id) == []  # uncounted by its thread
    assert len(released) == 4
    assert files.count_documents({}) == 0
    assert_readers_see(small, kept, names(5))
    kept.post("user", "m5")
    assert assert_layout(small, kept.id, names(6))["page_count"] == 1


# -- the same on the wire, with the server failing the commit ------------------------------------


@pytest.fixture
def failing_client(wire_uri: str, wire_client: MongoClient[Document]) -> Iterator[Any]:
    """A client named for this test, and a way to arm ``failCommand`` for it alone."""
    app_name = f"overflow-faults-{uuid.uuid4().hex[:12]}"
    client: MongoClient[Document] = MongoClient(
        wire_uri, appname=app_name, serverSelectionTimeoutMS=5000, heartbeatFrequencyMS=500
    )

    def arm(mode: Any, data: Document) -> None:
        wire_client.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": mode,
                "data": {**data, "appName": app_name},
            }
        )

    try:
        yield client, arm
    finally:
        wire_client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        client.close()


@pytest.mark.wire
def test_server_failing_a_moves_commit_after_its_page_write_leaves_an_ignored_page(
    failing_client: Any, store_factory: Callable[..., ThreadStore], wire_client: Any
) -> None:
    client, arm = failing_client
    small = store_factory(client, max_inline_messages=LIMIT)
    thread = long_thread(small, LIMIT)
    # The post's updates: its append, the page write (an upserting replace), the commit.
    # Past the first two every update fails, the driver's retry of the commit included.
    arm({"skip": 2}, {"failCommands": ["update"], "closeConnection": True})

    thread.post("user", "m4")

    arm("off", {})
    doc = assert_layout(small, thread.id, names(5))
    assert doc.get("page_count", 0) == 0
    assert doc["version"] == 5 == thread.version
    (leftover,) = all_pages(small, thread.id)
    assert [m["text"] for m in leftover["messages"]] == ["m0", "m1"]
    assert_readers_see(small, thread, names(5))

    thread.post("user", "m5")

    doc = assert_layout(small, thread.id, names(6))
    assert doc["page_count"] == 1
    assert doc["version"] == 7 == thread.version
    (page,) = all_pages(small, thread.id)
    assert page["version"] == 6
    assert_readers_see(small, thread, names(6))


# -- (b) an edit of a paged message whose page update never happens ----------------------------


@pytest.fixture
def pages_down(small: ThreadStore, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Page updates raise StoreUnavailableError until the returned function is called."""

    def unreachable(*args: Any) -> None:
        raise StoreUnavailableError("the page could not be reached")

    monkeypatch.setattr(small.pages, "apply", unreachable)
    return lambda: monkeypatch.delattr(small.pages, "apply")


def page_texts(store: ThreadStore, thread_id: str) -> list[str]:
    return [m["text"] for page in all_pages(store, thread_id) for m in page["messages"]]


@pytest.mark.parametrize("next_writer", ["same object", "fresh object"])
def test_an_edit_whose_page_update_fails_is_seen_by_readers_and_completed_by_the_next_change(
    small: ThreadStore, pages_down: Callable[[], None], next_writer: str
) -> None:
    thread = long_thread(small, 12)
    ids = [m.id for m in thread.messages()]

    edited = thread.update_message(ids[0], text="edited")

    assert edited.text == "edited"
    expected = ["edited", *names(12)[1:]]
    assert [m.text for m in thread.messages()] == expected
    assert_readers_see(small, thread, expected)
    assert RoleMessage.find(text="m0", store=small) == []
    assert [m.id for m in RoleMessage.find(text="edited", store=small)] == [ids[0]]
    assert [m.id for m in RoleMessage.find(text="edited", thread_id=thread.id, store=small)] == [
        ids[0]
    ]
    doc = stored(small, thread.id)
    assert [record["v"] for record in doc["pending"]] == [doc["version"]] == [thread.version]
    assert page_texts(small, thread.id)[0] == "m0"  # the page itself is as it was

    pages_down()
    writer = thread if next_writer == "same object" else RoleThread.get(thread.id, store=small)
    writer.update_message(ids[2], text="second")

    expected[2] = "second"
    doc = assert_layout(small, thread.id, expected)
    assert not doc.get("pending")
    assert page_texts(small, thread.id)[:3] == ["edited", "m1", "second"]
    assert_readers_see(small, thread, expected)
    assert doc["version"] == writer.version


@pytest.mark.parametrize("next_writer", ["same object", "fresh object"])
def test_a_delete_whose_page_update_fails_is_seen_by_readers_and_completed_by_the_next_change(
    small: ThreadStore, pages_down: Callable[[], None], next_writer: str
) -> None:
    thread = long_thread(small, 12)
    ids = [m.id for m in thread.messages()]

    thread.delete_message(ids[1])

    expected = [text for text in names(12) if text != "m1"]
    assert [m.text for m in thread.messages()] == expected
    assert_readers_see(small, thread, expected)
    assert RoleMessage.find(id=ids[1], store=small) == []
    doc = stored(small, thread.id)
    assert doc["message_count"] == 11 == thread.message_count
    assert [record["pull"] for record in doc["pending"]] == [[ids[1]]]
    assert "m1" in page_texts(small, thread.id)

    pages_down()
    writer = thread if next_writer == "same object" else RoleThread.get(thread.id, store=small)
    writer.delete_message(ids[3])

    expected.remove("m3")
    doc = assert_layout(small, thread.id, expected)
    assert not doc.get("pending")
    assert_readers_see(small, thread, expected)


@pytest.mark.parametrize("next_writer", ["same object", "fresh object"])
def test_image_removal_across_pages_whose_second_page_update_fails_loses_nothing(
    small: ThreadStore, monkeypatch: pytest.MonkeyPatch, next_writer: str
) -> None:
    thread = RoleThread(store=small)
    for i in range(8):
        thread.post("user", f"look {i}", images=[big_image(i)])
    real = small.pages.apply
    applied: list[int] = []

    def first_page_only(thread_id: str, record: Document) -> None:
        if applied:
            raise StoreUnavailableError("the second page could not be reached")
        applied.append(record["page"])
        real(thread_id, record)

    monkeypatch.setattr(small.pages, "apply", first_page_only)

    thread.remove_images()

    assert applied == [0]
    doc = stored(small, thread.id)
    assert [record["page"] for record in doc["pending"]] == [1]
    for messages in (thread.messages(), RoleThread.get(thread.id, store=small).messages()):
        assert [m.text for m in messages] == [f"look {i}" for i in range(8)]
        assert [m.images for m in messages] == [[]] * 8
    assert all(not m.images for m in RoleMessage.find(role="user", store=small))

    monkeypatch.delattr(small.pages, "apply")
    writer = thread if next_writer == "same object" else RoleThread.get(thread.id, store=small)
    writer.update_message(writer.messages()[0].id, text="done")

    doc = stored(small, thread.id)
    assert not doc.get("pending")
    assert doc["size_bytes"] == writer._state.size_bytes
    assert not any(
        m.get("images") or m.get("blobs")
        for page in all_pages(small, thread.id)
        for m in page["messages"]
    )
    # The images of the page completed late are left for the sweep to release.
    assert small.collection.database["threadmem_images.files"].count_documents({}) == 2
    small.sweep_blobs(older_than=datetime.timedelta(0))
    assert small.collection.database["threadmem_images.files"].count_documents({}) == 0


def test_a_stale_writer_never_reapplies_a_completed_change_over_a_newer_one(
    small: ThreadStore, pages_down: Callable[[], None]
) -> None:
    thread = long_thread(small, 12)
    first = thread.messages()[0].id
    thread.update_message(first, text="A")  # left pending
    pages_down()
    stale = RoleThread.get(thread.id, store=small)  # knows A as pending
    current = RoleThread.get(thread.id, store=small)
    current.update_message(first, text="C")  # completes A, then C
    version = stored(small, thread.id)["version"]

    with pytest.raises(VersionConflictError):
        stale.update_message(first, text="D")

    assert stored(small, thread.id)["version"] == version
    assert not stored(small, thread.id).get("pending")
    assert page_texts(small, thread.id)[0] == "C"
    assert RoleThread.get(thread.id, store=small).messages()[0].text == "C"
    assert [m.text for m in RoleMessage.find(id=first, store=small)] == ["C"]
    stale.refresh()
    stale.update_message(first, text="D")
    assert page_texts(small, thread.id)[0] == "D"


@pytest.mark.asyncio
async def test_async_edit_whose_page_update_fails_is_read_and_completed_by_the_next_change(
    async_small: AsyncThreadStore, sync_twin: ThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await AsyncRoleThread.create(store=async_small)
    for i in range(12):
        await thread.post("user", f"m{i}")
    ids = [m.id for m in await thread.messages()]

    async def unreachable(*args: Any) -> None:
        raise StoreUnavailableError("the page could not be reached")

    monkeypatch.setattr(async_small.pages, "apply", unreachable)
    await thread.update_message(ids[0], text="edited")
    version = thread.version
    # The next change to a page completes the pending one first: while the pages cannot
    # be reached it raises, and writes nothing.
    with pytest.raises(StoreUnavailableError):
        await thread.delete_message(ids[3])

    expected = ["edited", *names(12)[1:]]
    doc = stored(sync_twin, thread.id)
    assert len(doc["pending"]) == 1
    assert doc["version"] == version == thread.version
    assert [m.text for m in await thread.messages()] == expected
    reloaded = await AsyncRoleThread.get(thread.id, store=async_small)
    assert [m.text for m in await reloaded.messages()] == expected
    assert [m.text for m in await thread.history(limit=100)] == expected
    found = await AsyncRoleThread.find_messages(thread_id=thread.id, store=async_small)
    assert [m.text for m in found] == expected
    (edited,) = await AsyncRoleThread.find_messages(text="edited", store=async_small)
    assert edited.id == ids[0]
    assert await AsyncRoleThread.find_messages(text="m0", store=async_small) == []
    assert_readers_see(sync_twin, RoleThread.get(thread.id, store=sync_twin), expected)

    monkeypatch.delattr(async_small.pages, "apply")
    await thread.delete_message(ids[3])

    expected.remove("m3")
    doc = assert_layout(sync_twin, thread.id, expected)
    assert not doc.get("pending")
    assert doc["size_bytes"] == thread._state.size_bytes
    assert doc["version"] == version + 1 == thread.version
    paged = [m["text"] for page in all_pages(sync_twin, thread.id) for m in page["messages"]]
    assert paged == expected[: len(paged)]


# -- (c) movers with stale views ---------------------------------------------------------------


@pytest.mark.parametrize("pause", ["before its page write", "after its page write"])
def test_a_mover_paused_while_another_moves_neither_duplicates_nor_loses(
    small: ThreadStore, monkeypatch: pytest.MonkeyPatch, pause: str
) -> None:
    thread = long_thread(small, LIMIT)
    slow_store = ThreadStore(small.collection, max_inline_messages=LIMIT)
    slow = RoleThread.get(thread.id, store=slow_store)
    real = slow_store.pages.write
    reached, proceed = threading.Event(), threading.Event()
    written: list[bool] = []

    def paused_write(page: Document) -> bool:
        if pause == "after its page write":
            written.append(real(page))
        reached.set()
        assert proceed.wait(WAIT)
        if pause == "before its page write":
            written.append(real(page))
        return written[-1]

    monkeypatch.setattr(slow_store.pages, "write", paused_write)
    errors: list[BaseException] = []

    def post_slowly() -> None:
        try:
            slow.post("user", "slow")
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    runner = threading.Thread(target=post_slowly)
    runner.start()
    try:
        assert reached.wait(WAIT)
        for i in range(6):
            thread.post("assistant", f"fast {i}")  # moves past the slow mover's view
    finally:
        proceed.set()
        runner.join(WAIT)
    assert not runner.is_alive()
    assert errors == []
    monkeypatch.delattr(slow_store.pages, "write")

    expected = [*names(LIMIT), "slow", *[f"fast {i}" for i in range(6)]]
    doc = assert_layout(small, thread.id, expected)
    assert doc["version"] == len(expected) + doc["page_count"]
    assert_readers_see(small, thread, expected)
    slow.post("user", "after")
    assert [m.text for m in slow.messages()] == [*expected, "after"]
    assert slow.version == assert_layout(small, thread.id, [*expected, "after"])["version"]


@pytest.mark.slow
@pytest.mark.backends("wire", reason="mongomock's client is not safe to share across threads")
def test_two_objects_posting_from_threads_move_without_duplicates_or_losses(
    small: ThreadStore,
) -> None:
    thread = RoleThread(store=small)
    writers = [RoleThread.get(thread.id, store=small) for _ in range(2)]
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def post_all(index: int) -> None:
        try:
            barrier.wait(WAIT)
            for i in range(25):
                writers[index].post("user", f"w{index}-{i}")
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    runners = [threading.Thread(target=post_all, args=(i,)) for i in range(len(writers))]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(WAIT * 4)
    assert errors == []

    messages = RoleThread.get(thread.id, store=small).messages()
    texts = [m.text for m in messages]
    assert sorted(texts) == sorted(f"w{w}-{i}" for w in range(2) for i in range(25))
    for w in range(2):
        assert [t for t in texts if t.startswith(f"w{w}-")] == [f"w{w}-{i}" for i in range(25)]
    doc = assert_layout(small, thread.id, texts)
    assert doc["version"] == 50 + doc["page_count"]
    assert len(doc["messages"]) <= LIMIT + 1


@pytest.mark.slow
@pytest.mark.asyncio
async def test_tasks_posting_through_stale_objects_move_without_duplicates_or_losses(
    async_small: AsyncThreadStore, sync_twin: ThreadStore
) -> None:
    thread = await AsyncRoleThread.create(store=async_small)
    writers = [await AsyncRoleThread.get(thread.id, store=async_small) for _ in range(3)]
    start = asyncio.Event()

    async def post_all(index: int) -> None:
        await start.wait()
        for i in range(20):
            await writers[index].post("user", f"w{index}-{i}")

    tasks = [asyncio.create_task(post_all(i)) for i in range(len(writers))]
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT * 4)

    reloaded = await AsyncRoleThread.get(thread.id, store=async_small)
    texts = [m.text for m in await reloaded.messages()]
    assert sorted(texts) == sorted(f"w{w}-{i}" for w in range(3) for i in range(20))
    for w in range(3):
        assert [t for t in texts if t.startswith(f"w{w}-")] == [f"w{w}-{i}" for i in range(20)]
    doc = assert_layout(sync_twin, thread.id, texts)
    assert doc["version"] == 60 + doc["page_count"]
    for writer in writers:
        await writer.refresh()
        assert [m.text for m in await writer.messages()] == texts


@pytest.mark.asyncio
async def test_async_mover_paused_before_its_page_write_gives_way_to_a_newer_page(
    async_small: AsyncThreadStore, sync_twin: ThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await AsyncRoleThread.create(store=async_small)
    for i in range(LIMIT):
        await thread.post("user", f"m{i}")
    slow_store = AsyncThreadStore(async_small.collection, max_inline_messages=LIMIT)
    slow = await AsyncRoleThread.get(thread.id, store=slow_store)
    real = slow_store.pages.write
    reached, proceed = asyncio.Event(), asyncio.Event()
    results: list[bool] = []

    async def paused_write(page: Document) -> bool:
        reached.set()
        await proceed.wait()
        results.append(await real(page))
        return results[-1]

    monkeypatch.setattr(slow_store.pages, "write", paused_write)
    posting = asyncio.create_task(slow.post("user", "slow"))
    await asyncio.wait_for(reached.wait(), WAIT)
    for i in range(6):
        await thread.post("assistant", f"fast {i}")
    proceed.set()
    await asyncio.wait_for(posting, WAIT)

    assert results == [False]  # its view was older than the committed page's
    expected = [*names(LIMIT), "slow", *[f"fast {i}" for i in range(6)]]
    doc = assert_layout(sync_twin, thread.id, expected)
    assert doc["version"] == len(expected) + doc["page_count"]
    reloaded = await AsyncRoleThread.get(thread.id, store=async_small)
    assert [m.text for m in await reloaded.messages()] == expected
