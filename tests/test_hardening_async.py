"""The async API keeps the promises of ``test_hardening.py``, on every backend.

Ids are type-checked and compared as values, message ids are unique across threads, a
landed post never raises, unstorable input writes nothing, copies never refer to
images that are gone, and a delete that removed the thread succeeds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
from pymongo.collection import Collection
from test_hardening import BIG, LONE_SURROGATE, OPERATORS, big_image, v1_thread

from threadmem_mongo import (
    InvalidInputError,
    RoleMessage,
    StoreUnavailableError,
    ThreadNotFoundError,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

Document = dict[str, Any]
pytestmark = pytest.mark.asyncio


def snapshot(raw: Collection[Document]) -> dict[str, list[Document]]:
    database = raw.database
    return {
        name: list(database[name].find({}, sort=[("_id", 1)]))
        for name in (raw.name, "threadmem_images.files", "threadmem_images.chunks")
    }


async def texts(thread: AsyncRoleThread) -> list[str]:
    return [m.text for m in await thread.messages()]


@pytest_asyncio.fixture
async def thread(async_store: AsyncThreadStore) -> AsyncRoleThread:
    made = await AsyncRoleThread.create(owner_id="owner", store=async_store)
    for text in ("one", "two", "three", "four"):
        await made.post("user", text)
    return made


@pytest.mark.parametrize("bad", OPERATORS)
@pytest.mark.parametrize("last", [None, 2])
async def test_operator_message_ids_are_refused_and_write_nothing(
    async_store: AsyncThreadStore,
    async_raw: Collection[Document],
    thread: AsyncRoleThread,
    bad: Any,
    last: int | None,
) -> None:
    loaded = await AsyncRoleThread.get(thread.id, last=last, store=async_store)
    before = snapshot(async_raw)
    with pytest.raises(InvalidInputError):
        await loaded.delete_message(bad)
    with pytest.raises(InvalidInputError):
        await loaded.update_message(bad, text="rewritten")
    with pytest.raises(InvalidInputError):
        await loaded.history(before=bad if bad is not None else {"$gt": ""})
    with pytest.raises(InvalidInputError):
        await anext(aiter(loaded.watch(after_message=bad if bad is not None else {"$gt": ""})))
    assert snapshot(async_raw) == before


async def test_operator_thread_ids_are_refused(
    async_store: AsyncThreadStore, thread: AsyncRoleThread
) -> None:
    with pytest.raises(InvalidInputError):
        await AsyncRoleThread.get({"$ne": None}, store=async_store)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await async_store.delete({"$ne": None})  # type: ignore[arg-type]
    assert await texts(await AsyncRoleThread.get(thread.id, store=async_store)) == [
        "one",
        "two",
        "three",
        "four",
    ]


async def test_stored_dollar_ids_page_and_edit_as_plain_strings(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    await thread.post("user", "first")
    await thread.add_msg(RoleMessage(role="user", text="odd", id="$_id"))
    await thread.post("user", "last")
    loaded = await AsyncRoleThread.get(thread.id, last=1, store=async_store)
    assert [m.text for m in await loaded.history(before="$_id")] == ["first"]
    await loaded.delete_message("$_id")
    assert await texts(await AsyncRoleThread.get(thread.id, store=async_store)) == [
        "first",
        "last",
    ]


async def test_message_ids_are_unique_within_and_across_threads(
    async_store: AsyncThreadStore, async_raw: Collection[Document]
) -> None:
    held = await AsyncRoleThread.create(store=async_store)
    taken = await held.post("user", "mine")
    other = await AsyncRoleThread.create(store=async_store)
    before = snapshot(async_raw)
    with pytest.raises(InvalidInputError, match="another thread"):
        await other.add_msg(RoleMessage(role="user", text="copy", id=taken.id))
    with pytest.raises(InvalidInputError, match="another thread"):
        await AsyncRoleThread.from_v1(v1_thread("t2", ["fresh", taken.id]), store=async_store)
    with pytest.raises(InvalidInputError, match="more than once"):
        await AsyncRoleThread.from_v1(v1_thread("t3", ["a", "a"]), store=async_store)
    assert snapshot(async_raw) == before


async def test_post_whose_follow_up_read_fails_returns_and_stores_once(
    async_store: AsyncThreadStore, thread: AsyncRoleThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await AsyncRoleThread.get(thread.id, store=async_store)
    await other.post("assistant", "someone else")

    async def unavailable(*args: object, **kwargs: object) -> object:
        raise StoreUnavailableError("unreachable for this test")

    with monkeypatch.context() as patch:
        patch.setattr(async_store, "catch_up", unavailable)
        patch.setattr(async_store, "load", unavailable)
        posted = await thread.post("user", "mine")

    expected = ["one", "two", "three", "four", "someone else", "mine"]
    assert await texts(thread) == expected
    assert await texts(await AsyncRoleThread.get(thread.id, store=async_store)) == expected
    assert await AsyncRoleThread.find_messages(id=posted.id, store=async_store) == [posted]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role": LONE_SURROGATE, "msg": "x"},
        {"role": "user", "msg": LONE_SURROGATE},
        {"role": "user", "msg": "x", "metadata": {"k": LONE_SURROGATE}},
    ],
)
async def test_unencodable_strings_are_refused_and_write_nothing(
    async_raw: Collection[Document], thread: AsyncRoleThread, kwargs: dict[str, Any]
) -> None:
    before = snapshot(async_raw)
    with pytest.raises(InvalidInputError, match="surrogate"):
        await thread.post(**kwargs, images=[big_image()])
    assert snapshot(async_raw) == before


async def test_counts_past_64_bits_are_refused(
    async_store: AsyncThreadStore, thread: AsyncRoleThread
) -> None:
    with pytest.raises(InvalidInputError, match="whole number"):
        await AsyncRoleThread.get(thread.id, last=BIG, store=async_store)
    with pytest.raises(InvalidInputError, match="whole number"):
        await thread.history(limit=BIG)
    assert len(await thread.history(limit=2**62)) == 4


async def test_copy_of_a_stale_object_reads_the_stored_thread(
    async_store: AsyncThreadStore, async_raw: Collection[Document]
) -> None:
    source = await AsyncRoleThread.create(store=async_store)
    await source.post("user", "look", images=[big_image()])
    await source.post("assistant", "nice")
    stale = await AsyncRoleThread.get(source.id, store=async_store)
    await source.delete_message((await source.messages())[0].id)
    made = await stale.copy()
    assert await texts(await AsyncRoleThread.get(made.id, store=async_store)) == ["nice"]

    await source.delete()
    before = snapshot(async_raw)
    with pytest.raises(ThreadNotFoundError):
        await stale.copy()
    assert snapshot(async_raw) == before


@pytest.mark.slow
async def test_copies_racing_deletes_never_lose_images(async_store: AsyncThreadStore) -> None:
    for _ in range(20):
        source = await AsyncRoleThread.create(store=async_store)
        await source.post("user", "look", images=[big_image()])
        loaded = await AsyncRoleThread.get(source.id, store=async_store)
        copied, _ = await asyncio.gather(loaded.copy(), source.delete(), return_exceptions=True)
        if isinstance(copied, AsyncRoleThread):
            messages = await (await AsyncRoleThread.get(copied.id, store=async_store)).messages()
            assert messages[0].images == [big_image()]
        else:
            assert isinstance(copied, ThreadNotFoundError)


async def test_delete_succeeds_when_releasing_images_fails(
    async_store: AsyncThreadStore,
    async_raw: Collection[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    await thread.post("user", "look", images=[big_image()])

    async def unavailable(*args: object, **kwargs: object) -> list[str]:
        raise StoreUnavailableError("unreachable for this test")

    with monkeypatch.context() as patch:
        patch.setattr(async_store, "release_blobs", unavailable)
        await thread.delete()
    assert async_raw.count_documents({"_id": thread.id}) == 0
    # What is left is an unreferenced image, which the sweep's release step deletes.
    files = async_raw.database["threadmem_images.files"]
    left = [str(doc["_id"]) for doc in files.find({}, {"_id": 1})]
    assert len(left) == 1
    assert await async_store.release_blobs(left) == left
    assert files.count_documents({}) == 0
