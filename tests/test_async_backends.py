"""The async API on every backend: mongomock (through ``tests/asyncmock.py``), the
SecantusDB wire server, and ``THREADMEM_TEST_MONGODB_URI``'s server when set.

Each test takes ``async_store`` (a fresh database, the default of both
``threadmem_mongo.aio`` and the sync API) and checks what the async API wrote through the
sync API and the sync client's view of the stored documents, so both APIs are seen to
agree on each backend.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import io
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import bson
import mongomock
import pytest
import pytest_asyncio
from asyncmock import (
    AsyncMockClient,
    AsyncMockCollection,
    AsyncMockCommandCursor,
    AsyncMockCursor,
    AsyncMockDatabase,
)
from PIL import Image
from pymongo import ASCENDING, AsyncMongoClient, MongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.command_cursor import AsyncCommandCursor
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.collection import Collection

import threadmem_mongo.aio as aio
from threadmem_mongo import (
    ConfigurationError,
    MessageNotFoundError,
    RoleMessage,
    RoleThread,
    ThreadEvent,
    ThreadNotFoundError,
    VersionConflictError,
    _capabilities,
)
from threadmem_mongo._async_blobs import DEFAULT_BUCKET
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

Document = dict[str, Any]
Raw = Collection[Document]

URL = "https://example.com/cat.png"
IDLE = 10.0


def stored(raw: Raw, thread_id: str) -> Document:
    doc = raw.find_one({"_id": thread_id})
    assert doc is not None, f"thread {thread_id} is not stored"
    return doc


def encoded_snapshot(raw: Raw) -> list[bytes]:
    """Every stored document, encoded: equal snapshots mean byte-identical documents."""
    return [bson.encode(doc) for doc in raw.find({}, sort=[("_id", 1)])]


def big_png_data_uri() -> str:
    """A PNG data URI over the 32 KiB GridFS threshold (random pixels do not compress)."""
    image = Image.frombytes("RGB", (128, 128), random.Random(11).randbytes(128 * 128 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert len(uri) > 32 * 1024
    return uri


async def texts(thread: AsyncRoleThread) -> list[str]:
    return [m.text for m in await thread.messages()]


# -- the fixtures themselves -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_store_is_the_default_of_both_apis_on_one_database(
    async_store: AsyncThreadStore, async_raw: Raw, backend: str
) -> None:
    thread = await AsyncRoleThread.create(name="shared")
    assert thread.store is async_store
    assert stored(async_raw, thread.id)["name"] == "shared"
    assert RoleThread.get(thread.id).store.collection.full_name == async_store.collection.full_name
    assert _capabilities.is_mongomock(async_store.collection) == (backend == "mongomock")


@pytest_asyncio.fixture
async def scratch(async_client: Any) -> AsyncIterator[Any]:
    """A collection in a fresh database of ``async_client``, dropped afterwards."""
    name = f"tm_scratch_{uuid.uuid4().hex}"
    yield async_client[name]["items"]
    await async_client.drop_database(name)


@pytest.mark.asyncio
async def test_async_calls_the_library_and_adapters_use_answer_alike_on_every_backend(
    scratch: Any, db_client: Any
) -> None:
    await scratch.insert_many([{"_id": i, "even": i % 2 == 0, "n": i} for i in range(6)])
    cursor = scratch.find({"even": True}).sort("_id", -1).skip(1).limit(5)
    assert [doc["_id"] for doc in await cursor.to_list()] == [2, 0]
    ids = [doc["_id"] async for doc in scratch.find({}, {"_id": 1}).sort([("_id", 1)])]
    assert ids == [0, 1, 2, 3, 4, 5]
    assert [doc["_id"] for doc in await scratch.find({}).sort("_id", 1).to_list(2)] == [0, 1]
    pipeline = [{"$match": {"even": False}}, {"$count": "odd"}]
    assert await (await scratch.aggregate(pipeline)).to_list() == [{"odd": 3}]
    async with await scratch.aggregate([{"$match": {"_id": 5}}]) as one:
        assert [doc["_id"] async for doc in one] == [5]

    assert await scratch.count_documents({"even": True}) == 3
    assert sorted(await scratch.distinct("even")) == [False, True]
    after = await scratch.find_one_and_update(
        {"_id": 1}, {"$inc": {"n": 10}}, return_document=ReturnDocument.AFTER
    )
    assert after == {"_id": 1, "even": False, "n": 11}
    assert (await scratch.update_many({"even": True}, {"$set": {"seen": 1}})).modified_count == 3
    assert (await scratch.delete_one({"_id": 5})).deleted_count == 1
    assert (await scratch.delete_many({"n": {"$gte": 9}})).deleted_count == 1

    assert await scratch.create_index([("n", ASCENDING)], name="by_n") == "by_n"
    names = [index["name"] async for index in await scratch.list_indexes()]
    assert sorted(names) == ["_id_", "by_n"]
    assert "by_n" in await scratch.index_information()

    same = db_client[scratch.database.name][scratch.name]
    assert sorted(doc["_id"] for doc in same.find({})) == [0, 2, 3, 4]
    assert scratch.full_name == f"{scratch.database.name}.items"
    assert await scratch.find_one({"_id": 404}) is None


@pytest.mark.asyncio
async def test_adapter_fails_where_mongomock_has_no_support() -> None:
    collection = AsyncMockClient()["db"]["items"]
    with pytest.raises(TypeError):
        await collection.watch([])
    with pytest.raises(TypeError, match="no method 'not_a_method'"):
        await collection.not_a_method()
    assert isinstance(collection.__wrapped__, mongomock.Collection)
    assert isinstance(collection["sub"], AsyncMockCollection)
    assert _capabilities.is_mongomock(collection)
    assert not _capabilities.has_change_streams(collection)


ADAPTED = [
    (AsyncMockClient, AsyncMongoClient),
    (AsyncMockDatabase, AsyncDatabase),
    (AsyncMockCollection, AsyncCollection),
    (AsyncMockCursor, AsyncCursor),
    (AsyncMockCommandCursor, AsyncCommandCursor),
]
PROTOCOL_METHODS = {"__aiter__", "__anext__", "__aenter__", "__aexit__", "__getitem__"}


@pytest.mark.parametrize(("adapter", "real"), ADAPTED, ids=[a.__name__ for a, _ in ADAPTED])
def test_adapter_offers_only_pymongo_async_names_awaitable_exactly_where_pymongo_is(
    adapter: type, real: type
) -> None:
    offered = {
        name: member
        for name, member in vars(adapter).items()
        if not name.startswith("_") or name in PROTOCOL_METHODS
    }
    assert offered
    for name, member in offered.items():
        counterpart = getattr(real, name, None)
        assert counterpart is not None, f"pymongo's {real.__name__} has no {name}"
        assert isinstance(member, property) == isinstance(counterpart, property), name
        if not isinstance(member, property):
            assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(
                counterpart
            ), f"{adapter.__name__}.{name} must be awaitable exactly when pymongo's is"


class _SelfWrapping:
    """An adapter whose ``__wrapped__`` is itself: following it must stop."""

    @property
    def __wrapped__(self) -> _SelfWrapping:
        return self


@pytest.mark.asyncio
async def test_capabilities_tell_mongomock_from_servers_through_adapters() -> None:
    plain = mongomock.MongoClient()["db"]["c"]
    adapted = AsyncMockClient()["db"]["c"]
    sync_server = MongoClient("mongodb://localhost:1", connect=False)
    async_server: AsyncMongoClient[Document] = AsyncMongoClient(
        "mongodb://localhost:1", connect=False
    )
    try:
        for collection in (plain, adapted):
            assert _capabilities.is_mongomock(collection)
            assert not _capabilities.has_change_streams(collection)
            assert not _capabilities.has_index_of_array(collection)
        assert _capabilities.innermost(adapted) is adapted.__wrapped__
        for collection in (sync_server["db"]["c"], async_server["db"]["c"]):
            assert _capabilities.innermost(collection) is collection
            assert not _capabilities.is_mongomock(collection)
            assert _capabilities.has_change_streams(collection)
            assert _capabilities.has_index_of_array(collection)
        looped = _SelfWrapping()
        assert _capabilities.innermost(looped) is looped
        assert not _capabilities.is_mongomock(looped)
    finally:
        sync_server.close()
        await async_server.close()


# -- writing and reading ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_create_and_post_are_stored_and_read_back_through_both_apis(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    thread = await AsyncRoleThread.create(owner_id="alice", name="chat", metadata={"k": 1})
    first = await thread.post("user", "hello", images=[URL], metadata={"lang": "en"})
    second = await thread.post("assistant", "hi", private=True)
    assert thread.version == 2
    doc = stored(async_raw, thread.id)
    assert (doc["owner_id"], doc["name"], doc["metadata"], doc["version"]) == (
        "alice",
        "chat",
        {"k": 1},
        2,
    )
    assert [m["id"] for m in doc["messages"]] == [first.id, second.id]
    assert doc["message_count"] == 2

    again = await AsyncRoleThread.get(thread.id)
    assert await again.messages() == [first, second]
    assert [m.text for m in await again.messages(include_private=False)] == ["hello"]
    via_sync = RoleThread.get(thread.id)
    assert via_sync.messages() == [first, second]
    assert via_sync.version == 2


@pytest.mark.asyncio
async def test_get_with_last_and_history_page_back_through_every_message(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    thread = await AsyncRoleThread.create()
    for i in range(7):
        await thread.post("user", f"m{i}")
    page = await AsyncRoleThread.get(thread.id, last=2)
    assert (page.is_partial, page.message_count, page.version) == (True, 7, 7)
    assert await texts(page) == ["m5", "m6"]

    older = await page.history(before=(await page.messages())[0].id, limit=3)
    assert [m.text for m in older] == ["m2", "m3", "m4"]
    oldest = await page.history(before=older[0].id, limit=3)
    assert [m.text for m in oldest] == ["m0", "m1"]
    assert await page.history(before=oldest[0].id) == []
    assert [m.text for m in await page.history(limit=3)] == ["m4", "m5", "m6"]
    sync_older = RoleThread.get(thread.id, last=2).history(before=older[-1].id, limit=2)
    assert sync_older == older[:2]
    with pytest.raises(MessageNotFoundError):
        await page.history(before="missing")

    await page.post("user", "m7")
    assert (page.version, page.message_count) == (8, 8)
    assert stored(async_raw, thread.id)["message_count"] == 8


@pytest.mark.asyncio
async def test_update_and_delete_message_refuse_stale_versions_and_write_nothing(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    mine = await AsyncRoleThread.create()
    first = await mine.post("user", "original")
    second = await mine.post("user", "second")
    theirs = RoleThread.get(mine.id)
    theirs.update_message(first.id, text="theirs")
    before = encoded_snapshot(async_raw)

    with pytest.raises(VersionConflictError) as info:
        await mine.update_message(first.id, text="mine")
    assert (info.value.expected_version, info.value.actual_version) == (2, 3)
    with pytest.raises(VersionConflictError):
        await mine.delete_message(second.id)
    assert encoded_snapshot(async_raw) == before

    await mine.refresh()
    assert (await mine.messages())[0].text == "theirs"
    await mine.update_message(first.id, text="mine", metadata={"edited": True})
    await mine.delete_message(second.id)
    assert mine.version == 5
    doc = stored(async_raw, mine.id)
    assert [(m["text"], m["metadata"]) for m in doc["messages"]] == [("mine", {"edited": True})]
    assert RoleThread.get(mine.id).messages() == await mine.messages()
    with pytest.raises(MessageNotFoundError):
        await mine.delete_message(second.id)


@pytest.mark.asyncio
async def test_posts_from_concurrent_tasks_all_land_once(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    thread = await AsyncRoleThread.create()
    others = [await AsyncRoleThread.get(thread.id) for _ in range(4)]
    posted = await asyncio.gather(
        *(view.post("user", f"{n}-{i}") for n, view in enumerate(others) for i in range(5))
    )
    doc = stored(async_raw, thread.id)
    assert sorted(m["id"] for m in doc["messages"]) == sorted(m.id for m in posted)
    assert doc["version"] == doc["message_count"] == 20
    await thread.refresh()
    assert len(await thread.messages()) == 20


# -- images ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_large_image_round_trips_through_gridfs_and_remove_images_releases_it(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    uri = big_png_data_uri()
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "look <image>", images=[uri])
    await thread.post("assistant", "a cat", images=[URL])
    assert message.images == [uri]

    (ref,) = stored(async_raw, thread.id)["messages"][0]["images"]
    assert ref.startswith("gridfs:")
    files = async_raw.database[f"{DEFAULT_BUCKET}.files"]
    assert files.count_documents({}) == 1
    assert (await (await AsyncRoleThread.get(thread.id)).messages())[0].images == [uri]
    assert RoleThread.get(thread.id).messages()[0].images == [uri]
    prefix, data = await async_store.blobs.read(ref.split(":", 1)[1])
    assert prefix + base64.b64encode(data).decode() == uri

    await thread.remove_images()
    assert [(m.text, m.images) for m in await thread.messages()] == [
        ("look", []),
        ("a cat", [URL]),
    ]
    assert files.count_documents({}) == 0
    assert async_raw.database[f"{DEFAULT_BUCKET}.chunks"].count_documents({}) == 0
    assert [m.images for m in RoleThread.get(thread.id).messages()] == [[], [URL]]


# -- finding ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_find_and_find_messages_agree_with_the_sync_api(
    async_store: AsyncThreadStore,
) -> None:
    first = await AsyncRoleThread.create(owner_id="alice", metadata={"team": "red"})
    await AsyncRoleThread.create(owner_id="bob")
    third = await AsyncRoleThread.create(owner_id="alice", metadata={"team": "blue"})
    hello = await first.post("user", "hello")
    await first.post("assistant", "hi")
    again = await third.post("user", "hello")

    found = await AsyncRoleThread.find(owner_id="alice")
    assert [t.id for t in found] == [first.id, third.id]
    assert [t.id for t in RoleThread.find(owner_id="alice")] == [first.id, third.id]
    assert [t.id for t in await AsyncRoleThread.find(owner_id="alice", newest_first=True)] == [
        third.id,
        first.id,
    ]
    assert [t.id for t in await AsyncRoleThread.find(metadata={"team": "blue"})] == [third.id]
    (tail,) = await AsyncRoleThread.find(owner_id="alice", last=1, limit=1)
    assert await texts(tail) == ["hi"]

    matches = await AsyncRoleThread.find_messages(text="hello")
    assert matches == [hello, again]
    assert RoleMessage.find(text="hello") == matches
    assert await AsyncRoleThread.find_messages(id=again.id) == [again]
    assert await AsyncRoleThread.find_messages(text="nobody said this") == []


# -- copy, delete, touch -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_copy_delete_and_touch(async_store: AsyncThreadStore, async_raw: Raw) -> None:
    import datetime

    thread = await AsyncRoleThread.create(owner_id="o", ttl=datetime.timedelta(minutes=5))
    original = await thread.post("user", "a")
    clone = await thread.copy()
    (copied,) = await clone.messages()
    assert (clone.id != thread.id, copied.id != original.id, copied.text) == (True, True, "a")
    assert async_raw.count_documents({}) == 2
    assert RoleThread.get(clone.id).messages() == [copied]

    expires = thread.expires_at
    assert expires is not None
    await thread.touch(datetime.timedelta(hours=1))
    doc = stored(async_raw, thread.id)
    assert doc["ttl"] == 3600.0
    assert doc["expires_at"].replace(tzinfo=datetime.timezone.utc) == thread.expires_at
    assert thread.expires_at is not None
    assert thread.expires_at > expires
    assert RoleThread.get(thread.id).ttl == datetime.timedelta(hours=1)

    await thread.delete()
    assert async_raw.find_one({"_id": thread.id}) is None
    with pytest.raises(ThreadNotFoundError):
        await AsyncRoleThread.get(thread.id)
    with pytest.raises(ThreadNotFoundError):
        RoleThread.get(thread.id)
    assert await async_store.delete(clone.id) is True
    assert await async_store.delete(clone.id) is False
    assert async_raw.count_documents({}) == 0


# -- watch --------------------------------------------------------------------------------------


@pytest.mark.backends("mongomock", reason="the servers offer change streams")
@pytest.mark.asyncio
async def test_watch_is_refused_cleanly_without_change_streams(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(owner_id="o")
    with pytest.raises(ConfigurationError, match="replica set"):
        async for _event in thread.watch(idle_timeout=IDLE):
            pass
    with pytest.raises(ConfigurationError, match="replica set"):
        async for _event in AsyncRoleThread.watch_all(owner_id="o", idle_timeout=IDLE):
            pass


@pytest.mark.backends("wire", "mongodb", reason="mongomock has no change streams")
@pytest.mark.asyncio
async def test_watch_reports_posts_made_through_the_sync_api(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create()
    seed = await thread.post("system", "start")
    backlog = await thread.post("user", "before watching")
    count = 3
    opened = asyncio.Event()

    async def watch() -> list[ThreadEvent]:
        seen: list[ThreadEvent] = []
        async with contextlib.aclosing(
            thread.watch(after_message=seed.id, idle_timeout=IDLE)
        ) as events:
            async for event in events:
                seen.append(event)
                opened.set()
                if len(seen) == count:
                    break
        return seen

    async def write() -> list[str]:
        await asyncio.wait_for(opened.wait(), IDLE)
        sync_view = RoleThread.get(thread.id)
        return [(await asyncio.to_thread(sync_view.post, "user", f"live{i}")).id for i in range(2)]

    events, live_ids = await asyncio.wait_for(asyncio.gather(watch(), write()), 2 * IDLE)
    assert [e.kind for e in events] == ["message_added"] * count
    assert [e.message_id for e in events] == [backlog.id, *live_ids]
    assert [e.message.text for e in events if e.message is not None] == [
        "before watching",
        "live0",
        "live1",
    ]


@pytest.mark.asyncio
async def test_aio_default_store_is_usable_after_close(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(name="kept")
    await aio.close()
    assert (await AsyncRoleThread.get(thread.id)).name == "kept"
