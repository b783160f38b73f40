"""The behaviour suite: ``RoleThread`` and ``RoleMessage`` behaviour on every backend.

Written once, through the async API; ``tools/synchro.py`` generates the sync suite
(``tests/test_behaviour.py``) from this file, as it generates the sync package modules
from their async sources, so both APIs are held to the same tests. Each test runs on
conftest's ``async_store`` (``store`` in the sync suite): a fresh database on each backend
(mongomock, the SecantusDB wire server, and ``THREADMEM_TEST_MONGODB_URI``'s server when
set) that is the default store, so calls without ``store=`` land there. Stored documents
are asserted through the backend's sync client (``async_raw``, ``raw`` in the sync suite).

Tests between ``# synchro: begin async-only`` and ``# synchro: end async-only`` mean
something only with an event loop (concurrent tasks). What only the sync API has is in
``test_behaviour_sync_only.py``; what ties the two APIs together, and the async API's own
configuration, is in ``test_async_api.py``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import inspect
import io
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
import pytest
import pytest_asyncio
from PIL import Image
from pymongo.collection import Collection

from threadmem_mongo import (
    ImageFormatError,
    InvalidInputError,
    MessageNotFoundError,
    RoleMessage,
    ThreadNotFoundError,
    ThreadTooLargeError,
    V1Role,
    V1RoleMessage,
    V1RoleThread,
    VersionConflictError,
)
from threadmem_mongo._async_blobs import DEFAULT_BUCKET
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

pytestmark = pytest.mark.asyncio

Document = dict[str, Any]
Raw = Collection[Document]

URL = "https://example.com/cat.png"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="
MB = 1024 * 1024
BIG = 2**70  # MongoDB stores integers of at most 64 bits


def role(name: str = "assistant", user_id: str = "bot-1") -> V1Role:
    return V1Role(name=name, user_id=user_id, user_name="Bot", icon="https://x/icon.png")


def stored(raw: Raw, thread: AsyncRoleThread) -> Document:
    doc = raw.find_one({"_id": thread.id})
    assert doc is not None, f"thread {thread.id} is not stored"
    return doc


def encoded_snapshot(raw: Raw) -> list[bytes]:
    """Every stored document, encoded: equal snapshots mean byte-identical documents."""
    return [bson.encode(doc) for doc in raw.find({}, sort=[("_id", 1)])]


async def texts(thread: AsyncRoleThread, include_private: bool = True) -> list[str]:
    return [m.text for m in await thread.messages(include_private)]


def big_png_data_uri() -> str:
    """A PNG data URI over the 32 KiB GridFS threshold (random pixels do not compress)."""
    image = Image.frombytes("RGB", (128, 128), random.Random(7).randbytes(128 * 128 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert len(uri) > 32 * 1024
    return uri


@pytest.fixture(autouse=True)
def _on_every_backend(async_store: AsyncThreadStore) -> None:
    """Every test here runs on each backend, through the default store ``async_store`` set up."""


async def two_views(**fields: Any) -> tuple[AsyncRoleThread, AsyncRoleThread]:
    thread = await AsyncRoleThread.create(**fields)
    return thread, await AsyncRoleThread.get(thread.id)


# -- creation and the seed flow --------------------------------------------------------------


async def test_new_thread_is_stored_at_once_at_version_zero(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(
        owner_id="owner-1",
        public=True,
        name="My thread",
        metadata={"purpose": "demo"},
        role_mapping={"assistant": role()},
    )
    assert thread.version == 0
    assert thread.created == thread.updated
    doc = stored(async_raw, thread)
    assert doc["owner_id"] == "owner-1"
    assert doc["public"] is True
    assert doc["name"] == "My thread"
    assert doc["metadata"] == {"purpose": "demo"}
    assert doc["roles"] == [role().model_dump()]
    assert doc["messages"] == []
    assert doc["message_count"] == 0
    assert doc["version"] == 0
    assert doc["created"] == thread.created
    assert doc["updated"] == thread.updated
    assert doc["size_bytes"] >= len(bson.encode(doc))


# synchro: begin async-only
async def test_constructing_an_async_thread_directly_is_refused_with_a_hint(
    async_raw: Raw,
) -> None:
    with pytest.raises(TypeError, match=r"create"):
        AsyncRoleThread(owner_id="o")
    assert async_raw.count_documents({}) == 0


# synchro: end async-only


async def test_default_thread_fields(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    assert (thread.owner_id, thread.public, thread.name, thread.metadata) == (
        None,
        False,
        None,
        None,
    )
    assert thread.role_mapping == {}
    assert await thread.messages() == []
    assert (thread.message_count, thread.is_partial) == (0, False)
    assert async_raw.count_documents({}) == 1


async def test_threads_get_distinct_ids(async_raw: Raw) -> None:
    ids = {(await AsyncRoleThread.create()).id for _ in range(5)}
    assert len(ids) == 5
    assert async_raw.count_documents({}) == 5


async def test_seed_flow_posts_messages_and_exports_openai(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(owner_id="random123")
    await thread.post(role="user", msg="Hey there!")
    await thread.post(role="assistant", msg="How can I help?")
    await thread.post(role="user", msg="Whats in this image?", images=[URL])
    await thread.post(role="moderator", msg="This conversation is fine")

    messages = await thread.messages()
    assert [(m.role, m.text, m.images) for m in messages] == [
        ("user", "Hey there!", []),
        ("assistant", "How can I help?", []),
        ("user", "Whats in this image?", [URL]),
        ("moderator", "This conversation is fine", []),
    ]
    assert {m.thread_id for m in messages} == {thread.id}
    assert len({m.id for m in messages}) == 4
    assert thread.version == 4
    assert await thread.to_openai() == {
        "messages": [
            {"role": "user", "content": "Hey there!"},
            {"role": "assistant", "content": "How can I help?"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Whats in this image?"},
                    {"type": "image_url", "image_url": {"url": URL}},
                ],
            },
            {"role": "moderator", "content": "This conversation is fine"},
        ]
    }

    doc = stored(async_raw, thread)
    assert doc["version"] == 4
    assert doc["message_count"] == 4
    assert [m["text"] for m in doc["messages"]] == await texts(thread)


async def test_get_returns_what_was_stored(async_store: AsyncThreadStore) -> None:
    thread = await AsyncRoleThread.create(
        owner_id="o", name="n", metadata={"k": [1, 2]}, public=True
    )
    await thread.add_role(role())
    await thread.post("user", "Hey there!", metadata={"m": 1})
    await thread.post("assistant", "Hi", images=[URL, DATA_URI], private=True)

    fresh = await AsyncRoleThread.get(thread.id)
    assert fresh is not thread
    assert fresh.id == thread.id
    assert (fresh.owner_id, fresh.public, fresh.name, fresh.metadata) == (
        "o",
        True,
        "n",
        {"k": [1, 2]},
    )
    assert fresh.role_mapping == {"assistant": role()}
    assert await fresh.messages() == await thread.messages()
    assert fresh.version == thread.version == 3
    assert fresh.created == thread.created
    assert fresh.updated == thread.updated
    assert fresh.store.collection.full_name == async_store.collection.full_name
    via_store = await AsyncRoleThread.get(thread.id, store=async_store)
    assert await via_store.messages() == await thread.messages()


async def test_get_of_unknown_id_raises_thread_not_found() -> None:
    with pytest.raises(ThreadNotFoundError) as info:
        await AsyncRoleThread.get("no-such-thread")
    assert info.value.thread_id == "no-such-thread"


async def test_repr_names_the_thread() -> None:
    thread = await AsyncRoleThread.create(owner_id="o", name="n")
    await thread.post("user", "x")
    assert repr(thread) == (
        f"AsyncRoleThread(id={thread.id!r}, owner_id='o', name='n', public=False, "
        "messages=1, version=1)"
    )


async def test_stored_message_repr_matches_the_original_format() -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "Hey there!")
    assert repr(message) == (
        f"RoleMessage(role='user', text='Hey there!', thread_id='{thread.id}', images=[], "
        f"private=False, created={message.created!r}, id='{message.id}', metadata=None)"
    )


# -- posting -----------------------------------------------------------------------------------


async def test_post_returns_the_stored_message(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post(
        "user", "hello", images=[URL], private=True, metadata={"lang": "en"}
    )
    assert isinstance(message, RoleMessage)
    assert message.thread_id == thread.id
    assert (message.role, message.text, message.images) == ("user", "hello", [URL])
    assert message.private is True
    assert message.metadata == {"lang": "en"}
    assert stored(async_raw, thread)["messages"] == [
        {
            "id": message.id,
            "role": "user",
            "text": "hello",
            "images": [URL],
            "private": True,
            "created": message.created,
            "metadata": {"lang": "en"},
        }
    ]


async def test_post_with_only_images_and_empty_text_is_allowed(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "", images=[URL])
    assert message.text == ""
    assert stored(async_raw, thread)["messages"][0]["images"] == [URL]


async def test_posted_images_from_bytes_are_stored_as_data_uris(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "pic", images=[b"\x89PNG\r\n\x1a\nrest"])
    assert message.images[0].startswith("data:image/png;base64,")
    assert stored(async_raw, thread)["messages"][0]["images"] == message.images


async def test_posted_image_file_is_stored_as_a_data_uri(async_raw: Raw, tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2), (0, 128, 255)).save(path)
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "file", images=[path, str(path), URL])
    uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    assert message.images == [uri, uri, URL]
    assert stored(async_raw, thread)["messages"][0]["images"] == [uri, uri, URL]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
async def test_posted_pil_image_is_stored_as_a_data_uri(async_raw: Raw, mode: str) -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "pil", images=[Image.new(mode, (3, 2))])
    (uri,) = message.images
    assert uri.startswith("data:image/")
    payload = base64.b64decode(uri.split(",", 1)[1])
    assert Image.open(io.BytesIO(payload)).size == (3, 2)
    assert stored(async_raw, thread)["messages"][0]["images"] == [uri]


async def test_images_of_every_kind_in_one_thread_are_stored_in_order(
    async_raw: Raw, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2), (0, 128, 255)).save(path)
    file_uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    thread = await AsyncRoleThread.create()
    from_bytes = await thread.post("user", "bytes", images=[b"\x89PNG\r\n\x1a\nrest"])
    from_files = await thread.post("user", "file", images=[path, str(path), URL])
    from_pil = await thread.post("user", "pil", images=[Image.new("RGBA", (3, 2))])
    assert from_files.images == [file_uri, file_uri, URL]
    assert [m["images"] for m in stored(async_raw, thread)["messages"]] == [
        from_bytes.images,
        [file_uri, file_uri, URL],
        from_pil.images,
    ]


async def test_large_image_is_kept_in_gridfs_and_reads_back_byte_for_byte(
    async_raw: Raw,
) -> None:
    uri = big_png_data_uri()
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "big <image>", images=[uri])
    assert message.images == [uri]

    (ref,) = stored(async_raw, thread)["messages"][0]["images"]
    assert ref.startswith("gridfs:")
    assert [m.images for m in await thread.messages(resolve_images=False)] == [[ref]]
    assert [m.images for m in await thread.messages()] == [[uri]]
    fresh = await AsyncRoleThread.get(thread.id)
    assert (await fresh.messages())[0].images == [uri]

    exported = await thread.to_openai(image_url=lambda r: f"https://cdn.example/{r}")
    parts = exported["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": f"https://cdn.example/{ref}"}}
    assert (await thread.to_openai())["messages"][0]["content"][1]["image_url"]["url"] == uri


async def test_versions_rise_by_exactly_one_per_landed_change(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(metadata={"n": 0}, ttl=datetime.timedelta(hours=1))
    message_ids: list[str] = []

    async def post() -> None:
        message_ids.append((await thread.post("user", "hi", images=[URL])).id)

    async def save() -> None:
        thread.name = f"name-{thread.version}"
        await thread.save()

    steps: list[Callable[[], Awaitable[object]]] = [
        post,
        post,
        lambda: thread.update_message(message_ids[0], text="edited"),
        lambda: thread.update_message(message_ids[0], metadata={"a": 1}, private=True),
        lambda: thread.delete_message(message_ids[1]),
        save,
        lambda: thread.add_role(role()),
        lambda: thread.remove_role("assistant"),
        thread.remove_images,
        lambda: thread.add_msg(RoleMessage(role="user", text="added")),
        thread.touch,
    ]
    for expected, step in enumerate(steps, start=1):
        before = thread.updated
        await step()
        assert thread.version == expected
        doc = stored(async_raw, thread)
        assert doc["version"] == expected
        assert doc["updated"] == thread.updated >= before
        assert doc["message_count"] == len(doc["messages"]) == len(await thread.messages())
    assert (await AsyncRoleThread.get(thread.id)).version == len(steps)


async def test_size_estimate_tracks_the_stored_document(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(metadata={"a": "x" * 50})
    ids = [(await thread.post("user", "m" * (i * 40), images=[URL] * i)).id for i in range(1, 6)]
    await thread.update_message(ids[0], text="short")
    await thread.update_message(ids[1], text="much longer " * 30, metadata={"k": list(range(20))})
    await thread.delete_message(ids[2])
    thread.metadata = {"b": "y" * 500}
    await thread.save()
    await thread.add_role(role())
    await thread.add_role(role("critic"))
    await thread.remove_role("assistant")
    await thread.remove_images()
    other = await AsyncRoleThread.get(thread.id)  # reads the size, and the last edit's record, back
    await other.update_message(ids[3], text="edited by another object")
    await other.delete_message(ids[4])
    doc = stored(async_raw, thread)
    actual = len(bson.encode(doc))
    # Never under the real size, and off by no more than the per-element slack.
    assert actual <= doc["size_bytes"] <= actual + 12 * (len(doc["messages"]) + 3)


# -- reading messages ---------------------------------------------------------------------------


async def test_private_messages_are_left_out_only_when_asked() -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "public one")
    await thread.post("assistant", "secret", private=True)
    await thread.post("user", "public two")
    assert await texts(thread) == ["public one", "secret", "public two"]
    assert await texts(thread, include_private=False) == ["public one", "public two"]
    assert await thread.to_openai(include_private=False) == {
        "messages": [
            {"role": "user", "content": "public one"},
            {"role": "user", "content": "public two"},
        ]
    }
    fresh = await AsyncRoleThread.get(thread.id)
    assert [m.private for m in await fresh.messages()] == [False, True, False]


async def test_messages_returns_a_new_list_each_call() -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "a")
    listed = await thread.messages()
    listed.clear()
    assert await texts(thread) == ["a"]


async def test_to_openai_places_images_at_placeholders() -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "Compare <image> with <image>", images=[URL, DATA_URI])
    assert await thread.to_openai() == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": URL}},
                    {"type": "text", "text": "with"},
                    {"type": "image_url", "image_url": {"url": DATA_URI}},
                ],
            }
        ]
    }


async def test_post_with_placeholder_count_mismatch_is_refused_and_writes_nothing(
    async_raw: Raw,
) -> None:
    thread = await AsyncRoleThread.create()
    before = encoded_snapshot(async_raw)
    with pytest.raises(InvalidInputError, match="placeholder"):
        await thread.post("user", "one <image> two <image>", images=[URL])
    assert encoded_snapshot(async_raw) == before
    assert await thread.to_openai() == {"messages": []}


# -- editing messages --------------------------------------------------------------------------


async def test_update_message_changes_text_metadata_and_privacy(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    first = await thread.post("user", "before", metadata={"old": True})
    second = await thread.post("assistant", "untouched")

    updated = await thread.update_message(first.id, text="after")
    assert updated.text == "after"
    assert (updated.id, updated.created, updated.metadata) == (
        first.id,
        first.created,
        {"old": True},
    )
    updated = await thread.update_message(first.id, metadata={"new": 1}, private=True)
    assert (updated.text, updated.metadata, updated.private) == ("after", {"new": 1}, True)
    assert await thread.messages() == [updated, second]
    assert thread.version == 4

    doc = stored(async_raw, thread)
    assert doc["messages"][0] == {
        "id": first.id,
        "role": "user",
        "text": "after",
        "private": True,
        "created": first.created,
        "metadata": {"new": 1},
    }
    assert doc["messages"][1]["text"] == "untouched"
    assert await (await AsyncRoleThread.get(thread.id)).messages() == [updated, second]


async def test_update_message_can_make_a_message_public_again() -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "x", private=True)
    await thread.update_message(message.id, private=False)
    fresh = await AsyncRoleThread.get(thread.id)
    assert (await fresh.messages(include_private=False))[0].id == message.id


async def test_update_message_of_unknown_id_raises_message_not_found(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "x")
    before = encoded_snapshot(async_raw)
    with pytest.raises(MessageNotFoundError) as info:
        await thread.update_message("missing", text="y")
    assert (info.value.thread_id, info.value.message_id) == (thread.id, "missing")
    assert isinstance(info.value, LookupError)
    assert encoded_snapshot(async_raw) == before
    assert thread.version == 1


async def test_delete_message_removes_it(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    first = await thread.post("user", "a")
    second = await thread.post("user", "b")
    third = await thread.post("user", "c")
    await thread.delete_message(second.id)
    assert await thread.messages() == [first, third]
    assert thread.version == 4
    doc = stored(async_raw, thread)
    assert [m["id"] for m in doc["messages"]] == [first.id, third.id]
    assert doc["message_count"] == 2
    assert await (await AsyncRoleThread.get(thread.id)).messages() == [first, third]


async def test_delete_message_of_unknown_id_raises_message_not_found(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "x")
    before = encoded_snapshot(async_raw)
    with pytest.raises(MessageNotFoundError):
        await thread.delete_message("missing")
    assert encoded_snapshot(async_raw) == before


async def test_message_deleted_twice_raises_message_not_found(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "x")
    await thread.delete_message(message.id)
    before = encoded_snapshot(async_raw)
    with pytest.raises(MessageNotFoundError):
        await thread.delete_message(message.id)
    assert encoded_snapshot(async_raw) == before


async def test_remove_images_strips_images_from_user_messages_only(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "look <image>", images=[URL])
    await thread.post("assistant", "my drawing", images=[URL])
    await thread.post("user", "", images=[DATA_URI, URL])
    await thread.post("user", "no images")
    await thread.remove_images()
    expected = [
        ("user", "look", []),
        ("assistant", "my drawing", [URL]),
        ("user", "[image removed]", []),
        ("user", "no images", []),
    ]
    assert [(m.role, m.text, m.images) for m in await thread.messages()] == expected
    assert thread.version == 5
    fresh = await AsyncRoleThread.get(thread.id)
    assert [(m.role, m.text, m.images) for m in await fresh.messages()] == expected
    assert [
        (m["role"], m["text"], m.get("images", [])) for m in stored(async_raw, thread)["messages"]
    ] == expected


async def test_remove_images_without_user_images_writes_nothing(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "text only")
    await thread.post("assistant", "drawing", images=[URL])
    before = encoded_snapshot(async_raw)
    await thread.remove_images()
    assert encoded_snapshot(async_raw) == before
    assert thread.version == 2


async def test_remove_images_releases_gridfs_images_no_thread_references(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "big", images=[big_png_data_uri()])
    files = async_raw.database[f"{DEFAULT_BUCKET}.files"]
    assert files.count_documents({}) == 1
    await thread.remove_images()
    (message,) = stored(async_raw, thread)["messages"]
    assert message["images"] == []
    assert "blobs" not in message  # else the thread still counts as holding the image
    assert files.count_documents({}) == 0


# -- add_msg -----------------------------------------------------------------------------------


async def test_add_msg_keeps_the_message_id_and_sets_the_thread(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    message = RoleMessage(role="user", text="from elsewhere", metadata={"src": "import"})
    added = await thread.add_msg(message)
    assert added.id == message.id
    assert added.thread_id == thread.id
    assert thread.version == 1
    assert stored(async_raw, thread)["messages"][0]["id"] == message.id


async def test_add_msg_retry_of_a_landed_post_writes_nothing(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "once")
    before = encoded_snapshot(async_raw)
    assert await thread.add_msg(message) == message
    assert encoded_snapshot(async_raw) == before
    assert thread.version == 1
    assert await thread.messages() == [message]
    doc = stored(async_raw, thread)
    assert [m["id"] for m in doc["messages"]] == [message.id]
    assert doc["message_count"] == 1


async def test_add_msg_retry_of_a_landed_add_msg_writes_nothing(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    added = await thread.add_msg(RoleMessage(role="user", text="from elsewhere"))
    before = encoded_snapshot(async_raw)
    assert await thread.add_msg(added) == added
    assert encoded_snapshot(async_raw) == before
    assert thread.version == 1
    assert [m["id"] for m in stored(async_raw, thread)["messages"]] == [added.id]


async def test_add_msg_retry_from_another_object_writes_nothing_and_catches_up(
    async_raw: Raw,
) -> None:
    thread, other = await two_views()
    message = await thread.post("user", "once")
    before = encoded_snapshot(async_raw)
    await other.add_msg(message)
    assert encoded_snapshot(async_raw) == before
    assert await other.messages() == [message]
    assert other.version == 1


async def test_add_msg_of_a_message_without_thread_lands_once_when_retried(
    async_raw: Raw,
) -> None:
    thread = await AsyncRoleThread.create()
    message = RoleMessage(role="user", text="retry me")
    await thread.add_msg(message)
    await thread.add_msg(message)
    assert [m.id for m in await thread.messages()] == [message.id]
    assert stored(async_raw, thread)["message_count"] == 1
    assert thread.version == 1


# -- roles -------------------------------------------------------------------------------------


async def test_add_role_and_remove_role_persist(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    await thread.add_role(role("assistant"))
    await thread.add_role(role("critic", "bot-2"))
    assert set(thread.role_mapping) == {"assistant", "critic"}
    assert [r["name"] for r in stored(async_raw, thread)["roles"]] == ["assistant", "critic"]
    await thread.remove_role("assistant")
    assert thread.role_mapping == {"critic": role("critic", "bot-2")}
    assert stored(async_raw, thread)["roles"] == [role("critic", "bot-2").model_dump()]
    fresh = await AsyncRoleThread.get(thread.id)
    assert fresh.role_mapping == {"critic": role("critic", "bot-2")}
    assert thread.version == 3


async def test_role_mapping_is_a_copy() -> None:
    thread = await AsyncRoleThread.create(role_mapping={"assistant": role()})
    thread.role_mapping.pop("assistant")
    assert set(thread.role_mapping) == {"assistant"}


async def test_role_names_with_dots_and_dollars_are_data(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    await thread.add_role(role("a.b"))
    await thread.add_role(role("$x"))
    await thread.remove_role("a.b")
    assert [r["name"] for r in stored(async_raw, thread)["roles"]] == ["$x"]


# -- save and refresh --------------------------------------------------------------------------


async def test_save_persists_public_name_and_metadata(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(owner_id="o")
    thread.public = True
    thread.name = "renamed"
    thread.metadata = {"topic": "cats", "tags": ["a", "b"]}
    await thread.save()
    assert thread.version == 1
    doc = stored(async_raw, thread)
    expected = (True, "renamed", {"topic": "cats", "tags": ["a", "b"]})
    assert (doc["public"], doc["name"], doc["metadata"]) == expected
    assert doc["owner_id"] == "o"
    fresh = await AsyncRoleThread.get(thread.id)
    assert (fresh.public, fresh.name, fresh.metadata) == expected


async def test_save_persists_metadata_edited_in_place(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(metadata={"count": 1})
    assert thread.metadata is not None
    thread.metadata["count"] = 2
    await thread.save()
    assert stored(async_raw, thread)["metadata"] == {"count": 2}
    assert thread.version == 1


async def test_save_without_changes_writes_nothing(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(name="n", metadata={"a": 1})
    before = encoded_snapshot(async_raw)
    await thread.save()
    thread.name = "n"
    thread.metadata = {"a": 1}
    await thread.save()
    assert encoded_snapshot(async_raw) == before
    assert thread.version == 0


async def test_save_can_clear_name_and_metadata(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(name="n", metadata={"a": 1})
    thread.name = None
    thread.metadata = None
    await thread.save()
    doc = stored(async_raw, thread)
    assert (doc["name"], doc["metadata"]) == (None, None)


async def test_metadata_given_is_copied_not_aliased(async_raw: Raw) -> None:
    given = {"a": [1]}
    thread = await AsyncRoleThread.create(metadata=given)
    given["a"].append(2)
    await thread.save()
    assert stored(async_raw, thread)["metadata"] == {"a": [1]}
    assert thread.version == 0


async def test_refresh_drops_unsaved_edits_and_reads_others_changes() -> None:
    thread, other = await two_views(name="original")
    await other.post("user", "from other")
    await other.add_role(role())
    thread.name = "unsaved"
    await thread.refresh()
    assert thread.name == "original"
    assert await texts(thread) == ["from other"]
    assert set(thread.role_mapping) == {"assistant"}
    assert thread.version == 2


# -- delete ------------------------------------------------------------------------------------


async def test_delete_removes_the_thread(async_raw: Raw) -> None:
    keep = await AsyncRoleThread.create()
    thread = await AsyncRoleThread.create()
    await thread.post("user", "x")
    await thread.delete()
    assert async_raw.find_one({"_id": thread.id}) is None
    assert async_raw.find_one({"_id": keep.id}) is not None
    with pytest.raises(ThreadNotFoundError):
        await AsyncRoleThread.get(thread.id)


async def test_deleted_thread_refuses_changes_with_thread_not_found(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "x")
    await (await AsyncRoleThread.get(thread.id)).delete()
    with pytest.raises(ThreadNotFoundError):
        await thread.post("user", "y")
    with pytest.raises(ThreadNotFoundError):
        await thread.add_msg(RoleMessage(role="user", text="z"))
    thread.name = "changed"
    with pytest.raises(ThreadNotFoundError):
        await thread.save()
    with pytest.raises(ThreadNotFoundError):
        await thread.update_message(message.id, text="new")
    with pytest.raises(ThreadNotFoundError):
        await thread.delete_message(message.id)
    with pytest.raises(ThreadNotFoundError):
        await thread.add_role(role())
    with pytest.raises(ThreadNotFoundError):
        await thread.touch(datetime.timedelta(minutes=5))
    with pytest.raises(ThreadNotFoundError):
        await thread.refresh()
    with pytest.raises(ThreadNotFoundError):
        await thread.delete()
    assert async_raw.count_documents({}) == 0


# -- copy --------------------------------------------------------------------------------------


async def test_copy_is_a_new_stored_thread_with_new_message_ids(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(
        owner_id="o",
        public=True,
        name="n",
        metadata={"k": {"nested": 1}},
        role_mapping={"assistant": role()},
    )
    originals = [
        await thread.post("user", "a", images=[URL]),
        await thread.post("assistant", "b"),
    ]
    clone = await thread.copy()
    assert clone.id != thread.id
    assert clone.version == 0
    assert (clone.owner_id, clone.public, clone.name, clone.metadata) == (
        "o",
        True,
        "n",
        {"k": {"nested": 1}},
    )
    assert clone.role_mapping == thread.role_mapping
    copies = await clone.messages()
    assert [(m.role, m.text, m.images, m.created) for m in copies] == [
        (m.role, m.text, m.images, m.created) for m in originals
    ]
    assert {m.thread_id for m in copies} == {clone.id}
    assert not {m.id for m in copies} & {m.id for m in originals}
    assert async_raw.count_documents({}) == 2
    assert stored(async_raw, clone)["message_count"] == 2
    assert await (await AsyncRoleThread.get(clone.id)).messages() == copies


async def test_copy_is_independent_of_the_original(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(metadata={"k": [1]})
    message = await thread.post("user", "a")
    clone = await thread.copy()
    assert clone.metadata is not None
    clone.metadata["k"].append(2)
    await clone.save()
    await clone.post("user", "only in clone")
    await clone.update_message((await clone.messages())[0].id, text="edited in clone")
    await thread.post("user", "only in original")
    assert await texts(thread) == ["a", "only in original"]
    assert await texts(clone) == ["edited in clone", "only in clone"]
    assert stored(async_raw, thread)["metadata"] == {"k": [1]}
    assert (await (await AsyncRoleThread.get(thread.id)).messages())[0] == message
    assert await AsyncRoleThread.find_messages(id=message.id) == [message]


async def test_copy_of_a_partly_loaded_thread_copies_every_message() -> None:
    thread = await AsyncRoleThread.create()
    for i in range(5):
        await thread.post("user", f"m{i}")
    partial = await AsyncRoleThread.get(thread.id, last=2)
    clone = await partial.copy()
    assert await texts(clone) == [f"m{i}" for i in range(5)]


# -- find, get(last=), history -----------------------------------------------------------------


async def test_find_by_fields_returns_matches_oldest_first() -> None:
    first = await AsyncRoleThread.create(owner_id="alice", public=True, name="a")
    await AsyncRoleThread.create(owner_id="bob", public=True, name="b")
    third = await AsyncRoleThread.create(owner_id="alice", public=False, name="c")
    fourth = await AsyncRoleThread.create(owner_id="alice", public=True, name="d")

    async def ids(**filters: Any) -> list[str]:
        return [t.id for t in await AsyncRoleThread.find(**filters)]

    assert await ids(owner_id="alice") == [first.id, third.id, fourth.id]
    assert await ids(owner_id="alice", public=True) == [first.id, fourth.id]
    assert await ids(name="c") == [third.id]
    assert await ids(id=fourth.id) == [fourth.id]
    assert await ids(owner_id="carol") == []
    assert len(await ids()) == 4
    assert await ids(owner_id="alice", newest_first=True) == [fourth.id, third.id, first.id]
    assert await ids(owner_id="alice", limit=2) == [first.id, third.id]
    assert await ids(owner_id="alice", after=first.cursor) == [third.id, fourth.id]


async def test_find_oldest_first_ignores_insertion_order() -> None:
    # from_v1 keeps the given created time, so a thread stored later can be older.
    newer = await AsyncRoleThread.create(owner_id="o")
    older = await AsyncRoleThread.from_v1(
        V1RoleThread(
            id="older-thread",
            owner_id="o",
            public=False,
            messages=[],
            created=newer.created - 100,
            updated=newer.created - 100,
        )
    )
    assert [t.id for t in await AsyncRoleThread.find(owner_id="o")] == [older.id, newer.id]


async def test_find_owner_none_matches_threads_without_owner() -> None:
    ownerless = await AsyncRoleThread.create()
    await AsyncRoleThread.create(owner_id="x")
    assert [t.id for t in await AsyncRoleThread.find(owner_id=None)] == [ownerless.id]


async def test_find_by_metadata_requires_every_entry() -> None:
    both = await AsyncRoleThread.create(metadata={"team": "red", "level": 2, "extra": True})
    await AsyncRoleThread.create(metadata={"team": "red", "level": 3})
    await AsyncRoleThread.create(metadata={"team": "blue", "level": 2})
    await AsyncRoleThread.create()
    found = await AsyncRoleThread.find(metadata={"team": "red", "level": 2})
    assert [t.id for t in found] == [both.id]
    assert len(await AsyncRoleThread.find(metadata={"team": "red"})) == 2
    assert await AsyncRoleThread.find(metadata={"team": "green"}) == []


async def test_find_returns_full_threads_that_can_be_posted_to(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(owner_id="o", role_mapping={"assistant": role()})
    await thread.post("user", "x")
    (found,) = await AsyncRoleThread.find(owner_id="o", store=async_store)
    assert await found.messages() == await thread.messages()
    assert found.role_mapping == thread.role_mapping
    assert found.version == 1
    await found.post("assistant", "y")
    assert found.version == 2


async def test_find_with_last_loads_only_each_threads_last_messages() -> None:
    thread = await AsyncRoleThread.create(owner_id="o")
    for i in range(4):
        await thread.post("user", f"m{i}")
    (listed,) = await AsyncRoleThread.find(owner_id="o", last=0)
    assert (await listed.messages(), listed.message_count, listed.is_partial) == ([], 4, True)
    (tail,) = await AsyncRoleThread.find(owner_id="o", last=2)
    assert await texts(tail) == ["m2", "m3"]


async def test_get_with_last_loads_a_page_that_can_be_posted_to_and_paged_back(
    async_raw: Raw,
) -> None:
    thread = await AsyncRoleThread.create()
    for i in range(6):
        await thread.post("user", f"m{i}")
    page = await AsyncRoleThread.get(thread.id, last=2)
    assert (page.is_partial, page.message_count, page.version) == (True, 6, 6)
    assert await texts(page) == ["m4", "m5"]

    older = await page.history(before=(await page.messages())[0].id, limit=3)
    assert [m.text for m in older] == ["m1", "m2", "m3"]
    oldest = await page.history(before=older[0].id, limit=3)
    assert [m.text for m in oldest] == ["m0"]
    assert await page.history(before=oldest[0].id) == []
    assert [m.text for m in await page.history(limit=2)] == ["m4", "m5"]

    await page.post("user", "m6")
    assert (page.version, page.message_count) == (7, 7)
    assert await texts(page) == ["m4", "m5", "m6"]
    assert stored(async_raw, thread)["message_count"] == 7


async def test_history_of_unknown_message_raises_message_not_found() -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "x")
    with pytest.raises(MessageNotFoundError):
        await thread.history(before="missing")
    with pytest.raises(InvalidInputError):
        await thread.history(limit=0)


# -- find_messages -----------------------------------------------------------------------------


async def test_find_messages_returns_only_matches_across_threads(
    async_store: AsyncThreadStore,
) -> None:
    one = await AsyncRoleThread.create()
    two = await AsyncRoleThread.create()
    a = await one.post("user", "hello")
    await one.post("assistant", "hi")
    b = await two.post("user", "hello", images=[URL])
    c = await two.post("user", "bye", private=True, metadata={"m": 1})
    await two.post("assistant", "hello")

    find = AsyncRoleThread.find_messages
    assert await find(role="user") == [a, b, c]
    assert await find(role="user", text="hello") == [a, b]
    assert await find(thread_id=two.id, role="user") == [b, c]
    assert await find(id=c.id) == [c]
    assert await find(id=c.id, store=async_store) == [c]
    assert await find(text="nothing like this") == []
    assert await find(thread_id="no-such-thread") == []
    assert len(await find()) == 5
    assert [m.thread_id for m in await find(text="hello")] == [one.id, two.id, two.id]


async def test_find_messages_orders_by_thread_creation_then_position() -> None:
    newer = await AsyncRoleThread.create()
    older = await AsyncRoleThread.from_v1(
        V1RoleThread(id="older", public=False, messages=[], created=newer.created - 5, updated=0.0)
    )
    n1 = await newer.post("user", "same")
    o1 = await older.post("user", "same")
    o2 = await older.post("user", "same")
    assert await AsyncRoleThread.find_messages(text="same") == [o1, o2, n1]


async def test_find_messages_does_not_see_deleted_messages() -> None:
    thread = await AsyncRoleThread.create()
    message = await thread.post("user", "short-lived")
    await thread.delete_message(message.id)
    assert await AsyncRoleThread.find_messages(id=message.id) == []


# -- OpenAI and V1 formats ---------------------------------------------------------------------


OPENAI_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Hey there!"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is"},
            {"type": "image_url", "image_url": {"url": URL}},
            {"type": "text", "text": "and"},
            {"type": "image_url", "image_url": {"url": DATA_URI}},
        ],
    },
    {"role": "assistant", "content": "A cat and a dot."},
]


async def test_from_openai_to_openai_round_trip(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.from_openai(
        copy.deepcopy(OPENAI_MESSAGES), owner_id="o", name="imported", metadata={"src": "oai"}
    )
    assert await thread.to_openai() == {"messages": OPENAI_MESSAGES}
    assert thread.version == 0
    assert (thread.owner_id, thread.name, thread.metadata) == ("o", "imported", {"src": "oai"})
    fresh = await AsyncRoleThread.get(thread.id)
    assert await fresh.to_openai() == {"messages": OPENAI_MESSAGES}
    doc = stored(async_raw, thread)
    assert doc["message_count"] == 4
    assert doc["messages"][2]["images"] == [URL, DATA_URI]
    assert doc["messages"][2]["text"] == "What is <image> and <image>"


async def test_to_openai_from_openai_round_trip_of_a_posted_thread() -> None:
    thread = await AsyncRoleThread.create()
    await thread.post("user", "Hey there!")
    await thread.post("user", "What is <image>", images=[URL])
    await thread.post("assistant", "A cat")
    exported = await thread.to_openai()
    again = await AsyncRoleThread.from_openai(exported["messages"])
    assert again.id != thread.id
    assert await again.to_openai() == exported


async def test_from_openai_of_no_messages_is_an_empty_thread(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.from_openai([])
    assert await thread.messages() == []
    assert stored(async_raw, thread)["message_count"] == 0


async def test_to_v1_from_v1_round_trip(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(
        owner_id="o", public=True, name="n", metadata={"k": 1}, role_mapping={"assistant": role()}
    )
    await thread.post("user", "hello", images=[URL], metadata={"m": [1]})
    await thread.post("assistant", "hi", private=True)
    schema = await thread.to_v1()
    assert isinstance(schema, V1RoleThread)
    assert schema.version == "2"
    assert schema.id == thread.id
    assert [m.id for m in schema.messages] == [m.id for m in await thread.messages()]
    assert {m.thread_id for m in schema.messages} == {thread.id}

    await thread.delete()
    restored = await AsyncRoleThread.from_v1(schema)
    assert restored.id == thread.id
    assert restored.version == 0
    again = await restored.to_v1()
    assert again.model_dump(exclude={"version"}) == schema.model_dump(exclude={"version"})
    assert await (await AsyncRoleThread.get(thread.id)).messages() == await restored.messages()
    assert stored(async_raw, restored)["message_count"] == 2


async def test_from_v1_into_another_store_keeps_ids(async_store: AsyncThreadStore) -> None:
    thread = await AsyncRoleThread.create(name="n")
    message = await thread.post("user", "x")
    client = async_store.collection.database.client
    other_name = f"tm_other_{uuid.uuid4().hex}"
    other = AsyncThreadStore(client[other_name]["threads"])
    try:
        restored = await AsyncRoleThread.from_v1(await thread.to_v1(), store=other)
        assert restored.store is other
        assert await (await AsyncRoleThread.get(thread.id, store=other)).messages() == [message]
        assert await AsyncRoleThread.find_messages(id=message.id, store=other) == [message]
    finally:
        await client.drop_database(other_name)


async def test_from_v1_with_private_none_stores_public_messages(async_raw: Raw) -> None:
    schema = V1RoleThread.model_validate(
        {
            "id": "v1-thread",
            "public": False,
            "created": 1.0,
            "updated": 2.0,
            "messages": [
                {"id": "m1", "role": "user", "text": "hi", "created": 1.5, "private": None}
            ],
        }
    )
    thread = await AsyncRoleThread.from_v1(schema)
    assert (await thread.messages())[0].private is False
    # A public message stores no "private" field.
    assert "private" not in stored(async_raw, thread)["messages"][0]
    assert (thread.created, thread.updated) == (1.0, 2.0)


# -- two objects on one thread: conflicts ------------------------------------------------------


async def test_appends_from_two_objects_never_conflict(async_raw: Raw) -> None:
    mine, theirs = await two_views()
    await mine.post("user", "1")
    await theirs.post("user", "2")
    await mine.post("user", "3")
    assert await texts(mine) == ["1", "2", "3"]
    assert mine.version == 3
    assert [m["text"] for m in stored(async_raw, mine)["messages"]] == ["1", "2", "3"]


async def test_post_on_an_object_that_missed_others_posts_picks_them_up() -> None:
    mine, theirs = await two_views()
    await theirs.post("user", "a")
    await theirs.post("assistant", "b")
    theirs.name = "renamed"
    await theirs.save()
    await mine.post("user", "c")
    assert await texts(mine) == ["a", "b", "c"]
    assert mine.name == "renamed"
    assert mine.version == 4


async def test_stale_save_raises_version_conflict_and_writes_nothing(async_raw: Raw) -> None:
    mine, theirs = await two_views(name="start")
    await theirs.post("user", "x")
    before = encoded_snapshot(async_raw)
    mine.name = "mine"
    with pytest.raises(VersionConflictError) as info:
        await mine.save()
    assert (info.value.thread_id, info.value.expected_version, info.value.actual_version) == (
        mine.id,
        0,
        1,
    )
    assert encoded_snapshot(async_raw) == before
    assert mine.version == 0
    await mine.refresh()
    mine.name = "mine"
    await mine.save()
    assert stored(async_raw, mine)["name"] == "mine"
    assert mine.version == 2


async def test_stale_update_message_raises_version_conflict_and_writes_nothing(
    async_raw: Raw,
) -> None:
    mine = await AsyncRoleThread.create()
    message = await mine.post("user", "original")
    theirs = await AsyncRoleThread.get(mine.id)
    await theirs.update_message(message.id, text="theirs")
    await theirs.post("user", "more")
    before = encoded_snapshot(async_raw)
    with pytest.raises(VersionConflictError) as info:
        await mine.update_message(message.id, text="mine")
    assert (info.value.expected_version, info.value.actual_version) == (1, 3)
    assert encoded_snapshot(async_raw) == before
    assert (await mine.messages())[0].text == "original"
    await mine.refresh()
    await mine.update_message(message.id, text="mine")
    assert stored(async_raw, mine)["messages"][0]["text"] == "mine"


async def test_stale_delete_message_raises_version_conflict_and_writes_nothing(
    async_raw: Raw,
) -> None:
    mine = await AsyncRoleThread.create()
    message = await mine.post("user", "x")
    theirs = await AsyncRoleThread.get(mine.id)
    await theirs.post("user", "y")
    before = encoded_snapshot(async_raw)
    with pytest.raises(VersionConflictError) as info:
        await mine.delete_message(message.id)
    assert (info.value.expected_version, info.value.actual_version) == (1, 2)
    assert encoded_snapshot(async_raw) == before
    assert [m.id for m in await mine.messages()] == [message.id]
    await mine.refresh()
    await mine.delete_message(message.id)
    assert [m["text"] for m in stored(async_raw, mine)["messages"]] == ["y"]


async def test_delete_of_a_message_others_deleted_raises_version_conflict(
    async_raw: Raw,
) -> None:
    mine = await AsyncRoleThread.create()
    message = await mine.post("user", "x")
    theirs = await AsyncRoleThread.get(mine.id)
    await theirs.delete_message(message.id)
    before = encoded_snapshot(async_raw)
    with pytest.raises(VersionConflictError):
        await mine.delete_message(message.id)
    assert encoded_snapshot(async_raw) == before
    await mine.refresh()
    with pytest.raises(MessageNotFoundError):
        await mine.delete_message(message.id)


async def test_stale_add_role_raises_version_conflict_and_writes_nothing(async_raw: Raw) -> None:
    mine, theirs = await two_views()
    await theirs.add_role(role("assistant"))
    before = encoded_snapshot(async_raw)
    with pytest.raises(VersionConflictError) as info:
        await mine.add_role(role("assistant", "someone-else"))
    assert (info.value.expected_version, info.value.actual_version) == (0, 1)
    assert encoded_snapshot(async_raw) == before
    assert mine.role_mapping == {}
    await mine.refresh()
    with pytest.raises(InvalidInputError):
        await mine.add_role(role("assistant", "someone-else"))
    await mine.add_role(role("critic"))
    assert [r["name"] for r in stored(async_raw, mine)["roles"]] == ["assistant", "critic"]


async def test_stale_remove_role_raises_version_conflict_and_writes_nothing(
    async_raw: Raw,
) -> None:
    mine, theirs = await two_views(role_mapping={"assistant": role()})
    await theirs.post("user", "x")
    before = encoded_snapshot(async_raw)
    with pytest.raises(VersionConflictError) as info:
        await mine.remove_role("assistant")
    assert (info.value.expected_version, info.value.actual_version) == (0, 1)
    assert encoded_snapshot(async_raw) == before
    assert set(mine.role_mapping) == {"assistant"}
    await mine.refresh()
    await mine.remove_role("assistant")
    assert stored(async_raw, mine)["roles"] == []


async def test_remove_role_after_another_object_added_one_raises_version_conflict(
    async_raw: Raw,
) -> None:
    mine, theirs = await two_views(role_mapping={"critic": role("critic")})
    await theirs.add_role(role("assistant"))
    before = encoded_snapshot(async_raw)
    with pytest.raises(VersionConflictError):
        await mine.remove_role("critic")
    assert encoded_snapshot(async_raw) == before
    assert set(mine.role_mapping) == {"critic"}
    await mine.refresh()
    await mine.remove_role("critic")
    assert [r["name"] for r in stored(async_raw, mine)["roles"]] == ["assistant"]


async def test_stale_remove_images_raises_version_conflict_and_writes_nothing(
    async_raw: Raw,
) -> None:
    mine = await AsyncRoleThread.create()
    await mine.post("user", "pic", images=[URL])
    theirs = await AsyncRoleThread.get(mine.id)
    await theirs.post("user", "another", images=[URL])
    before = encoded_snapshot(async_raw)
    with pytest.raises(VersionConflictError):
        await mine.remove_images()
    assert encoded_snapshot(async_raw) == before
    await mine.refresh()
    await mine.remove_images()
    assert [m["images"] for m in stored(async_raw, mine)["messages"]] == [[], []]


async def test_version_conflict_error_message_tells_what_to_do() -> None:
    mine, theirs = await two_views()
    await theirs.post("user", "x")
    mine.name = "y"
    with pytest.raises(VersionConflictError, match=r"refresh\(\)"):
        await mine.save()


# -- apply -------------------------------------------------------------------------------------


async def test_apply_retries_a_change_after_a_version_conflict(async_raw: Raw) -> None:
    mine, theirs = await two_views(metadata={"counter": 0})
    await theirs.post("user", "moves the version")
    calls: list[int] = []

    async def increment(thread: AsyncRoleThread) -> int:
        calls.append(thread.version)
        assert thread.metadata is not None
        thread.metadata = {"counter": thread.metadata["counter"] + 1}
        await thread.save()
        return int(thread.metadata["counter"])

    assert await mine.apply(increment) == 1
    assert calls == [0, 1]
    assert stored(async_raw, mine)["metadata"] == {"counter": 1}
    assert mine.version == 2
    assert await texts(mine) == ["moves the version"]


async def test_apply_without_conflict_runs_the_change_once() -> None:
    thread = await AsyncRoleThread.create()
    calls: list[int] = []

    async def rename(t: AsyncRoleThread) -> None:
        calls.append(1)
        t.name = "renamed"
        await t.save()

    await thread.apply(rename)
    assert calls == [1]
    assert (await AsyncRoleThread.get(thread.id)).name == "renamed"


async def test_apply_gives_up_after_the_given_attempts(async_raw: Raw) -> None:
    mine, theirs = await two_views()
    calls: list[int] = []

    async def always_beaten(thread: AsyncRoleThread) -> None:
        calls.append(thread.version)
        await theirs.post("user", f"interfere {len(calls)}")
        thread.name = "never"
        await thread.save()

    with pytest.raises(VersionConflictError):
        await mine.apply(always_beaten, attempts=3)
    assert calls == [0, 1, 2]
    doc = stored(async_raw, mine)
    assert doc["name"] is None
    assert doc["version"] == 3


async def test_apply_does_not_retry_other_errors() -> None:
    thread = await AsyncRoleThread.create()
    calls: list[int] = []

    async def broken(t: AsyncRoleThread) -> None:
        calls.append(1)
        await t.update_message("missing", text="x")

    with pytest.raises(MessageNotFoundError):
        await thread.apply(broken)
    assert calls == [1]


@pytest.mark.parametrize("attempts", [0, -1, True, 2.5])
async def test_apply_refuses_bad_attempt_counts(attempts: Any) -> None:
    thread = await AsyncRoleThread.create()

    async def nothing(t: AsyncRoleThread) -> None:
        return None

    with pytest.raises(InvalidInputError):
        await thread.apply(nothing, attempts=attempts)


# -- expiry ------------------------------------------------------------------------------------


async def test_touch_pushes_the_expiry_by_the_threads_ttl(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create(ttl=datetime.timedelta(minutes=10))
    assert thread.ttl == datetime.timedelta(minutes=10)
    first = thread.expires_at
    assert first is not None
    await thread.touch()
    assert thread.version == 1
    assert thread.expires_at is not None
    assert thread.expires_at >= first
    await thread.touch(datetime.timedelta(hours=2))
    assert thread.ttl == datetime.timedelta(hours=2)
    doc = stored(async_raw, thread)
    assert doc["ttl"] == 7200.0
    assert doc["expires_at"].replace(tzinfo=datetime.timezone.utc) == thread.expires_at
    fresh = await AsyncRoleThread.get(thread.id)
    assert (fresh.expires_at, fresh.ttl, fresh.version) == (thread.expires_at, thread.ttl, 2)


async def test_touch_of_a_thread_without_ttl_is_invalid_input(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    before = encoded_snapshot(async_raw)
    with pytest.raises(InvalidInputError):
        await thread.touch()
    assert encoded_snapshot(async_raw) == before


async def test_expires_at_is_stored_as_given() -> None:
    when = datetime.datetime(2100, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)
    thread = await AsyncRoleThread.create(expires_at=when)
    assert thread.expires_at == when
    assert (await AsyncRoleThread.get(thread.id)).expires_at == when


# -- bad input ----------------------------------------------------------------------------------


@dataclass
class Seeded:
    """A stored thread with a role, metadata, a message with an image and one without."""

    thread: AsyncRoleThread
    first_id: str
    last_id: str
    schema: V1RoleThread


@pytest_asyncio.fixture
async def seeded(async_store: AsyncThreadStore) -> Seeded:
    thread = await AsyncRoleThread.create(
        owner_id="owner", name="n", metadata={"a": 1}, role_mapping={"assistant": role()}
    )
    first = await thread.post("user", "hello", images=[URL])
    last = await thread.post("assistant", "plain")
    return Seeded(thread, first.id, last.id, await thread.to_v1())


Call = Callable[[Seeded], object]


def edit_metadata_in_place_and_save(key: str, value: object) -> Call:
    async def call(s: Seeded) -> None:
        assert s.thread.metadata is not None
        s.thread.metadata[key] = value
        await s.thread.save()

    return call


def v1_copy(s: Seeded, **changes: Any) -> V1RoleThread:
    return s.schema.model_copy(update=changes)


create = AsyncRoleThread.create
find = AsyncRoleThread.find
find_messages = AsyncRoleThread.find_messages
from_openai = AsyncRoleThread.from_openai
from_v1 = AsyncRoleThread.from_v1

INVALID_CALLS = [
    # creating a thread
    pytest.param(lambda s: create(owner_id=5), id="new-thread-int-owner"),
    pytest.param(lambda s: create(public="yes"), id="new-thread-str-public"),
    pytest.param(lambda s: create(public=1), id="new-thread-int-public"),
    pytest.param(lambda s: create(name=3), id="new-thread-int-name"),
    pytest.param(lambda s: create(metadata="a=1"), id="new-thread-str-metadata"),
    pytest.param(lambda s: create(metadata={"$set": 1}), id="new-thread-dollar-key"),
    pytest.param(lambda s: create(metadata={"a.b": 1}), id="new-thread-dotted-key"),
    pytest.param(lambda s: create(metadata={"a": {"$gt": 1}}), id="new-thread-nested-key"),
    pytest.param(lambda s: create(metadata={"s": {1, 2}}), id="new-thread-set-value"),
    pytest.param(lambda s: create(metadata={"o": object()}), id="new-thread-object-value"),
    pytest.param(lambda s: create(metadata={"n": BIG}), id="new-thread-int-over-64-bits"),
    pytest.param(lambda s: create(role_mapping=[role()]), id="new-thread-role-list"),
    pytest.param(lambda s: create(role_mapping={"a": "bot"}), id="new-thread-role-not-v1"),
    pytest.param(
        lambda s: create(role_mapping={"critic": role("assistant")}),
        id="new-thread-role-key-differs",
    ),
    pytest.param(lambda s: create(ttl=5), id="new-thread-int-ttl"),
    pytest.param(
        lambda s: create(expires_at=datetime.datetime(2100, 1, 1)), id="new-thread-naive-expiry"
    ),
    # posting
    pytest.param(lambda s: s.thread.post("", "x"), id="post-empty-role"),
    pytest.param(lambda s: s.thread.post("   ", "x"), id="post-blank-role"),
    pytest.param(lambda s: s.thread.post(None, "x"), id="post-none-role"),
    pytest.param(lambda s: s.thread.post(5, "x"), id="post-int-role"),
    pytest.param(lambda s: s.thread.post("user", ""), id="post-empty-text"),
    pytest.param(lambda s: s.thread.post("user", None), id="post-none-text"),
    pytest.param(lambda s: s.thread.post("user", 5), id="post-int-text"),
    pytest.param(lambda s: s.thread.post("user", b"bytes"), id="post-bytes-text"),
    pytest.param(lambda s: s.thread.post("user", "x", private="yes"), id="post-str-private"),
    pytest.param(lambda s: s.thread.post("user", "x", metadata={"$inc": 1}), id="post-dollar-key"),
    pytest.param(lambda s: s.thread.post("user", "x", metadata={"a.b": 1}), id="post-dotted-key"),
    pytest.param(lambda s: s.thread.post("user", "x", metadata={"s": {1}}), id="post-set-value"),
    pytest.param(lambda s: s.thread.post("user", "x", metadata={"o": object()}), id="post-object"),
    pytest.param(
        lambda s: s.thread.post("user", "x", metadata={"n": BIG}), id="post-int-over-64-bits"
    ),
    pytest.param(lambda s: s.thread.post("user", "x", metadata=[1]), id="post-list-metadata"),
    # add_msg
    pytest.param(lambda s: s.thread.add_msg({"role": "user", "text": "x"}), id="add-msg-dict"),
    pytest.param(
        lambda s: s.thread.add_msg(RoleMessage(role="user", text="x", thread_id="other")),
        id="add-msg-other-thread",
    ),
    # editing messages
    pytest.param(lambda s: s.thread.update_message(s.first_id), id="update-nothing"),
    pytest.param(lambda s: s.thread.update_message(s.first_id, text=5), id="update-int-text"),
    pytest.param(lambda s: s.thread.update_message(s.last_id, text=""), id="update-empty-text"),
    pytest.param(
        lambda s: s.thread.update_message(s.first_id, metadata={"$x": 1}), id="update-dollar-key"
    ),
    pytest.param(
        lambda s: s.thread.update_message(s.first_id, metadata={"x.y": 1}), id="update-dotted-key"
    ),
    pytest.param(
        lambda s: s.thread.update_message(s.first_id, metadata={"s": {1}}), id="update-set"
    ),
    pytest.param(
        lambda s: s.thread.update_message(s.first_id, metadata={"n": BIG}),
        id="update-int-over-64-bits",
    ),
    pytest.param(
        lambda s: s.thread.update_message(s.first_id, metadata="m"), id="update-str-metadata"
    ),
    pytest.param(
        lambda s: s.thread.update_message(s.first_id, private="no"), id="update-str-private"
    ),
    # roles
    pytest.param(lambda s: s.thread.add_role(role("assistant")), id="add-existing-role"),
    pytest.param(lambda s: s.thread.add_role({"name": "critic"}), id="add-role-dict"),
    pytest.param(lambda s: s.thread.remove_role("missing"), id="remove-missing-role"),
    # setters and save
    pytest.param(lambda s: setattr(s.thread, "name", 5), id="set-int-name"),
    pytest.param(lambda s: setattr(s.thread, "public", "true"), id="set-str-public"),
    pytest.param(lambda s: setattr(s.thread, "metadata", {"a.b": 1}), id="set-dotted-metadata"),
    pytest.param(lambda s: setattr(s.thread, "metadata", {"s": {1}}), id="set-set-metadata"),
    pytest.param(edit_metadata_in_place_and_save("$bad", 1), id="save-dollar-key-in-place"),
    pytest.param(edit_metadata_in_place_and_save("a.b", 1), id="save-dotted-key-in-place"),
    pytest.param(edit_metadata_in_place_and_save("s", {1, 2}), id="save-set-in-place"),
    pytest.param(edit_metadata_in_place_and_save("o", object()), id="save-object-in-place"),
    pytest.param(edit_metadata_in_place_and_save("n", BIG), id="save-int-over-64-bits"),
    # touch, history
    pytest.param(lambda s: s.thread.touch(), id="touch-without-ttl"),
    pytest.param(lambda s: s.thread.touch(5), id="touch-int-ttl"),
    pytest.param(lambda s: s.thread.history(limit=0), id="history-zero-limit"),
    pytest.param(lambda s: s.thread.history(before=5), id="history-int-before"),
    # lookups
    pytest.param(lambda s: AsyncRoleThread.get(5), id="get-int-id"),
    pytest.param(lambda s: AsyncRoleThread.get({"$ne": None}), id="get-operator-id"),
    pytest.param(lambda s: AsyncRoleThread.get(s.thread.id, last=-1), id="get-negative-last"),
    pytest.param(lambda s: find(owner_id={"$ne": None}), id="find-operator"),
    pytest.param(lambda s: find(id={"$exists": True}), id="find-id-operator"),
    pytest.param(lambda s: find(name={"x": 1}), id="find-dict-value"),
    pytest.param(lambda s: find(public=[True]), id="find-list-value"),
    pytest.param(lambda s: find(messages="x"), id="find-unknown-field"),
    pytest.param(lambda s: find(metadata={"a": {"$gt": 0}}), id="find-meta-operator"),
    pytest.param(lambda s: find(metadata={"a": {"b": 1}}), id="find-meta-dict"),
    pytest.param(lambda s: find(metadata={"$where": 1}), id="find-meta-dollar-key"),
    pytest.param(lambda s: find(metadata={}), id="find-meta-empty"),
    pytest.param(lambda s: find(name=BIG), id="find-int-over-64-bits"),
    pytest.param(lambda s: find(limit=0), id="find-zero-limit"),
    pytest.param(lambda s: find(after="not-a-cursor"), id="find-bad-cursor"),
    pytest.param(lambda s: find_messages(role={"$ne": None}), id="message-find-operator"),
    pytest.param(lambda s: find_messages(thread_id={"$exists": True}), id="message-find-thread-op"),
    pytest.param(lambda s: find_messages(private=True), id="message-find-unknown-field"),
    pytest.param(lambda s: find_messages(text=BIG), id="message-find-int-over-64-bits"),
    # imports
    pytest.param(lambda s: from_openai("hello"), id="from-openai-str"),
    pytest.param(lambda s: from_openai({"role": "user"}), id="from-openai-dict"),
    pytest.param(lambda s: from_openai(None), id="from-openai-none"),
    pytest.param(
        lambda s: from_openai([{"role": "user", "content": "ok"}, {"content": "x"}]),
        id="from-openai-no-role",
    ),
    pytest.param(
        lambda s: from_openai([{"role": "", "content": "x"}]), id="from-openai-empty-role"
    ),
    pytest.param(
        lambda s: from_openai([{"role": "user", "content": ""}]), id="from-openai-empty-content"
    ),
    pytest.param(
        lambda s: from_openai([{"role": "user", "content": None}]), id="from-openai-none-content"
    ),
    pytest.param(
        lambda s: from_openai([{"role": "user", "content": "x"}], metadata={"$a": 1}),
        id="from-openai-dollar-metadata",
    ),
    pytest.param(lambda s: from_v1(s.schema.model_dump()), id="from-v1-dict"),
    pytest.param(lambda s: from_v1(s.schema), id="from-v1-existing-id"),
    pytest.param(
        lambda s: from_v1(v1_copy(s, id="new-id", metadata={"a.b": 1})),
        id="from-v1-dotted-metadata",
    ),
    pytest.param(
        lambda s: from_v1(
            v1_copy(
                s,
                id="new-id",
                messages=[V1RoleMessage(id="m", role="user", text="", created=1.0)],
            )
        ),
        id="from-v1-empty-text",
    ),
]


async def outcome(call: Call, seeded: Seeded) -> object:
    """What ``call`` returns; in the async suite, awaited if it is awaitable (a setter is not)."""
    result = call(seeded)
    # synchro: begin async-only
    if inspect.isawaitable(result):
        return await result
    # synchro: end async-only
    return result


@pytest.mark.parametrize("call", INVALID_CALLS)
async def test_invalid_input_raises_and_writes_nothing(
    seeded: Seeded, async_raw: Raw, call: Call
) -> None:
    before = encoded_snapshot(async_raw)
    thread = seeded.thread
    version, messages = thread.version, await thread.messages()
    with pytest.raises(InvalidInputError):
        await outcome(call, seeded)
    assert encoded_snapshot(async_raw) == before
    assert (thread.version, await thread.messages()) == (version, messages)


IMAGE_CALLS = [
    pytest.param(lambda s: s.thread.post("user", "x", images=URL), id="single-url-not-a-list"),
    pytest.param(lambda s: s.thread.post("user", "x", images=[42]), id="int"),
    pytest.param(lambda s: s.thread.post("user", "x", images=[None]), id="none"),
    pytest.param(lambda s: s.thread.post("user", "x", images=[{"url": URL}]), id="dict"),
    pytest.param(
        lambda s: s.thread.post("user", "x", images=["/nonexistent/threadmem/missing.png"]),
        id="missing-file",
    ),
    pytest.param(lambda s: s.thread.post("user", "x", images=["ftp://e.com/a.png"]), id="ftp"),
    pytest.param(
        lambda s: s.thread.post("user", "x", images=["data:image/png;base64,@@@"]),
        id="bad-data-uri",
    ),
    pytest.param(
        lambda s: s.thread.post("user", "x", images=[URL, "data:text"]), id="second-image-bad"
    ),
]


@pytest.mark.parametrize("call", IMAGE_CALLS)
async def test_bad_image_raises_image_format_error_and_writes_nothing(
    seeded: Seeded, async_raw: Raw, call: Call
) -> None:
    before = encoded_snapshot(async_raw)
    with pytest.raises(ImageFormatError):
        await outcome(call, seeded)
    assert encoded_snapshot(async_raw) == before
    assert seeded.thread.version == 2


async def test_message_over_16mb_is_refused_before_sending(seeded: Seeded, async_raw: Raw) -> None:
    before = encoded_snapshot(async_raw)
    with pytest.raises(ThreadTooLargeError) as info:
        await seeded.thread.post("user", "x" * (17 * MB))
    assert info.value.thread_id == seeded.thread.id
    assert info.value.size > info.value.limit == DOCUMENT_BUDGET_BYTES
    assert encoded_snapshot(async_raw) == before
    await seeded.thread.post("user", "still works")
    assert seeded.thread.version == 3


# -- concurrent tasks --------------------------------------------------------------------------

# synchro: begin async-only
CONCURRENT = 20


async def test_concurrent_posts_on_one_object_all_land_once(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    posted = await asyncio.gather(
        *(thread.post("user", f"m{i}", metadata={"i": i}) for i in range(CONCURRENT))
    )
    doc = stored(async_raw, thread)
    assert sorted(m["text"] for m in doc["messages"]) == sorted(f"m{i}" for i in range(CONCURRENT))
    assert len({m["id"] for m in doc["messages"]}) == CONCURRENT
    assert {m.id for m in posted} == {m["id"] for m in doc["messages"]}
    assert doc["version"] == doc["message_count"] == CONCURRENT
    assert thread.version == thread.message_count == CONCURRENT
    assert [m.id for m in await thread.messages()] == [m["id"] for m in doc["messages"]]
    assert doc["size_bytes"] >= len(bson.encode(doc))


async def test_concurrent_posts_through_separate_objects_all_land_once(async_raw: Raw) -> None:
    thread = await AsyncRoleThread.create()
    views = await asyncio.gather(*(AsyncRoleThread.get(thread.id) for _ in range(CONCURRENT)))
    posted = await asyncio.gather(*(view.post("user", f"w{i}") for i, view in enumerate(views)))
    doc = stored(async_raw, thread)
    assert sorted(m["text"] for m in doc["messages"]) == sorted(f"w{i}" for i in range(CONCURRENT))
    assert len({m["id"] for m in doc["messages"]}) == CONCURRENT
    assert {m.id for m in posted} == {m["id"] for m in doc["messages"]}
    assert doc["version"] == doc["message_count"] == CONCURRENT
    for view, message in zip(views, posted, strict=True):
        assert message.id in {m.id for m in await view.messages()}
        assert 1 <= view.version <= CONCURRENT
    await thread.refresh()
    assert thread.version == CONCURRENT
    assert [m.id for m in await thread.messages()] == [m["id"] for m in doc["messages"]]


# synchro: end async-only
