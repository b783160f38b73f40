"""The async API beside the behaviour suite: its own configuration, and one store shared
with the sync API, on every backend (mongomock through ``tests/asyncmock.py``, the
SecantusDB wire server, ``THREADMEM_TEST_MONGODB_URI``'s server when set).

The behaviour of ``AsyncRoleThread`` itself is in ``test_behaviour_async.py``, the source
of the generated sync suite. Here: ``threadmem_mongo.aio.configure`` and ``close``, which
the sync API has not, and that both APIs write and read the very same documents, share
versions and conflicts, and find the same messages.
"""

from __future__ import annotations

import base64
import io
import random
from typing import Any

import bson
import pytest
from PIL import Image
from pymongo.collection import Collection

import threadmem_mongo.aio as aio
from threadmem_mongo import (
    ConfigurationError,
    RoleMessage,
    RoleThread,
    ThreadStore,
    V1Role,
    VersionConflictError,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

pytestmark = pytest.mark.asyncio

Document = dict[str, Any]
Raw = Collection[Document]

URL = "https://example.com/cat.png"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="


def role(name: str = "assistant", user_id: str = "bot-1") -> V1Role:
    return V1Role(name=name, user_id=user_id, user_name="Bot", icon="https://x/icon.png")


def stored(raw: Raw, thread: AsyncRoleThread | RoleThread) -> Document:
    doc = raw.find_one({"_id": thread.id})
    assert doc is not None, f"thread {thread.id} is not stored"
    return doc


def encoded_snapshot(raw: Raw) -> list[bytes]:
    """Every stored document, encoded: equal snapshots mean byte-identical documents."""
    return [bson.encode(doc) for doc in raw.find({}, sort=[("_id", 1)])]


def big_png_data_uri() -> str:
    """A PNG data URI over the 32 KiB GridFS threshold (random pixels do not compress)."""
    image = Image.frombytes("RGB", (128, 128), random.Random(7).randbytes(128 * 128 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert len(uri) > 32 * 1024
    return uri


@pytest.fixture
def raw(async_raw: Raw) -> Raw:
    """The threads collection of the test's database, through the sync client."""
    return async_raw


@pytest.fixture
def sync_store(raw: Raw) -> ThreadStore:
    """A sync store on the same collection the async API writes to."""
    return ThreadStore(raw)


@pytest.fixture
def astore(async_store: AsyncThreadStore) -> AsyncThreadStore:
    """The async default store, on the test's database."""
    return async_store


@pytest.fixture(autouse=True)
def _configured(astore: AsyncThreadStore) -> None:
    """Every test here runs with the async API configured on a fresh database."""


# -- configuration ------------------------------------------------------------------------------


async def test_configure_refuses_mongomock_for_the_async_api() -> None:
    with pytest.raises(ConfigurationError, match="mongomock"):
        aio.configure(uri="mongomock://")
    with pytest.raises(ConfigurationError):
        aio.configure(uri="mongodb://localhost", client=object())  # type: ignore[arg-type]


@pytest.mark.backends(
    "wire", "mongodb", reason="the library builds its own client only from a server's URI"
)
async def test_close_lets_the_next_call_build_a_new_client(
    astore: AsyncThreadStore, backend: str, request: pytest.FixtureRequest
) -> None:
    uri = request.getfixturevalue("wire_uri" if backend == "wire" else "external_uri")
    aio.configure(uri=uri, database=astore.collection.database.name)
    try:
        thread = await AsyncRoleThread.create(name="before close")
        first_client = thread.store.collection.database.client
        await aio.close()
        again = await AsyncRoleThread.get(thread.id)
        assert again.name == "before close"
        assert again.store.collection.database.client is not first_client
    finally:
        await aio.close()


# -- one thread, two APIs -----------------------------------------------------------------------


def normalized(doc: Document, thread_id: str, message_ids: list[str]) -> Document:
    """``doc`` with its ids and clock readings replaced by placeholders."""
    names = {thread_id: "<thread>"} | {m: f"<message {i}>" for i, m in enumerate(message_ids)}

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return names.get(value, value)
        if key in ("created", "updated") and isinstance(value, float):
            return "<time>"
        return value

    result: Document = walk(doc)
    return result


async def test_thread_written_with_async_reads_back_identically_through_sync(
    raw: Raw, sync_store: ThreadStore
) -> None:
    thread = await AsyncRoleThread.create(
        owner_id="o", public=True, name="n", metadata={"k": [1]}, role_mapping={"bot": role("bot")}
    )
    first = await thread.post("user", "hello <image>", images=[URL], metadata={"m": 1})
    await thread.post("bot", "secret", private=True)
    await thread.post("user", "big", images=[big_png_data_uri()])
    await thread.update_message(first.id, text="edited <image>")
    thread.name = "renamed"
    await thread.save()
    before = encoded_snapshot(raw)

    mirror = RoleThread.get(thread.id, store=sync_store)
    assert mirror.to_v1() == await thread.to_v1()
    assert mirror.messages() == await thread.messages()
    assert mirror.messages(resolve_images=False) == await thread.messages(resolve_images=False)
    assert mirror.to_openai() == await thread.to_openai()
    assert (mirror.version, mirror.created, mirror.updated, mirror.message_count) == (
        thread.version,
        thread.created,
        thread.updated,
        thread.message_count,
    )
    assert encoded_snapshot(raw) == before  # reading wrote nothing


async def test_thread_written_with_sync_reads_back_identically_through_async(
    raw: Raw, sync_store: ThreadStore
) -> None:
    thread = RoleThread(
        owner_id="o",
        name="n",
        metadata={"k": 1},
        role_mapping={"bot": role("bot")},
        store=sync_store,
    )
    first = thread.post("user", "hello", images=[URL, DATA_URI])
    thread.post("bot", "big", images=[big_png_data_uri()])
    thread.delete_message(first.id)
    thread.post("user", "again")
    thread.add_role(role("critic"))
    before = encoded_snapshot(raw)

    mirror = await AsyncRoleThread.get(thread.id)
    assert await mirror.to_v1() == thread.to_v1()
    assert await mirror.messages() == thread.messages()
    assert await mirror.to_openai() == thread.to_openai()
    assert mirror.role_mapping == thread.role_mapping
    assert encoded_snapshot(raw) == before


async def test_same_operations_through_both_apis_store_the_same_document(
    raw: Raw, sync_store: ThreadStore
) -> None:
    fields: dict[str, Any] = {
        "owner_id": "o",
        "public": True,
        "name": "n",
        "metadata": {"k": [1, {"x": None}]},
        "role_mapping": {"bot": role("bot")},
    }
    made = RoleThread(**fields, store=sync_store)
    sync_ids = [
        made.post("user", "one <image>", images=[URL], metadata={"a": 1}).id,
        made.post("bot", "two", private=True).id,
        made.post("user", "three").id,
    ]
    made.update_message(sync_ids[0], text="one again <image>", private=True)
    made.delete_message(sync_ids[2])
    made.add_role(role("critic"))
    made.metadata = {"k": 2}
    made.save()

    twin = await AsyncRoleThread.create(**fields)
    async_ids = [
        (await twin.post("user", "one <image>", images=[URL], metadata={"a": 1})).id,
        (await twin.post("bot", "two", private=True)).id,
        (await twin.post("user", "three")).id,
    ]
    await twin.update_message(async_ids[0], text="one again <image>", private=True)
    await twin.delete_message(async_ids[2])
    await twin.add_role(role("critic"))
    twin.metadata = {"k": 2}
    await twin.save()

    sync_doc = normalized(stored(raw, made), made.id, sync_ids)
    async_doc = normalized(stored(raw, twin), twin.id, async_ids)
    assert async_doc == sync_doc
    assert list(async_doc) == list(sync_doc)
    assert async_doc["version"] == twin.version == made.version == 7


async def test_sync_and_async_objects_on_one_thread_share_versions_and_conflicts(
    raw: Raw, sync_store: ThreadStore
) -> None:
    athread = await AsyncRoleThread.create(name="start")
    sthread = RoleThread.get(athread.id, store=sync_store)
    await athread.post("user", "from async")
    sthread.post("user", "from sync")
    assert sthread.version == 2
    assert [m.text for m in sthread.messages()] == ["from async", "from sync"]

    athread.name = "async name"
    with pytest.raises(VersionConflictError) as info:
        await athread.save()
    assert (info.value.expected_version, info.value.actual_version) == (1, 2)
    await athread.refresh()
    await athread.save()  # refresh dropped the unsaved name: nothing to write
    athread.name = "async name"
    await athread.save()
    assert athread.version == 3

    sthread.name = "sync name"
    with pytest.raises(VersionConflictError) as sync_info:
        sthread.save()
    assert (sync_info.value.expected_version, sync_info.value.actual_version) == (2, 3)
    sthread.refresh()
    assert sthread.to_v1() == await athread.to_v1()
    assert stored(raw, athread)["name"] == "async name"


async def test_find_messages_and_role_message_find_answer_alike(
    sync_store: ThreadStore,
) -> None:
    one = await AsyncRoleThread.create()
    two = RoleThread(store=sync_store)
    await one.post("user", "hello")
    two.post("user", "hello", images=[URL])
    await one.post("assistant", "hi", private=True)
    two.post("user", "bye", metadata={"m": 1})

    for filters in ({"role": "user"}, {"text": "hello"}, {"thread_id": two.id}, {}):
        found = await AsyncRoleThread.find_messages(**filters)
        assert found == RoleMessage.find(store=sync_store, **filters), filters
        assert found, filters
