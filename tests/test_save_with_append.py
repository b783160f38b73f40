"""``save(append=message)``: thread fields and one new message in one conditional update,
in the sync and the async API, on every backend."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pymongo.collection import Collection

from threadmem_mongo import (
    InvalidInputError,
    RoleMessage,
    RoleThread,
    ThreadStore,
    VersionConflictError,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

Document = dict[str, Any]

LARGE_IMAGE = (
    "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(60_000)).decode()
)


def snapshot(raw: Collection[Document]) -> list[Document]:
    database = raw.database
    return [
        *raw.find({}, sort=[("_id", 1)]),
        *database["threadmem_images.files"].find({}, {"_id": 1}, sort=[("_id", 1)]),
    ]


# -- sync ------------------------------------------------------------------------------------


def test_fields_and_message_land_together_as_one_change(store: ThreadStore) -> None:
    thread = RoleThread(name="n", store=store)
    thread.metadata = {"state": "1"}
    message = RoleMessage(role="user", text="hi")
    thread.save(append=message)
    assert thread.version == 1
    assert thread.message_count == 1
    again = RoleThread.get(thread.id, store=store)
    assert again.version == 1
    assert again.metadata == {"state": "1"}
    assert [(m.id, m.text, m.thread_id) for m in again.messages()] == [
        (message.id, "hi", thread.id)
    ]


def test_stale_save_with_append_raises_conflict_and_writes_nothing(
    store: ThreadStore, raw: Collection[Document]
) -> None:
    thread = RoleThread(store=store)
    stale = RoleThread.get(thread.id, store=store)
    thread.post("user", "first")
    before = snapshot(raw)
    stale.metadata = {"k": "v"}
    with pytest.raises(VersionConflictError):
        stale.save(append=RoleMessage(role="user", text="late", images=[LARGE_IMAGE]))
    assert snapshot(raw) == before


def test_message_already_in_the_thread_is_refused(
    store: ThreadStore, raw: Collection[Document]
) -> None:
    thread = RoleThread(store=store)
    message = thread.post("user", "once")
    before = snapshot(raw)
    thread.metadata = {"k": "v"}
    with pytest.raises(InvalidInputError, match="already"):
        thread.save(append=message)
    assert snapshot(raw) == before


def test_message_id_of_another_thread_is_refused(
    store: ThreadStore, raw: Collection[Document]
) -> None:
    other = RoleThread(store=store)
    taken = other.post("user", "mine")
    thread = RoleThread(store=store)
    before = snapshot(raw)
    with pytest.raises(InvalidInputError):
        thread.save(append=RoleMessage(role="user", text="copy", id=taken.id))
    assert snapshot(raw) == before


def test_writer_catching_up_after_a_combined_change_rereads_the_fields(
    store: ThreadStore,
) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "a")
    other = RoleThread.get(thread.id, store=store)
    thread.metadata = {"k": "new"}
    thread.save(append=RoleMessage(role="user", text="b"))
    other.post("user", "c")
    assert other.metadata == {"k": "new"}
    assert [m.text for m in other.messages()] == ["a", "b", "c"]
    assert other.version == thread.version + 1


def test_large_image_goes_to_gridfs_and_reads_back(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.save(append=RoleMessage(role="user", text="pic", images=[LARGE_IMAGE]))
    (stored,) = RoleThread.get(thread.id, store=store).messages(resolve_images=False)
    assert stored.images[0].startswith("gridfs:")
    assert RoleThread.get(thread.id, store=store).messages()[0].images == [LARGE_IMAGE]


@pytest.mark.parametrize("bad", ["text", {"role": "user"}, 3])
def test_append_must_be_a_role_message(
    store: ThreadStore, raw: Collection[Document], bad: object
) -> None:
    thread = RoleThread(store=store)
    before = snapshot(raw)
    with pytest.raises(InvalidInputError):
        thread.save(append=bad)  # type: ignore[arg-type]
    assert snapshot(raw) == before


def test_message_of_another_thread_is_refused(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    foreign = RoleMessage(role="user", text="x", thread_id="elsewhere")
    with pytest.raises(InvalidInputError, match="belongs to thread"):
        thread.save(append=foreign)
    assert RoleThread.get(thread.id, store=store).message_count == 0


# -- async -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_fields_and_message_land_together(async_store: AsyncThreadStore) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    thread.metadata = {"state": "2"}
    await thread.save(append=RoleMessage(role="user", text="hi", images=[LARGE_IMAGE]))
    assert thread.version == 1
    again = await AsyncRoleThread.get(thread.id, store=async_store)
    assert again.metadata == {"state": "2"}
    assert [(m.text, m.images) for m in await again.messages()] == [("hi", [LARGE_IMAGE])]


@pytest.mark.asyncio
async def test_async_stale_save_with_append_writes_nothing(
    async_store: AsyncThreadStore, async_raw: Collection[Document]
) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    stale = await AsyncRoleThread.get(thread.id, last=0, store=async_store)
    await thread.post("user", "first")
    before = snapshot(async_raw)
    stale.metadata = {"k": "v"}
    with pytest.raises(VersionConflictError):
        await stale.save(append=RoleMessage(role="user", text="late", images=[LARGE_IMAGE]))
    assert snapshot(async_raw) == before


@pytest.mark.asyncio
async def test_async_message_already_in_the_thread_is_refused(
    async_store: AsyncThreadStore, async_raw: Collection[Document]
) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    message = await thread.post("user", "once")
    before = snapshot(async_raw)
    with pytest.raises(InvalidInputError, match="already"):
        await thread.save(append=message)
    assert snapshot(async_raw) == before
