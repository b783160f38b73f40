"""Threads past the inline limits: the newest messages inline, the oldest in overflow pages.

Through the sync API on every backend, with small limits (4 messages inline, so a move
takes the oldest 2) so that every operation crosses the boundary many times. The async
API, faults and concurrent processes are in ``test_overflow_*.py``.
"""

from __future__ import annotations

import base64
import datetime
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

from threadmem_mongo import (
    InvalidInputError,
    MessageNotFoundError,
    RoleMessage,
    RoleThread,
    ThreadStore,
    V1RoleMessage,
    V1RoleThread,
    VersionConflictError,
)

Document = dict[str, Any]
LIMIT = 4
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def big_image(tag: int = 0) -> str:
    """A PNG data URI over the GridFS threshold (distinct per ``tag``)."""
    payload = PNG + bytes([tag % 256]) * 40_000
    return "data:image/png;base64," + base64.b64encode(payload).decode()


@pytest.fixture
def small(store: ThreadStore) -> ThreadStore:
    """The test's store with at most 4 messages inline."""
    return ThreadStore(store.collection, max_inline_messages=LIMIT)


def texts(thread: RoleThread) -> list[str]:
    return [message.text for message in thread.messages()]


def long_thread(store: ThreadStore, count: int) -> RoleThread:
    thread = RoleThread(owner_id="owner", store=store)
    for i in range(count):
        thread.post("user" if i % 2 == 0 else "assistant", f"m{i}")
    return thread


def stored(store: ThreadStore, thread_id: str) -> Document:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None
    return doc


def committed_pages(store: ThreadStore, thread_id: str) -> list[Document]:
    page_count = stored(store, thread_id).get("page_count", 0)
    return list(
        store.pages.collection.find(
            {"thread_id": thread_id, "n": {"$lt": page_count}}, sort=[("n", 1)]
        )
    )


def assert_layout(store: ThreadStore, thread_id: str, expected: list[str]) -> None:
    """Every message once, in order, across committed pages then the inline part."""
    doc = stored(store, thread_id)
    pages = committed_pages(store, thread_id)
    assert [page["n"] for page in pages] == list(range(doc.get("page_count", 0)))
    paged = [m["text"] for page in pages for m in page["messages"]]
    inline = [m["text"] for m in doc["messages"]]
    assert paged + inline == expected
    assert doc["message_count"] == len(expected)
    assert doc.get("paged_count", 0) == len(paged)
    assert len(inline) <= LIMIT + 1
    assert not doc.get("pending")


# -- the layout -------------------------------------------------------------------------------


def test_a_thread_under_the_limit_looks_as_it_always_did(small: ThreadStore) -> None:
    thread = long_thread(small, LIMIT)
    doc = stored(small, thread.id)
    assert not {"page_count", "paged_count", "pending"} & set(doc)
    assert small.pages.collection.count_documents({}) == 0
    assert texts(thread) == [f"m{i}" for i in range(LIMIT)]


def test_posts_past_the_limit_move_the_oldest_to_ordered_pages(small: ThreadStore) -> None:
    expected = [f"m{i}" for i in range(31)]
    thread = long_thread(small, 31)

    assert texts(thread) == expected
    assert_layout(small, thread.id, expected)
    assert texts(RoleThread.get(thread.id, store=small)) == expected
    assert thread.message_count == 31
    # 31 posts and one version per move, and the object knows it without reading.
    assert thread.version == stored(small, thread.id)["version"]
    assert thread.version == 31 + stored(small, thread.id)["page_count"]


def test_overflow_off_keeps_every_message_inline(store: ThreadStore) -> None:
    off = ThreadStore(store.collection, max_inline_messages=None)
    thread = long_thread(off, 40)
    assert len(stored(off, thread.id)["messages"]) == 40
    assert off.pages.collection.count_documents({}) == 0
    assert thread.version == 40


def test_the_byte_limit_moves_messages_too(store: ThreadStore) -> None:
    by_bytes = ThreadStore(store.collection, max_inline_messages=1000, max_inline_bytes=20_000)
    thread = RoleThread(store=by_bytes)
    for i in range(12):
        thread.post("user", f"{i}:" + "x" * 3_000)
    doc = stored(by_bytes, thread.id)
    assert doc["page_count"] >= 1
    assert doc["size_bytes"] < 20_000 + 4_000
    assert [m.text[:3] for m in RoleThread.get(thread.id, store=by_bytes).messages()] == [
        f"{i}:x" for i in range(10)
    ] + ["10:", "11:"]


@pytest.mark.parametrize("limits", [{"max_inline_messages": 1}, {"max_inline_bytes": 0}])
def test_limits_that_cannot_work_are_refused(store: ThreadStore, limits: Document) -> None:
    with pytest.raises(InvalidInputError):
        ThreadStore(store.collection, **limits)


# -- reads ---------------------------------------------------------------------------------------


def test_get_last_reads_the_newest_across_pages(small: ThreadStore) -> None:
    thread = long_thread(small, 31)  # one thread for every count: reads change nothing
    for last in [0, 1, 3, 5, 8, 20, 31, 100]:
        loaded = RoleThread.get(thread.id, last=last, store=small)
        assert texts(loaded) == [f"m{i}" for i in range(31)][31 - min(last, 31) :], last
        assert loaded.message_count == 31, last
        assert loaded.is_partial == (last < 31), last


def test_history_pages_back_through_pages_to_the_first_message(small: ThreadStore) -> None:
    thread = long_thread(small, 31)
    collected: list[str] = []
    page = thread.history(limit=3)
    while page:
        collected = [m.text for m in page] + collected
        page = thread.history(before=page[0].id, limit=3)
    assert collected == [f"m{i}" for i in range(31)]
    assert [m.text for m in thread.history(before=thread.messages()[1].id)] == ["m0"]
    with pytest.raises(MessageNotFoundError):
        thread.history(before="no-such-message")


def test_role_message_find_reaches_paged_messages_in_order(small: ThreadStore) -> None:
    first = long_thread(small, 11)
    second = long_thread(small, 11)
    found = RoleMessage.find(role="user", store=small)
    assert [(m.thread_id, m.text) for m in found] == [
        (thread.id, f"m{i}") for thread in (first, second) for i in range(0, 11, 2)
    ]
    (one,) = RoleMessage.find(text="m0", thread_id=second.id, store=small)
    assert one == second.messages()[0]


# -- changes to paged messages ------------------------------------------------------------


def test_update_and_delete_of_paged_messages_land_in_their_pages(small: ThreadStore) -> None:
    thread = long_thread(small, 21)
    first, fifth = thread.messages()[0], thread.messages()[4]
    version = thread.version

    edited = thread.update_message(first.id, text="edited", metadata={"k": 1})
    thread.delete_message(fifth.id)

    assert thread.version == version + 2
    assert edited.text == "edited"
    expected = ["edited"] + [f"m{i}" for i in range(1, 21) if i != 4]
    assert texts(thread) == expected
    assert texts(RoleThread.get(thread.id, store=small)) == expected
    assert_layout(small, thread.id, expected)
    assert RoleMessage.find(id=first.id, store=small)[0].metadata == {"k": 1}
    assert RoleMessage.find(id=fifth.id, store=small) == []
    assert thread.message_count == 20


def test_a_partial_object_edits_messages_before_its_window(small: ThreadStore) -> None:
    thread = long_thread(small, 21)
    partial = RoleThread.get(thread.id, last=2, store=small)
    partial.update_message(thread.messages()[2].id, text="from the partial object")
    partial.delete_message(thread.messages()[0].id)
    assert texts(RoleThread.get(thread.id, store=small))[:2] == ["m1", "from the partial object"]
    assert texts(partial) == ["m19", "m20"]


def test_a_stale_edit_of_a_message_moved_since_conflicts_and_apply_retries(
    small: ThreadStore,
) -> None:
    thread = long_thread(small, LIMIT)
    stale = RoleThread.get(thread.id, store=small)
    target = stale.messages()[0]  # inline for the stale object
    for i in range(6):
        thread.post("user", f"more {i}")  # moves it to a page
    with pytest.raises(VersionConflictError):
        stale.update_message(target.id, text="stale")

    def rename(current: RoleThread) -> None:
        current.update_message(target.id, text="applied")

    stale.apply(rename)
    assert texts(RoleThread.get(thread.id, store=small))[0] == "applied"


def test_remove_images_strips_paged_and_inline_images_and_releases_them(
    small: ThreadStore,
) -> None:
    thread = RoleThread(store=small)
    for i in range(9):
        thread.post("user", f"look {i}", images=[big_image(i)])
        thread.post("assistant", f"seen {i}")
    files = small.collection.database["threadmem_images.files"]
    assert files.count_documents({}) == 9

    thread.remove_images()

    reloaded = RoleThread.get(thread.id, store=small)
    assert all(not m.images for m in reloaded.messages())
    assert [m.text for m in reloaded.messages()][:2] == ["look 0", "seen 0"]
    assert files.count_documents({}) == 0
    assert not stored(small, thread.id).get("pending")


# -- whole threads -------------------------------------------------------------------------------


def test_copy_of_a_long_thread_has_every_message_with_new_ids(small: ThreadStore) -> None:
    thread = long_thread(small, 25)
    made = RoleThread.get(thread.id, last=3, store=small).copy()
    assert texts(made) == [f"m{i}" for i in range(25)]
    assert texts(RoleThread.get(made.id, store=small)) == [f"m{i}" for i in range(25)]
    assert not {m.id for m in made.messages()} & {m.id for m in thread.messages()}
    assert stored(small, made.id)["page_count"] >= 1
    assert_layout(small, made.id, [f"m{i}" for i in range(25)])


def test_from_v1_of_more_messages_than_fit_inline_starts_with_pages(small: ThreadStore) -> None:
    schema = V1RoleThread(
        id="imported",
        public=False,
        created=1.0,
        updated=2.0,
        messages=[
            V1RoleMessage(id=f"v1-{i}", role="user", text=f"m{i}", created=float(i))
            for i in range(25)
        ],
    )
    thread = RoleThread.from_v1(schema, store=small)
    assert thread.version == 0
    assert texts(RoleThread.get("imported", store=small)) == [f"m{i}" for i in range(25)]
    assert stored(small, "imported")["page_count"] >= 1
    with pytest.raises(InvalidInputError):
        RoleThread.from_v1(schema, store=small)  # its ids, and the thread, exist
    assert texts(RoleThread.get("imported", store=small)) == [f"m{i}" for i in range(25)]


def test_delete_leaves_no_thread_page_or_image(small: ThreadStore) -> None:
    thread = RoleThread(store=small)
    for i in range(12):
        thread.post("user", f"look {i}", images=[big_image(i)] if i % 3 == 0 else None)
    database = small.collection.database
    assert small.pages.collection.count_documents({}) > 0
    thread.delete()
    assert small.collection.count_documents({}) == 0
    assert small.pages.collection.count_documents({}) == 0
    assert database["threadmem_images.files"].count_documents({}) == 0
    assert database["threadmem_images.chunks"].count_documents({}) == 0


def test_images_in_pages_read_back_and_are_kept_by_the_sweep(small: ThreadStore) -> None:
    thread = RoleThread(store=small)
    for i in range(10):
        thread.post("user", f"look {i}", images=[big_image(i)])
    assert small.sweep_blobs(older_than=datetime.timedelta(0)) == []
    reloaded = RoleThread.get(thread.id, store=small)
    assert [m.images for m in reloaded.messages()] == [[big_image(i)] for i in range(10)]


def test_touch_keeps_pages_no_shorter_lived_than_their_thread(small: ThreadStore) -> None:
    thread = RoleThread(store=small, ttl=datetime.timedelta(hours=1))
    for i in range(12):
        thread.post("user", f"m{i}")
    thread.touch(ttl=datetime.timedelta(days=3))
    expiry = stored(small, thread.id)["expires_at"]
    pages = committed_pages(small, thread.id)
    assert pages
    assert all(page["expires_at"] >= expiry for page in pages)


def test_catching_up_after_others_posted_past_the_limit(small: ThreadStore) -> None:
    mine = long_thread(small, 3)
    theirs = RoleThread.get(mine.id, store=small)
    for i in range(3):
        theirs.post("assistant", f"theirs {i}")
    mine.post("user", "mine")
    expected = ["m0", "m1", "m2", "theirs 0", "theirs 1", "theirs 2", "mine"]
    assert texts(mine) == expected
    assert mine.version == stored(small, mine.id)["version"]


# -- costs over the wire ------------------------------------------------------------------------


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def counted(wire_uri: str) -> Iterator[tuple[ThreadStore, Commands]]:
    """A store with the default limits on a client whose commands are counted."""
    commands = Commands()
    client: MongoClient[Document] = MongoClient(wire_uri, event_listeners=[commands])
    made = ThreadStore(client[f"tm_test_{uuid.uuid4().hex}"]["threads"])
    made.ensure_indexes()
    yield made, commands
    client.drop_database(made.collection.database.name)
    client.close()


@pytest.mark.slow
@pytest.mark.wire
def test_the_newest_20_are_one_command_and_a_long_thread_a_few(
    counted: tuple[ThreadStore, Commands],
) -> None:
    store, commands = counted
    count = 2_500
    thread = RoleThread.from_openai(
        [{"role": "user", "content": f"m{i}"} for i in range(count)], store=store
    )
    pages = stored(store, thread.id)["page_count"]
    assert pages >= 20

    commands.names.clear()
    assert texts(RoleThread.get(thread.id, last=20, store=store)) == [
        f"m{i}" for i in range(count - 20, count)
    ]
    assert commands.names == ["find"]

    commands.names.clear()
    assert texts(RoleThread.get(thread.id, store=store)) == [f"m{i}" for i in range(count)]
    assert len(commands.names) <= 2 + pages / 100 + 1  # the thread, its pages (and a getMore)

    # A post is one command, except the one in every 50 that takes the thread past
    # 100 inline messages: that one also moves the oldest 50 to a page.
    posts: list[list[str]] = []
    for i in range(150):
        commands.names.clear()
        thread.post("user", f"more {i}")
        posts.append(list(commands.names))
    moving = ["update", "find", "update", "update"]  # post, read head, write page, commit
    assert all(names in (["update"], moving) for names in posts)
    # Created with 100 inline, the first post moves; then one in every 50 does.
    assert [i for i, names in enumerate(posts) if names == moving] == [0, 50, 100]


# -- threads written before the limits, and watchers ------------------------------------------


def test_compact_moves_threads_written_before_the_limits_into_pages(store: ThreadStore) -> None:
    everything_inline = ThreadStore(store.collection, max_inline_messages=None)
    old = long_thread(everything_inline, 23)
    short = long_thread(everything_inline, 3)

    totals = ThreadStore(store.collection, max_inline_messages=LIMIT).compact()

    assert totals["threads"] == 2
    assert totals["moves"] >= 9
    assert_layout(store, old.id, [f"m{i}" for i in range(23)])
    assert "page_count" not in stored(store, short.id)
    assert texts(RoleThread.get(old.id, store=store)) == [f"m{i}" for i in range(23)]


@pytest.mark.slow
@pytest.mark.wire
def test_threadmem_compact_moves_one_thread_or_all(wire_uri: str, wire_store: ThreadStore) -> None:
    from threadmem_mongo._cli import main

    everything_inline = ThreadStore(wire_store.collection, max_inline_messages=None)
    thread = RoleThread(owner_id="owner", store=everything_inline)
    # One update instead of 450 posts: only the stored layout matters to compact.
    thread.extend(
        [RoleMessage(role="user" if i % 2 == 0 else "assistant", text=f"m{i}") for i in range(450)]
    )
    database = wire_store.collection.database.name
    assert main(["--uri", wire_uri, "--database", database, "compact", thread.id]) == 0
    doc = stored(wire_store, thread.id)
    assert doc["page_count"] == 7  # 50 at a time, until at most 100 are left inline
    assert len(doc["messages"]) == 100
    assert main(["--uri", wire_uri, "--database", database, "compact", "no-such-thread"]) == 1


@pytest.mark.wire
def test_watchers_see_each_post_once_while_messages_move_to_pages(wire_store: ThreadStore) -> None:
    small_wire = ThreadStore(wire_store.collection, max_inline_messages=LIMIT)
    thread = RoleThread(store=small_wire)
    first = thread.post("user", "first")
    watching = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            writer = RoleThread.get(thread.id, store=small_wire)
            writer.post("user", "m0")
            assert watching.wait(60), "the watcher never saw the first post"
            for i in range(1, 12):
                writer.post("user", f"m{i}")  # moves to pages happen along the way
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[str] = []
    try:
        for event in thread.watch(after_message=first.id, idle_timeout=30):
            assert event.kind == "message_added", event
            assert event.message is not None
            seen.append(event.message.text)
            watching.set()
            if len(seen) == 12:
                break
    finally:
        watching.set()
        writer.join(60)
    assert not errors
    assert seen == [f"m{i}" for i in range(12)]
    assert stored(small_wire, thread.id)["page_count"] >= 4


@pytest.mark.wire
def test_each_operation_sends_the_commands_the_docs_list(
    counted: tuple[ThreadStore, Commands],
) -> None:
    store, commands = counted
    thread = RoleThread.from_openai(
        [{"role": "user", "content": f"m{i}"} for i in range(2_500)], store=store
    )
    thread.post("user", "moves a page")
    ids = [message.id for message in thread.messages()]

    def sent(call: Callable[[], object]) -> list[str]:
        commands.names.clear()
        call()
        return list(commands.names)

    assert sent(lambda: thread.post("user", "one")) == ["update"]
    assert sent(lambda: RoleThread.get(thread.id, last=20, store=store)) == ["find"]
    assert sent(lambda: RoleThread.get(thread.id, last=80, store=store)) == ["find", "find"]
    assert sent(lambda: RoleThread.get(thread.id, store=store)) == ["find", "find"]
    assert sent(lambda: thread.history(before=ids[-5], limit=3)) == ["aggregate"]
    assert sent(lambda: thread.history(before=ids[-40], limit=50)) == ["aggregate", "find"]
    assert sent(lambda: thread.history(before=ids[500], limit=50)) == [
        "aggregate",
        "find",
        "find",
    ]
    five = ["find", "find", "update", "update", "update"]
    assert sent(lambda: thread.update_message(ids[10], text="edited")) == five
    assert sent(lambda: thread.delete_message(ids[11])) == five
    assert sent(lambda: thread.update_message(ids[-2], text="inline")) == ["update"]
    assert sent(lambda: RoleMessage.find(id=ids[20], store=store)) == [
        "aggregate",
        "find",
        "find",
    ]
    # No page holds an image: the pages are deleted without being read.
    assert sent(thread.delete) == ["findAndModify", "delete"]


def test_delete_reads_the_pages_of_a_thread_paged_before_paged_blobs_and_releases_their_images(
    raw: Any, store: ThreadStore
) -> None:
    small = ThreadStore(store.collection, max_inline_messages=4, image_threshold=0)
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"x" * 64).decode()
    thread = RoleThread(store=small)
    thread.post("user", "with an image", images=[image])
    for i in range(8):
        thread.post("user", f"m{i}")
    assert raw.find_one({"_id": thread.id})["paged_blobs"] is True
    # A thread whose pages came before the field: its deletion must read them.
    raw.update_one({"_id": thread.id}, {"$unset": {"paged_blobs": ""}})
    database = small.collection.database
    assert database["threadmem_images.files"].count_documents({}) == 1
    thread.delete()
    assert database["threadmem_images.files"].count_documents({}) == 0
    assert small.pages.collection.count_documents({"thread_id": thread.id}) == 0


def test_find_loads_paged_messages_as_get_does(small: ThreadStore) -> None:
    thread = long_thread(small, 12)
    long_thread(small, 3)
    found = RoleThread.find(owner_id="owner", store=small)
    assert len(found) == 2
    assert texts(found[0]) == [f"m{i}" for i in range(12)]
    assert found[0].to_openai() == thread.to_openai()
    assert texts(RoleThread.find(id=thread.id, last=8, store=small)[0]) == [
        f"m{i}" for i in range(4, 12)
    ]


def test_extend_and_save_refuse_an_id_the_thread_holds_inline_unloaded(
    small: ThreadStore, raw: Any
) -> None:
    thread = long_thread(small, 12)
    stored = thread.messages()
    for last in (0, 2):
        partial = RoleThread.get(thread.id, last=last, store=small)
        for message in stored[-3:]:  # inline, loaded (last=2) or not (last=0)
            again = RoleMessage(role="user", text="again", id=message.id)
            before = raw.find_one({"_id": thread.id})
            with pytest.raises(InvalidInputError, match=r"already|the thread holds"):
                partial.extend([again])
            with pytest.raises(InvalidInputError, match=r"already|the thread holds"):
                partial.save(append=again)
            assert raw.find_one({"_id": thread.id}) == before
    assert [m.id for m in RoleThread.get(thread.id, store=small).messages()] == [
        m.id for m in stored
    ]


def test_a_retried_add_msg_whose_message_moved_to_a_page_stores_nothing(
    small: ThreadStore, raw: Any
) -> None:
    thread = long_thread(small, 12)
    landed = thread.messages()[0]  # in a page by now
    before = raw.find_one({"_id": thread.id})
    thread.add_msg(landed)
    assert raw.find_one({"_id": thread.id}) == before
    assert [m.text for m in RoleThread.get(thread.id, store=small).messages()] == [
        f"m{i}" for i in range(12)
    ]
