"""``extend`` (a batch of messages and the metadata, in one conditional update) and the
conditional ``ThreadStore.delete(thread_id, version=...)``, in both APIs on every backend.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

import pytest

from threadmem_mongo import (
    InvalidInputError,
    RoleMessage,
    RoleThread,
    ThreadNotFoundError,
    ThreadStore,
    ThreadTooLargeError,
    VersionConflictError,
    _updates,
)
from threadmem_mongo._events import ThreadEvent, events_from_change
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
BIG_IMAGE = "data:image/png;base64," + base64.b64encode(PNG + b"\x00" * 60_000).decode()


def batch(*texts: str) -> list[RoleMessage]:
    return [RoleMessage(role="user", text=text) for text in texts]


# -- pure ----------------------------------------------------------------------------------


def test_append_messages_update_is_pinned_to_the_version_and_names_the_batch() -> None:
    docs = [{"id": "m1", "text": "a"}, {"id": "m2", "text": "b"}]
    query, update = _updates.append_messages("t", 4, docs, 120, 9.0, {"metadata": {"k": 1}})
    # Pinned, and missing when an id is inline already.
    assert query == {"_id": "t", "version": 4, "messages.id": {"$nin": ["m1", "m2"]}}
    assert update["$push"] == {"messages": {"$each": docs}}
    assert update["$inc"] == {"version": 1, "size_bytes": 120, "message_count": 2}
    assert update["$set"]["metadata"] == {"k": 1}
    assert update["$set"]["last_change"] == {
        "op": "messages_added",
        "ids": ["m1", "m2"],
        "version": 5,
    }
    only_query, only_fields = _updates.append_messages("t", 4, [], 10, 9.0, {"metadata": None})
    assert only_query == {"_id": "t", "version": 4}
    assert "$push" not in only_fields
    assert "last_change" not in only_fields["$set"]


def test_a_batch_logged_as_the_whole_array_is_reported_message_by_message() -> None:
    whole = [
        {"id": f"m{i}", "role": "user", "text": f"t{i}", "images": [], "created": 1.0}
        for i in range(3)
    ]
    change = {
        "operationType": "update",
        "documentKey": {"_id": "t"},
        "updateDescription": {
            "updatedFields": {
                "messages": whole,
                "version": 2,
                "last_change": {"op": "messages_added", "ids": ["m1", "m2"], "version": 2},
            }
        },
    }
    events = events_from_change(change)
    assert [(e.kind, e.message_id) for e in events] == [
        ("message_added", "m1"),
        ("message_added", "m2"),
    ]


# -- sync ----------------------------------------------------------------------------------


def test_extend_appends_the_batch_and_metadata_in_one_version(store: ThreadStore) -> None:
    thread = RoleThread(metadata={"a": 1}, store=store)
    thread.post("user", "first")
    thread.extend(batch("x", "y"), metadata={"b": 2})
    assert thread.version == 2
    again = RoleThread.get(thread.id, store=store)
    assert [m.text for m in again.messages()] == ["first", "x", "y"]
    assert again.metadata == {"b": 2}
    assert (again.version, again.message_count) == (2, 3)
    assert {m.thread_id for m in again.messages()} == {thread.id}


def test_stale_extend_raises_version_conflict_and_writes_nothing(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    stale = RoleThread.get(thread.id, store=store)
    thread.post("user", "moved on")
    with pytest.raises(VersionConflictError):
        stale.extend(batch("late"), metadata={"late": True})
    again = RoleThread.get(thread.id, store=store)
    assert [m.text for m in again.messages()] == ["moved on"]
    assert again.metadata is None


def test_extend_with_only_metadata_or_only_messages(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.extend([], metadata={"only": "metadata"})
    thread.extend(batch("only messages"))
    again = RoleThread.get(thread.id, store=store)
    assert again.metadata == {"only": "metadata"}
    assert [m.text for m in again.messages()] == ["only messages"]


def test_extend_stores_large_images_in_gridfs(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.extend([RoleMessage(role="user", text="pic", images=[BIG_IMAGE])])
    again = RoleThread.get(thread.id, store=store)
    assert again.messages(resolve_images=False)[0].images[0].startswith("gridfs:")
    assert again.messages()[0].images == [BIG_IMAGE]


def test_extend_past_the_document_budget_raises_and_writes_nothing(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    half = "x" * (DOCUMENT_BUDGET_BYTES // 2)
    with pytest.raises(ThreadTooLargeError):
        thread.extend(batch(half, half, half))
    assert RoleThread.get(thread.id, store=store).message_count == 0


@pytest.mark.parametrize(
    ("messages", "metadata"),
    [
        ("not a list", None),
        ([{"role": "user", "text": "dict"}], None),
        ([RoleMessage(role="user", text="elsewhere", thread_id="other-thread")], None),
        (
            [
                RoleMessage(role="user", text="twin", id="same"),
                RoleMessage(role="user", text="twin", id="same"),
            ],
            None,
        ),
        ([], None),
        (batch("ok"), {"$bad": 1}),
        (batch("ok"), "not a dict"),
    ],
)
def test_bad_extend_raises_and_writes_nothing(
    store: ThreadStore, messages: Any, metadata: Any
) -> None:
    thread = RoleThread(store=store)
    kept = thread.post("user", "kept")
    with pytest.raises(InvalidInputError):
        thread.extend(messages, metadata=metadata)
    with pytest.raises(InvalidInputError):
        thread.extend([RoleMessage(role="user", text="dup", id=kept.id)])
    again = RoleThread.get(thread.id, store=store)
    assert [m.text for m in again.messages()] == ["kept"]
    assert again.version == 1


def test_store_delete_at_a_version_deletes_only_that_version(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "one")
    assert store.delete(thread.id, version=0) is False
    assert RoleThread.get(thread.id, store=store).message_count == 1
    assert store.delete(thread.id, version=1) is True
    with pytest.raises(ThreadNotFoundError):
        RoleThread.get(thread.id, store=store)
    with pytest.raises(InvalidInputError):
        store.delete(thread.id, version=-1)
    with pytest.raises(InvalidInputError):
        store.delete(thread.id, version="1")  # type: ignore[arg-type]


# -- async ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_concurrent_extends_from_one_version_one_lands(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    copies = [await AsyncRoleThread.get(thread.id, store=async_store) for _ in range(5)]
    outcomes = await asyncio.gather(
        *(c.extend(batch(f"{n}a", f"{n}b"), metadata={"n": n}) for n, c in enumerate(copies)),
        return_exceptions=True,
    )
    landed = [n for n, o in enumerate(outcomes) if o is None]
    assert len(landed) == 1
    assert all(isinstance(o, VersionConflictError) for o in outcomes if o is not None)
    again = await AsyncRoleThread.get(thread.id, store=async_store)
    n = landed[0]
    assert [m.text for m in await again.messages()] == [f"{n}a", f"{n}b"]
    assert again.metadata == {"n": n}


@pytest.mark.asyncio
async def test_async_store_delete_at_a_version(async_store: AsyncThreadStore) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    await thread.extend(batch("one"))
    assert await async_store.delete(thread.id, version=0) is False
    assert await async_store.delete(thread.id, version=1) is True
    assert await async_store.delete(thread.id, version=1) is False


@pytest.mark.asyncio
@pytest.mark.backends("wire", "mongodb", reason="watch needs change streams")
async def test_async_watch_reports_each_message_of_a_batch(async_store: AsyncThreadStore) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    seed = await thread.post("user", "seed")
    first_seen = asyncio.Event()

    async def watch() -> list[ThreadEvent]:
        seen: list[ThreadEvent] = []
        events = thread.watch(after_message=seed.id, idle_timeout=20)
        async with contextlib.aclosing(events):
            async for event in events:
                seen.append(event)
                first_seen.set()
                if event.kind == "message_added" and event.message and event.message.text == "d":
                    break
        return seen

    async def write() -> None:
        mine = await AsyncRoleThread.get(thread.id, store=async_store)
        await mine.post("user", "w0")
        # The watcher has seen w0, so its stream is open: nothing after can be missed.
        await first_seen.wait()
        await mine.extend(batch("a", "b"), metadata={"k": 1})
        await mine.extend(batch("c", "d"))

    seen, _ = await asyncio.wait_for(asyncio.gather(watch(), write()), 60)
    added = [e.message.text for e in seen if e.kind == "message_added" and e.message]
    assert added == ["w0", "a", "b", "c", "d"]
    assert any(e.kind == "thread_updated" and e.fields.get("metadata") == {"k": 1} for e in seen)
