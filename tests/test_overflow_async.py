"""Threads past the inline limits through the async API, on every backend.

The same behaviours as ``test_overflow.py`` (the sync API), reached with
``AsyncRoleThread`` on a store with at most 4 messages inline (a move takes the oldest
2), and each checked again through the sync API and the stored documents: the newest
messages inline, the oldest in contiguous pages, every message once and in order, the
version raised by one for every change that landed (a move included), and nothing left
``pending`` once an edit has completed.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo.collection import Collection

from threadmem_mongo import (
    InvalidInputError,
    MessageNotFoundError,
    RoleMessage,
    RoleThread,
    ThreadNotFoundError,
    ThreadStore,
    ThreadTooLargeError,
    V1RoleMessage,
    V1RoleThread,
    VersionConflictError,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

pytestmark = pytest.mark.asyncio

Document = dict[str, Any]
Raw = Collection[Document]

LIMIT = 4
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def big_image(tag: int) -> str:
    """A PNG data URI over the GridFS threshold, distinct per ``tag``."""
    payload = PNG + bytes([tag % 256]) * 40_000
    return "data:image/png;base64," + base64.b64encode(payload).decode()


@pytest.fixture
def small(async_store: AsyncThreadStore) -> AsyncThreadStore:
    """An async store over the test's collection with at most 4 messages inline."""
    return AsyncThreadStore(async_store.collection, max_inline_messages=LIMIT)


@pytest.fixture
def sync_small(async_raw: Raw) -> ThreadStore:
    """The same collection through the sync API, with the same limits."""
    return ThreadStore(async_raw, max_inline_messages=LIMIT)


def interleave(
    monkeypatch: pytest.MonkeyPatch,
    owner: object,
    name: str,
    action: Callable[[], Awaitable[Any]],
    *,
    after: bool = False,
) -> list[int]:
    """Run ``action`` once, as another writer would: just before (or just after) the
    first call of ``owner.name``. Returns a list that holds an entry once it ran."""
    real = getattr(owner, name)
    ran: list[int] = []

    async def interleaved(*args: Any, **kwargs: Any) -> Any:
        if not ran and not after:
            ran.append(1)
            await action()
        result = await real(*args, **kwargs)
        if not ran and after:
            ran.append(1)
            await action()
        return result

    monkeypatch.setattr(owner, name, interleaved)
    return ran


def names(count: int) -> list[str]:
    return [f"m{i}" for i in range(count)]


async def long_thread(store: AsyncThreadStore, count: int, **options: Any) -> AsyncRoleThread:
    thread = await AsyncRoleThread.create(owner_id="owner", store=store, **options)
    for i in range(count):
        await thread.post("user" if i % 2 == 0 else "assistant", f"m{i}")
    return thread


async def texts(thread: AsyncRoleThread) -> list[str]:
    return [message.text for message in await thread.messages()]


def sync_texts(store: ThreadStore, thread_id: str, last: int | None = None) -> list[str]:
    return [m.text for m in RoleThread.get(thread_id, last=last, store=store).messages()]


def stored(raw: Raw, thread_id: str) -> Document:
    doc = raw.find_one({"_id": thread_id})
    assert doc is not None, f"thread {thread_id} is not stored"
    return doc


def pages_of(sync_store: ThreadStore, thread_id: str) -> list[Document]:
    """Every page of the thread, committed or not, in page order."""
    return list(sync_store.pages.collection.find({"thread_id": thread_id}, sort=[("n", 1)]))


def assert_layout(sync_store: ThreadStore, thread_id: str, expected: list[str]) -> Document:
    """The stored thread holds ``expected`` once each, in order: committed pages numbered
    0.. without a gap, then the inline part, within the limit; nothing pending."""
    doc = stored(sync_store.collection, thread_id)
    page_count = doc.get("page_count", 0)
    committed = [page for page in pages_of(sync_store, thread_id) if page["n"] < page_count]
    assert [page["n"] for page in committed] == list(range(page_count))
    paged = [m["text"] for page in committed for m in page["messages"]]
    inline = [m["text"] for m in doc["messages"]]
    assert paged + inline == expected
    ids = [m["id"] for page in committed for m in page["messages"]] + [
        m["id"] for m in doc["messages"]
    ]
    assert len(set(ids)) == len(ids)
    assert doc["message_count"] == len(expected)
    assert doc.get("paged_count", 0) == len(paged)
    assert 1 <= len(inline) <= LIMIT or not expected
    assert not doc.get("pending")
    return doc


# -- posting and reading -----------------------------------------------------------------------


async def test_posts_past_the_limit_read_back_whole_and_in_order_through_both_apis(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 31)

    assert await texts(thread) == names(31)
    assert await texts(await AsyncRoleThread.get(thread.id, store=small)) == names(31)
    assert sync_texts(sync_small, thread.id) == names(31)
    doc = assert_layout(sync_small, thread.id, names(31))
    assert doc["page_count"] == 14  # every post past the 4th leaves 5 inline: one move
    # One version per post and one per move, which the object knows without reading.
    assert doc["version"] == 31 + doc["page_count"]
    assert thread.version == doc["version"]
    assert thread.message_count == 31
    reloaded = await AsyncRoleThread.get(thread.id, store=small)
    assert (reloaded.version, reloaded.message_count) == (thread.version, 31)
    assert [m.id for m in await reloaded.messages()] == [m.id for m in await thread.messages()]


async def test_get_last_reads_the_newest_below_and_above_the_inline_count(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 31)  # one thread for every count: reads change nothing
    inline = len(stored(sync_small.collection, thread.id)["messages"])
    assert 1 <= inline <= LIMIT

    for last in [0, 1, 2, 3, 4, 5, 8, 20, 31, 100]:
        loaded = await AsyncRoleThread.get(thread.id, last=last, store=small)

        expected = names(31)[31 - min(last, 31) :]
        assert await texts(loaded) == expected, last
        assert sync_texts(sync_small, thread.id, last=last) == expected, last
        assert loaded.message_count == 31, last
        assert loaded.version == thread.version, last
        assert loaded.is_partial == (last < 31), last


async def test_history_pages_back_through_pages_to_the_first_message(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 23)  # one thread for every page size: reads change nothing
    sync_thread = RoleThread.get(thread.id, last=1, store=sync_small)

    for limit in [1, 2, 3, 5, 50]:
        collected: list[str] = []
        page = await thread.history(limit=limit)
        assert [m.id for m in sync_thread.history(limit=limit)] == [m.id for m in page], limit
        while page:
            assert 1 <= len(page) <= limit
            collected = [m.text for m in page] + collected
            sync_page = sync_thread.history(before=page[0].id, limit=limit)
            page = await thread.history(before=page[0].id, limit=limit)
            assert [m.id for m in sync_page] == [m.id for m in page], limit
        assert collected == names(23), limit
    with pytest.raises(MessageNotFoundError):
        await thread.history(before="no-such-message")


async def test_reads_see_each_message_once_after_every_single_post(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await AsyncRoleThread.create(store=small)
    for i in range(13):
        await thread.post("user", f"m{i}")
        assert_layout(sync_small, thread.id, names(i + 1))
        assert await texts(await AsyncRoleThread.get(thread.id, store=small)) == names(i + 1)
        assert [m.text for m in await thread.history(limit=100)] == names(i + 1)


# -- changes to paged messages ----------------------------------------------------------------


async def test_update_and_delete_of_paged_messages_raise_the_version_by_one_each(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 21)
    first, fifth = (await thread.messages())[0], (await thread.messages())[4]
    version = thread.version

    edited = await thread.update_message(first.id, text="edited", metadata={"k": 1})
    assert thread.version == version + 1
    await thread.delete_message(fifth.id)
    assert thread.version == version + 2

    expected = ["edited"] + [f"m{i}" for i in range(1, 21) if i != 4]
    assert edited.text == "edited"
    assert await texts(thread) == expected
    assert await texts(await AsyncRoleThread.get(thread.id, store=small)) == expected
    assert sync_texts(sync_small, thread.id) == expected
    doc = assert_layout(sync_small, thread.id, expected)
    assert doc["version"] == thread.version
    assert thread.message_count == 20
    (found,) = await AsyncRoleThread.find_messages(id=first.id, store=small)
    assert found.metadata == {"k": 1}
    assert RoleMessage.find(id=first.id, store=sync_small)[0].metadata == {"k": 1}
    assert await AsyncRoleThread.find_messages(id=fifth.id, store=small) == []
    with pytest.raises(MessageNotFoundError):
        await thread.delete_message(fifth.id)


async def test_a_partial_object_edits_and_deletes_messages_in_pages_before_its_window(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 21)
    ids = [m.id for m in await thread.messages()]
    partial = await AsyncRoleThread.get(thread.id, last=2, store=small)

    await partial.update_message(ids[2], text="from the partial object")
    await partial.delete_message(ids[0])

    expected = ["m1", "from the partial object", *names(21)[3:]]
    assert sync_texts(sync_small, thread.id) == expected
    assert_layout(sync_small, thread.id, expected)
    assert await texts(partial) == ["m19", "m20"]
    assert partial.version == stored(sync_small.collection, thread.id)["version"]


@pytest.mark.parametrize("change", ["update", "delete"])
async def test_a_stale_object_editing_a_message_it_thinks_inline_conflicts_and_apply_lands(
    small: AsyncThreadStore, sync_small: ThreadStore, change: str
) -> None:
    thread = await long_thread(small, LIMIT)
    stale = await AsyncRoleThread.get(thread.id, store=small)
    target = (await stale.messages())[0]  # inline when the stale object read it
    for i in range(6):
        await thread.post("user", f"more {i}")  # moves it to a page
    assert target.id in {
        m["id"] for page in pages_of(sync_small, thread.id) for m in page["messages"]
    }
    before = stored(sync_small.collection, thread.id)

    async def edit(current: AsyncRoleThread, text: str = "applied") -> None:
        if change == "update":
            await current.update_message(target.id, text=text)
        else:
            await current.delete_message(target.id)

    with pytest.raises(VersionConflictError):
        await edit(stale, "stale")
    assert stored(sync_small.collection, thread.id) == before

    await stale.apply(edit)

    rest = [*names(LIMIT)[1:], *[f"more {i}" for i in range(6)]]
    expected = ["applied", *rest] if change == "update" else rest
    assert sync_texts(sync_small, thread.id) == expected
    assert await texts(stale) == expected
    doc = assert_layout(sync_small, thread.id, expected)
    assert doc["version"] == before["version"] + 1 == stale.version


async def test_remove_images_strips_paged_and_inline_images_and_releases_their_blobs(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await AsyncRoleThread.create(store=small)
    for i in range(9):
        await thread.post("user", f"look {i}", images=[big_image(i)])
        await thread.post("assistant", f"seen {i}")
    database = sync_small.collection.database
    files, chunks = database["threadmem_images.files"], database["threadmem_images.chunks"]
    assert files.count_documents({}) == 9
    paged_blobs = [
        blob
        for page in pages_of(sync_small, thread.id)
        for m in page["messages"]
        for blob in m.get("blobs", [])
    ]
    assert len(paged_blobs) >= 2  # images in more than one page
    version = thread.version

    await thread.remove_images()

    assert thread.version == version + 1
    expected = [text for i in range(9) for text in (f"look {i}", f"seen {i}")]
    for messages in (
        await thread.messages(),
        await (await AsyncRoleThread.get(thread.id, store=small)).messages(),
        RoleThread.get(thread.id, store=sync_small).messages(),
    ):
        assert [m.text for m in messages] == expected
        assert all(not m.images for m in messages)
    doc = assert_layout(sync_small, thread.id, expected)
    assert doc["version"] == thread.version
    assert not any(
        m.get("images") or m.get("blobs")
        for page in pages_of(sync_small, thread.id)
        for m in page["messages"]
    )
    assert files.count_documents({}) == 0
    assert chunks.count_documents({}) == 0


async def test_stored_size_matches_the_objects_after_edits_of_paged_messages(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await AsyncRoleThread.create(store=small)
    for i in range(9):
        await thread.post("user", f"look {i}", images=[big_image(i)])
        await thread.post("assistant", f"seen {i}")
    first = (await thread.messages())[1]
    await thread.update_message(first.id, text="edited")
    await thread.remove_images()

    doc = stored(sync_small.collection, thread.id)
    assert not doc.get("pending")
    assert doc["size_bytes"] == thread._state.size_bytes
    reloaded = await AsyncRoleThread.get(thread.id, store=small)
    assert reloaded._state.size_bytes == thread._state.size_bytes


async def test_find_messages_reaches_inline_and_paged_messages_in_thread_order(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    first = await long_thread(small, 11)
    second = await long_thread(small, 11)

    found = await AsyncRoleThread.find_messages(role="user", store=small)

    expected = [(thread.id, f"m{i}") for thread in (first, second) for i in range(0, 11, 2)]
    assert [(m.thread_id, m.text) for m in found] == expected
    assert [(m.thread_id, m.text) for m in RoleMessage.find(role="user", store=sync_small)] == (
        expected
    )
    (one,) = await AsyncRoleThread.find_messages(text="m0", thread_id=second.id, store=small)
    assert one == (await second.messages())[0]
    (newest,) = await AsyncRoleThread.find_messages(text="m10", thread_id=first.id, store=small)
    assert newest == (await first.messages())[-1]


# -- whole threads ----------------------------------------------------------------------------


async def test_copy_of_a_long_thread_has_every_message_with_new_ids_and_its_own_pages(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 25)
    partial = await AsyncRoleThread.get(thread.id, last=3, store=small)

    made = await partial.copy()

    assert made.version == 0
    assert await texts(made) == names(25)
    assert await texts(await AsyncRoleThread.get(made.id, store=small)) == names(25)
    assert sync_texts(sync_small, made.id) == names(25)
    assert not {m.id for m in await made.messages()} & {m.id for m in await thread.messages()}
    doc = assert_layout(sync_small, made.id, names(25))
    assert doc["page_count"] >= 1
    assert doc["version"] == 0
    assert_layout(sync_small, thread.id, names(25))  # the source is unchanged
    await made.post("user", "one more")
    assert sync_texts(sync_small, made.id) == [*names(25), "one more"]


async def test_delete_leaves_no_thread_page_or_image(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await AsyncRoleThread.create(store=small)
    for i in range(12):
        await thread.post("user", f"look {i}", images=[big_image(i)] if i % 3 == 0 else None)
    database = sync_small.collection.database
    assert sync_small.pages.collection.count_documents({"thread_id": thread.id}) > 0
    assert database["threadmem_images.files"].count_documents({}) == 4

    await thread.delete()

    assert sync_small.collection.count_documents({}) == 0
    assert sync_small.pages.collection.count_documents({}) == 0
    assert database["threadmem_images.files"].count_documents({}) == 0
    assert database["threadmem_images.chunks"].count_documents({}) == 0
    with pytest.raises(ThreadNotFoundError):
        await AsyncRoleThread.get(thread.id, store=small)
    with pytest.raises(ThreadNotFoundError):
        await thread.delete()


async def test_touch_gives_pages_an_expiry_no_earlier_than_the_threads(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 12, ttl=datetime.timedelta(hours=1))
    version = thread.version

    await thread.touch(ttl=datetime.timedelta(days=3))

    assert thread.version == version + 1
    doc = stored(sync_small.collection, thread.id)
    assert doc["version"] == thread.version
    assert doc["expires_at"] > datetime.datetime.now() + datetime.timedelta(days=2)
    pages = pages_of(sync_small, thread.id)
    assert len(pages) == doc["page_count"] >= 1
    assert all(page["expires_at"] >= doc["expires_at"] for page in pages)
    await thread.post("user", "after the touch")  # a page made after it expires with it
    doc = stored(sync_small.collection, thread.id)
    assert all(page["expires_at"] >= doc["expires_at"] for page in pages_of(sync_small, thread.id))


async def test_from_v1_of_more_messages_than_fit_inline_starts_with_pages(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
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

    thread = await AsyncRoleThread.from_v1(schema, store=small)

    assert thread.version == 0
    assert thread.message_count == 25
    assert await texts(thread) == names(25)
    assert await texts(await AsyncRoleThread.get("imported", store=small)) == names(25)
    assert sync_texts(sync_small, "imported") == names(25)
    doc = assert_layout(sync_small, "imported", names(25))
    assert doc["page_count"] >= 1
    assert [m.id for m in await thread.messages()] == [f"v1-{i}" for i in range(25)]
    with pytest.raises(InvalidInputError):
        await AsyncRoleThread.from_v1(schema, store=small)  # the thread exists
    assert sync_texts(sync_small, "imported") == names(25)
    assert_layout(sync_small, "imported", names(25))
    await thread.post("user", "m25")
    assert_layout(sync_small, "imported", names(26))


async def test_threads_written_by_one_api_continue_through_the_other(
    small: AsyncThreadStore, sync_small: ThreadStore
) -> None:
    thread = await long_thread(small, 9)
    sync_thread = RoleThread.get(thread.id, store=sync_small)
    for i in range(9, 15):
        sync_thread.post("assistant", f"m{i}")
    await thread.refresh()
    for i in range(15, 20):
        await thread.post("user", f"m{i}")

    doc = assert_layout(sync_small, thread.id, names(20))
    assert doc["version"] == 20 + doc["page_count"] == thread.version
    assert await texts(thread) == names(20)


async def test_find_loads_paged_messages_as_get_does(small: AsyncThreadStore) -> None:
    thread = await long_thread(small, 12)
    other = await long_thread(small, 3)
    found = await AsyncRoleThread.find(owner_id="owner", store=small)
    assert [t.id for t in found] == [thread.id, other.id]
    assert await texts(found[0]) == names(12)
    assert found[0].message_count == 12
    assert await found[0].to_openai() == await thread.to_openai()
    for last, expected in ((8, names(12)[-8:]), (2, names(12)[-2:]), (0, [])):
        window = await AsyncRoleThread.find(id=thread.id, last=last, store=small)
        assert await texts(window[0]) == expected
    # The object found can be posted to and edited like one from get().
    await found[0].post("user", "m12")
    await found[0].update_message((await found[0].messages())[0].id, text="first")
    assert await texts(await AsyncRoleThread.get(thread.id, store=small)) == [
        "first",
        *names(13)[1:],
    ]


async def test_append_if_room_lands_only_while_no_move_is_due(
    small: AsyncThreadStore, async_raw: Raw
) -> None:
    thread = await long_thread(small, LIMIT - 1, metadata={"kind": "chat"})
    message = RoleMessage(role="user", text="fits")
    assert await small.append_if_room(thread.id, message, thread_metadata={"kind": "chat"})
    doc = async_raw.find_one({"_id": thread.id})
    assert doc is not None
    assert [m["text"] for m in doc["messages"]] == [*names(LIMIT - 1), "fits"]
    assert (doc["message_count"], doc["version"]) == (LIMIT, thread.version + 1)

    # At the limit a move is due: nothing is written, and the caller loads the thread.
    before = async_raw.find_one({"_id": thread.id})
    image = big_image(1)
    full = RoleMessage(role="user", text="no room", images=[image])
    assert not await small.append_if_room(thread.id, full)
    assert async_raw.find_one({"_id": thread.id}) == before
    # Its image went to GridFS before the update, and was deleted again on the miss.
    files = async_raw.database["threadmem_images.files"]
    assert files.count_documents({}) == 0

    other = await long_thread(small, 1, metadata={"kind": "other"})
    assert not await small.append_if_room(
        other.id, RoleMessage(role="user", text="x"), thread_metadata={"kind": "chat"}
    )
    assert not await small.append_if_room("no-such-thread", RoleMessage(role="user", text="x"))
    assert async_raw.find_one({"_id": "no-such-thread"}) is None
    assert [m["text"] for m in async_raw.find_one({"_id": other.id})["messages"]] == ["m0"]


async def test_extend_and_save_refuse_an_id_the_thread_holds_inline_unloaded(
    small: AsyncThreadStore, async_raw: Raw
) -> None:
    thread = await long_thread(small, 12)
    stored = await thread.messages()
    for last in (0, 2):
        partial = await AsyncRoleThread.get(thread.id, last=last, store=small)
        for message in stored[-3:]:  # inline, loaded (last=2) or not (last=0)
            again = RoleMessage(role="user", text="again", id=message.id)
            before = async_raw.find_one({"_id": thread.id})
            with pytest.raises(InvalidInputError, match=r"already|the thread holds"):
                await partial.extend([again])
            with pytest.raises(InvalidInputError, match=r"already|the thread holds"):
                await partial.save(append=again)
            assert async_raw.find_one({"_id": thread.id}) == before
    whole = await AsyncRoleThread.get(thread.id, store=small)
    assert [m.id for m in await whole.messages()] == [m.id for m in stored]
    assert whole.message_count == 12


async def test_a_retried_add_msg_whose_message_moved_to_a_page_stores_nothing(
    small: AsyncThreadStore, async_raw: Raw
) -> None:
    thread = await long_thread(small, 12)
    landed = (await thread.messages())[0]  # in a page by now
    assert async_raw.find_one({"_id": thread.id, "messages.id": landed.id}) is None
    before = async_raw.find_one({"_id": thread.id})
    await thread.add_msg(landed)  # the documented retry of a post that landed
    assert async_raw.find_one({"_id": thread.id}) == before
    whole = await AsyncRoleThread.get(thread.id, store=small)
    assert [m.text for m in await whole.messages()] == names(12)
    assert whole.message_count == 12


async def test_a_retried_add_msg_racing_a_move_of_its_message_stores_nothing(
    small: AsyncThreadStore, async_raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await long_thread(small, LIMIT)  # at the limit: the next post moves
    landed = (await thread.messages())[0]
    other = await AsyncRoleThread.get(thread.id, store=small)
    # Another writer's post moves the oldest messages, the retried one among them,
    # between the retry's look at the pages and its append.
    raced = interleave(
        monkeypatch, small, "_commutative_update", lambda: other.post("user", "mover")
    )
    await thread.add_msg(landed)
    assert raced
    doc = async_raw.find_one({"_id": thread.id})
    assert doc is not None
    assert doc["page_count"] == 1
    whole = await AsyncRoleThread.get(thread.id, store=small)
    assert [m.text for m in await whole.messages()] == [*names(LIMIT), "mover"]
    assert whole.message_count == LIMIT + 1


async def test_a_message_search_racing_a_move_returns_each_message_once(
    small: AsyncThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await long_thread(small, LIMIT)  # at the limit: the next post moves
    oldest = (await thread.messages())[0]
    other = await AsyncRoleThread.get(thread.id, store=small)
    # A post moves the oldest messages to a page after the search read them inline.
    moved = interleave(
        monkeypatch, small.pages, "find_messages", lambda: other.post("user", "mover")
    )
    found = await AsyncRoleThread.find_messages(thread_id=thread.id, store=small)
    assert moved
    assert [m.text for m in found] == names(LIMIT)
    by_id = await AsyncRoleThread.find_messages(id=oldest.id, store=small)
    assert [m.id for m in by_id] == [oldest.id]


async def test_a_read_racing_a_delete_raises_not_found_rather_than_a_thread_with_a_gap(
    small: AsyncThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await long_thread(small, 12)
    # The thread and its pages are deleted after the reader read the thread.
    deleted = interleave(monkeypatch, small.pages, "committed", lambda: small.delete(thread.id))
    with pytest.raises(ThreadNotFoundError):
        await AsyncRoleThread.get(thread.id, store=small)
    assert deleted


async def test_a_sweep_while_a_move_is_paused_between_page_and_commit_loses_nothing(
    small: AsyncThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await long_thread(small, LIMIT)  # at the limit: the next post moves
    # The mover pauses after writing its page, past any cutoff: the sweep finds the
    # page uncounted and older than the cutoff.
    swept = interleave(
        monkeypatch,
        small.pages,
        "write",
        lambda: small.sweep_blobs(older_than=datetime.timedelta(0)),
        after=True,
    )
    await thread.post("user", "mover")
    assert swept
    whole = await AsyncRoleThread.get(thread.id, store=small)
    assert [m.text for m in await whole.messages()] == [*names(LIMIT), "mover"]
    assert whole.message_count == LIMIT + 1
    # Every page the thread counts exists, and nothing is left uncounted.
    doc = await small.collection.find_one({"_id": thread.id})
    assert doc is not None
    pages = await small.pages.collection.find({"thread_id": thread.id}).to_list()
    assert sorted(page["n"] for page in pages) == list(range(int(doc.get("page_count", 0))))


async def test_a_large_post_that_fits_only_without_the_inline_ones_moves_them_first(
    async_store: AsyncThreadStore,
) -> None:
    nine_mib = "x" * (9 * 1024 * 1024)
    thread = await AsyncRoleThread.create(store=async_store)
    await thread.post("user", nine_mib)
    await thread.post("user", nine_mib + "y")  # past 16 MB beside the first
    whole = await AsyncRoleThread.get(thread.id, store=async_store)
    assert [len(m.text) for m in await whole.messages()] == [len(nine_mib), len(nine_mib) + 1]
    assert whole.message_count == 2
    assert [len(m.text) for m in await thread.messages()] == [len(nine_mib), len(nine_mib) + 1]
    with pytest.raises(ThreadTooLargeError):
        await thread.post("user", "z" * (17 * 1024 * 1024))  # alone past the limit
    assert (await AsyncRoleThread.get(thread.id, store=async_store)).message_count == 2
