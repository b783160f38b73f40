"""RoleThread and RoleMessage behaviour, on every backend (``store`` is parametrized)."""

from __future__ import annotations

import base64
import copy
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bson
import pytest
from PIL import Image
from pymongo.collection import Collection

from threadmem_mongo import (
    InvalidInputError,
    MessageNotFoundError,
    RoleMessage,
    RoleThread,
    ThreadNotFoundError,
    ThreadStore,
    V1Role,
    V1RoleThread,
    VersionConflictError,
)

Document = dict[str, Any]
Raw = Collection[Document]

URL = "https://example.com/cat.png"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="


def role(name: str = "assistant", user_id: str = "bot-1") -> V1Role:
    return V1Role(name=name, user_id=user_id, user_name="Bot", icon="https://x/icon.png")


def stored(raw: Raw, thread: RoleThread) -> Document:
    doc = raw.find_one({"_id": thread.id})
    assert doc is not None, f"thread {thread.id} is not stored"
    return doc


def encoded_snapshot(raw: Raw) -> list[bytes]:
    """Every stored document, encoded: equal snapshots mean byte-identical documents."""
    return [bson.encode(doc) for doc in raw.find({}, sort=[("_id", 1)])]


def texts(thread: RoleThread, include_private: bool = True) -> list[str]:
    return [m.text for m in thread.messages(include_private)]


@pytest.fixture(autouse=True)
def _on_every_backend(store: ThreadStore) -> None:
    """Every test here runs on each backend, through the default store ``store`` set up."""


# -- creation and the seed flow --------------------------------------------------------------


def test_new_thread_is_stored_at_once_at_version_zero(raw: Raw) -> None:
    thread = RoleThread(
        owner_id="owner-1",
        public=True,
        name="My thread",
        metadata={"purpose": "demo"},
        role_mapping={"assistant": role()},
    )
    assert thread.version == 0
    assert thread.created == thread.updated
    doc = stored(raw, thread)
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


def test_default_thread_fields(raw: Raw) -> None:
    thread = RoleThread()
    assert (thread.owner_id, thread.public, thread.name, thread.metadata) == (
        None,
        False,
        None,
        None,
    )
    assert thread.role_mapping == {}
    assert thread.messages() == []
    assert raw.count_documents({}) == 1


def test_threads_get_distinct_ids(raw: Raw) -> None:
    ids = {RoleThread().id for _ in range(5)}
    assert len(ids) == 5
    assert raw.count_documents({}) == 5


def test_seed_flow_posts_messages_and_exports_openai(raw: Raw) -> None:
    thread = RoleThread(owner_id="random123")
    thread.post(role="user", msg="Hey there!")
    thread.post(role="assistant", msg="How can I help?")
    thread.post(role="user", msg="Whats in this image?", images=[URL])
    thread.post(role="moderator", msg="This conversation is fine")

    messages = thread.messages()
    assert [(m.role, m.text, m.images) for m in messages] == [
        ("user", "Hey there!", []),
        ("assistant", "How can I help?", []),
        ("user", "Whats in this image?", [URL]),
        ("moderator", "This conversation is fine", []),
    ]
    assert {m.thread_id for m in messages} == {thread.id}
    assert len({m.id for m in messages}) == 4
    assert thread.version == 4
    assert thread.to_openai() == {
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

    doc = stored(raw, thread)
    assert doc["version"] == 4
    assert doc["message_count"] == 4
    assert [m["text"] for m in doc["messages"]] == texts(thread)


def test_get_returns_what_was_stored(store: ThreadStore) -> None:
    thread = RoleThread(owner_id="o", name="n", metadata={"k": [1, 2]}, public=True)
    thread.add_role(role())
    thread.post("user", "Hey there!", metadata={"m": 1})
    thread.post("assistant", "Hi", images=[URL, DATA_URI], private=True)

    fresh = RoleThread.get(thread.id)
    assert fresh is not thread
    assert fresh.id == thread.id
    assert (fresh.owner_id, fresh.public, fresh.name, fresh.metadata) == (
        "o",
        True,
        "n",
        {"k": [1, 2]},
    )
    assert fresh.role_mapping == {"assistant": role()}
    assert fresh.messages() == thread.messages()
    assert fresh.version == thread.version == 3
    assert fresh.created == thread.created
    assert fresh.updated == thread.updated
    assert fresh.store.collection.full_name == store.collection.full_name
    via_store = RoleThread.get(thread.id, store=store)
    assert via_store.messages() == thread.messages()


def test_get_of_unknown_id_raises_thread_not_found() -> None:
    with pytest.raises(ThreadNotFoundError) as info:
        RoleThread.get("no-such-thread")
    assert info.value.thread_id == "no-such-thread"


def test_repr_names_the_thread() -> None:
    thread = RoleThread(owner_id="o", name="n")
    thread.post("user", "x")
    assert repr(thread) == (
        f"RoleThread(id={thread.id!r}, owner_id='o', name='n', public=False, messages=1, version=1)"
    )


def test_stored_message_repr_matches_the_original_format() -> None:
    thread = RoleThread()
    message = thread.post("user", "Hey there!")
    assert repr(message) == (
        f"RoleMessage(role='user', text='Hey there!', thread_id='{thread.id}', images=[], "
        f"private=False, created={message.created!r}, id='{message.id}', metadata=None)"
    )


# -- posting -----------------------------------------------------------------------------------


def test_post_returns_the_stored_message(raw: Raw) -> None:
    thread = RoleThread()
    message = thread.post("user", "hello", images=[URL], private=True, metadata={"lang": "en"})
    assert isinstance(message, RoleMessage)
    assert message.thread_id == thread.id
    assert (message.role, message.text, message.images) == ("user", "hello", [URL])
    assert message.private is True
    assert message.metadata == {"lang": "en"}
    assert stored(raw, thread)["messages"] == [
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


def test_post_with_only_images_and_empty_text_is_allowed(raw: Raw) -> None:
    thread = RoleThread()
    message = thread.post("user", "", images=[URL])
    assert message.text == ""
    assert stored(raw, thread)["messages"][0]["images"] == [URL]


def test_posted_images_from_bytes_are_stored_as_data_uris(raw: Raw) -> None:
    thread = RoleThread()
    message = thread.post("user", "pic", images=[b"\x89PNG\r\n\x1a\nrest"])
    assert message.images[0].startswith("data:image/png;base64,")
    assert stored(raw, thread)["messages"][0]["images"] == message.images


def test_posted_image_file_is_stored_as_a_data_uri(raw: Raw, tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2), (0, 128, 255)).save(path)
    thread = RoleThread()
    message = thread.post("user", "file", images=[path, str(path), URL])
    uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    assert message.images == [uri, uri, URL]
    assert stored(raw, thread)["messages"][0]["images"] == [uri, uri, URL]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
def test_posted_pil_image_is_stored_as_a_data_uri(raw: Raw, mode: str) -> None:
    thread = RoleThread()
    message = thread.post("user", "pil", images=[Image.new(mode, (3, 2))])
    (uri,) = message.images
    assert uri.startswith("data:image/")
    payload = base64.b64decode(uri.split(",", 1)[1])
    assert Image.open(io.BytesIO(payload)).size == (3, 2)
    assert stored(raw, thread)["messages"][0]["images"] == [uri]


def test_versions_rise_by_exactly_one_per_landed_change(raw: Raw) -> None:
    thread = RoleThread(metadata={"n": 0})
    message_ids: list[str] = []

    def post() -> None:
        message_ids.append(thread.post("user", "hi", images=[URL]).id)

    def save() -> None:
        thread.name = f"name-{thread.version}"
        thread.save()

    steps: list[Callable[[], object]] = [
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
    ]
    for expected, step in enumerate(steps, start=1):
        before = thread.updated
        step()
        assert thread.version == expected
        doc = stored(raw, thread)
        assert doc["version"] == expected
        assert doc["updated"] == thread.updated >= before
        assert doc["message_count"] == len(doc["messages"]) == len(thread.messages())
    assert RoleThread.get(thread.id).version == len(steps)


def test_size_estimate_tracks_the_stored_document(raw: Raw) -> None:
    thread = RoleThread(metadata={"a": "x" * 50})
    ids = [thread.post("user", "m" * (i * 40), images=[URL] * i).id for i in range(1, 6)]
    thread.update_message(ids[0], text="short")
    thread.update_message(ids[1], text="much longer " * 30, metadata={"k": list(range(20))})
    thread.delete_message(ids[2])
    thread.metadata = {"b": "y" * 500}
    thread.save()
    thread.add_role(role())
    thread.add_role(role("critic"))
    thread.remove_role("assistant")
    thread.remove_images()
    other = RoleThread.get(thread.id)  # reads the size, and the last edit's record, back
    other.update_message(ids[3], text="edited by another object")
    other.delete_message(ids[4])
    doc = stored(raw, thread)
    actual = len(bson.encode(doc))
    # Never under the real size, and off by no more than the per-element slack.
    assert actual <= doc["size_bytes"] <= actual + 12 * (len(doc["messages"]) + 3)


# -- reading messages ---------------------------------------------------------------------------


def test_private_messages_are_left_out_only_when_asked() -> None:
    thread = RoleThread()
    thread.post("user", "public one")
    thread.post("assistant", "secret", private=True)
    thread.post("user", "public two")
    assert texts(thread) == ["public one", "secret", "public two"]
    assert texts(thread, include_private=False) == ["public one", "public two"]
    assert thread.to_openai(include_private=False) == {
        "messages": [
            {"role": "user", "content": "public one"},
            {"role": "user", "content": "public two"},
        ]
    }
    fresh = RoleThread.get(thread.id)
    assert [m.private for m in fresh.messages()] == [False, True, False]


def test_messages_returns_a_new_list_each_call() -> None:
    thread = RoleThread()
    thread.post("user", "a")
    listed = thread.messages()
    listed.clear()
    assert texts(thread) == ["a"]


def test_to_openai_places_images_at_placeholders() -> None:
    thread = RoleThread()
    thread.post("user", "Compare <image> with <image>", images=[URL, DATA_URI])
    assert thread.to_openai() == {
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


def test_post_with_placeholder_count_mismatch_is_refused_and_writes_nothing(raw: Raw) -> None:
    thread = RoleThread()
    before = raw.find_one({"_id": thread.id})
    with pytest.raises(InvalidInputError, match="placeholder"):
        thread.post("user", "one <image> two <image>", images=[URL])
    assert raw.find_one({"_id": thread.id}) == before
    assert thread.to_openai() == {"messages": []}


# -- editing messages --------------------------------------------------------------------------


def test_update_message_changes_text_metadata_and_privacy(raw: Raw) -> None:
    thread = RoleThread()
    first = thread.post("user", "before", metadata={"old": True})
    second = thread.post("assistant", "untouched")

    updated = thread.update_message(first.id, text="after")
    assert updated.text == "after"
    assert (updated.id, updated.created, updated.metadata) == (
        first.id,
        first.created,
        {"old": True},
    )
    updated = thread.update_message(first.id, metadata={"new": 1}, private=True)
    assert (updated.text, updated.metadata, updated.private) == ("after", {"new": 1}, True)
    assert thread.messages() == [updated, second]
    assert thread.version == 4

    doc = stored(raw, thread)
    assert doc["messages"][0] == {
        "id": first.id,
        "role": "user",
        "text": "after",
        "images": [],
        "private": True,
        "created": first.created,
        "metadata": {"new": 1},
    }
    assert doc["messages"][1]["text"] == "untouched"
    assert RoleThread.get(thread.id).messages() == [updated, second]


def test_update_message_can_make_a_message_public_again() -> None:
    thread = RoleThread()
    message = thread.post("user", "x", private=True)
    thread.update_message(message.id, private=False)
    assert RoleThread.get(thread.id).messages(include_private=False)[0].id == message.id


def test_update_message_of_unknown_id_raises_message_not_found(raw: Raw) -> None:
    thread = RoleThread()
    thread.post("user", "x")
    before = encoded_snapshot(raw)
    with pytest.raises(MessageNotFoundError) as info:
        thread.update_message("missing", text="y")
    assert (info.value.thread_id, info.value.message_id) == (thread.id, "missing")
    assert isinstance(info.value, LookupError)
    assert encoded_snapshot(raw) == before
    assert thread.version == 1


def test_delete_message_removes_it(raw: Raw) -> None:
    thread = RoleThread()
    first = thread.post("user", "a")
    second = thread.post("user", "b")
    third = thread.post("user", "c")
    thread.delete_message(second.id)
    assert thread.messages() == [first, third]
    assert thread.version == 4
    doc = stored(raw, thread)
    assert [m["id"] for m in doc["messages"]] == [first.id, third.id]
    assert doc["message_count"] == 2
    assert RoleThread.get(thread.id).messages() == [first, third]


def test_delete_message_of_unknown_id_raises_message_not_found(raw: Raw) -> None:
    thread = RoleThread()
    thread.post("user", "x")
    before = encoded_snapshot(raw)
    with pytest.raises(MessageNotFoundError):
        thread.delete_message("missing")
    assert encoded_snapshot(raw) == before


def test_message_deleted_twice_raises_message_not_found() -> None:
    thread = RoleThread()
    message = thread.post("user", "x")
    thread.delete_message(message.id)
    with pytest.raises(MessageNotFoundError):
        thread.delete_message(message.id)


def test_remove_images_strips_images_from_user_messages_only(raw: Raw) -> None:
    thread = RoleThread()
    thread.post("user", "look <image>", images=[URL])
    thread.post("assistant", "my drawing", images=[URL])
    thread.post("user", "", images=[DATA_URI, URL])
    thread.post("user", "no images")
    thread.remove_images()
    expected = [
        ("user", "look", []),
        ("assistant", "my drawing", [URL]),
        ("user", "[image removed]", []),
        ("user", "no images", []),
    ]
    assert [(m.role, m.text, m.images) for m in thread.messages()] == expected
    assert thread.version == 5
    fresh = RoleThread.get(thread.id)
    assert [(m.role, m.text, m.images) for m in fresh.messages()] == expected
    assert [(m["role"], m["text"], m["images"]) for m in stored(raw, thread)["messages"]] == [
        ("user", "look", []),
        ("assistant", "my drawing", [URL]),
        ("user", "[image removed]", []),
        ("user", "no images", []),
    ]


def test_remove_images_without_user_images_writes_nothing(raw: Raw) -> None:
    thread = RoleThread()
    thread.post("user", "text only")
    thread.post("assistant", "drawing", images=[URL])
    before = encoded_snapshot(raw)
    thread.remove_images()
    assert encoded_snapshot(raw) == before
    assert thread.version == 2


# -- add_msg -----------------------------------------------------------------------------------


def test_add_msg_keeps_the_message_id_and_sets_the_thread(raw: Raw) -> None:
    thread = RoleThread()
    message = RoleMessage(role="user", text="from elsewhere", metadata={"src": "import"})
    added = thread.add_msg(message)
    assert added.id == message.id
    assert added.thread_id == thread.id
    assert thread.version == 1
    assert stored(raw, thread)["messages"][0]["id"] == message.id


def test_add_msg_retry_of_a_landed_post_writes_nothing(raw: Raw) -> None:
    thread = RoleThread()
    message = thread.post("user", "once")
    before = encoded_snapshot(raw)
    assert thread.add_msg(message) == message
    assert encoded_snapshot(raw) == before
    assert thread.version == 1
    assert thread.messages() == [message]
    doc = stored(raw, thread)
    assert [m["id"] for m in doc["messages"]] == [message.id]
    assert doc["message_count"] == 1


def test_add_msg_retry_from_another_object_writes_nothing_and_catches_up(raw: Raw) -> None:
    thread = RoleThread()
    other = RoleThread.get(thread.id)
    message = thread.post("user", "once")
    before = encoded_snapshot(raw)
    other.add_msg(message)
    assert encoded_snapshot(raw) == before
    assert other.messages() == [message]
    assert other.version == 1


def test_add_msg_of_a_message_without_thread_lands_once_when_retried(raw: Raw) -> None:
    thread = RoleThread()
    message = RoleMessage(role="user", text="retry me")
    thread.add_msg(message)
    thread.add_msg(message)
    assert [m.id for m in thread.messages()] == [message.id]
    assert stored(raw, thread)["message_count"] == 1
    assert thread.version == 1


# -- roles -------------------------------------------------------------------------------------


def test_add_role_and_remove_role_persist(raw: Raw) -> None:
    thread = RoleThread()
    thread.add_role(role("assistant"))
    thread.add_role(role("critic", "bot-2"))
    assert set(thread.role_mapping) == {"assistant", "critic"}
    assert [r["name"] for r in stored(raw, thread)["roles"]] == ["assistant", "critic"]
    thread.remove_role("assistant")
    assert thread.role_mapping == {"critic": role("critic", "bot-2")}
    assert stored(raw, thread)["roles"] == [role("critic", "bot-2").model_dump()]
    assert RoleThread.get(thread.id).role_mapping == {"critic": role("critic", "bot-2")}
    assert thread.version == 3


def test_role_mapping_is_a_copy() -> None:
    thread = RoleThread(role_mapping={"assistant": role()})
    thread.role_mapping.pop("assistant")
    assert set(thread.role_mapping) == {"assistant"}


def test_role_names_with_dots_and_dollars_are_data(raw: Raw) -> None:
    thread = RoleThread()
    thread.add_role(role("a.b"))
    thread.add_role(role("$x"))
    thread.remove_role("a.b")
    assert [r["name"] for r in stored(raw, thread)["roles"]] == ["$x"]


# -- save and refresh --------------------------------------------------------------------------


def test_save_persists_public_name_and_metadata(raw: Raw) -> None:
    thread = RoleThread(owner_id="o")
    thread.public = True
    thread.name = "renamed"
    thread.metadata = {"topic": "cats", "tags": ["a", "b"]}
    thread.save()
    assert thread.version == 1
    doc = stored(raw, thread)
    assert (doc["public"], doc["name"], doc["metadata"]) == (
        True,
        "renamed",
        {"topic": "cats", "tags": ["a", "b"]},
    )
    assert doc["owner_id"] == "o"
    fresh = RoleThread.get(thread.id)
    assert (fresh.public, fresh.name, fresh.metadata) == (
        True,
        "renamed",
        {"topic": "cats", "tags": ["a", "b"]},
    )


def test_save_persists_metadata_edited_in_place(raw: Raw) -> None:
    thread = RoleThread(metadata={"count": 1})
    assert thread.metadata is not None
    thread.metadata["count"] = 2
    thread.save()
    assert stored(raw, thread)["metadata"] == {"count": 2}
    assert thread.version == 1


def test_save_without_changes_writes_nothing(raw: Raw) -> None:
    thread = RoleThread(name="n", metadata={"a": 1})
    before = encoded_snapshot(raw)
    thread.save()
    thread.name = "n"
    thread.metadata = {"a": 1}
    thread.save()
    assert encoded_snapshot(raw) == before
    assert thread.version == 0


def test_save_can_clear_name_and_metadata(raw: Raw) -> None:
    thread = RoleThread(name="n", metadata={"a": 1})
    thread.name = None
    thread.metadata = None
    thread.save()
    doc = stored(raw, thread)
    assert (doc["name"], doc["metadata"]) == (None, None)


def test_metadata_given_is_copied_not_aliased(raw: Raw) -> None:
    given = {"a": [1]}
    thread = RoleThread(metadata=given)
    given["a"].append(2)
    thread.save()
    assert stored(raw, thread)["metadata"] == {"a": [1]}
    assert thread.version == 0


def test_refresh_drops_unsaved_edits_and_reads_others_changes() -> None:
    thread = RoleThread(name="original")
    other = RoleThread.get(thread.id)
    other.post("user", "from other")
    other.add_role(role())
    thread.name = "unsaved"
    thread.refresh()
    assert thread.name == "original"
    assert texts(thread) == ["from other"]
    assert set(thread.role_mapping) == {"assistant"}
    assert thread.version == 2


# -- delete ------------------------------------------------------------------------------------


def test_delete_removes_the_thread(raw: Raw) -> None:
    keep = RoleThread()
    thread = RoleThread()
    thread.post("user", "x")
    thread.delete()
    assert raw.find_one({"_id": thread.id}) is None
    assert raw.find_one({"_id": keep.id}) is not None
    with pytest.raises(ThreadNotFoundError):
        RoleThread.get(thread.id)


def test_deleted_thread_refuses_changes_with_thread_not_found(raw: Raw) -> None:
    thread = RoleThread()
    message = thread.post("user", "x")
    RoleThread.get(thread.id).delete()
    with pytest.raises(ThreadNotFoundError):
        thread.post("user", "y")
    with pytest.raises(ThreadNotFoundError):
        thread.add_msg(RoleMessage(role="user", text="z"))
    thread.name = "changed"
    with pytest.raises(ThreadNotFoundError):
        thread.save()
    with pytest.raises(ThreadNotFoundError):
        thread.update_message(message.id, text="new")
    with pytest.raises(ThreadNotFoundError):
        thread.delete_message(message.id)
    with pytest.raises(ThreadNotFoundError):
        thread.add_role(role())
    with pytest.raises(ThreadNotFoundError):
        thread.refresh()
    with pytest.raises(ThreadNotFoundError):
        thread.delete()
    assert raw.count_documents({}) == 0


# -- copy --------------------------------------------------------------------------------------


def test_copy_is_a_new_stored_thread_with_new_message_ids(raw: Raw) -> None:
    thread = RoleThread(
        owner_id="o",
        public=True,
        name="n",
        metadata={"k": {"nested": 1}},
        role_mapping={"assistant": role()},
    )
    originals = [thread.post("user", "a", images=[URL]), thread.post("assistant", "b")]
    clone = thread.copy()
    assert clone.id != thread.id
    assert clone.version == 0
    assert (clone.owner_id, clone.public, clone.name, clone.metadata) == (
        "o",
        True,
        "n",
        {"k": {"nested": 1}},
    )
    assert clone.role_mapping == thread.role_mapping
    copies = clone.messages()
    assert [(m.role, m.text, m.images, m.created) for m in copies] == [
        (m.role, m.text, m.images, m.created) for m in originals
    ]
    assert {m.thread_id for m in copies} == {clone.id}
    assert not {m.id for m in copies} & {m.id for m in originals}
    assert raw.count_documents({}) == 2
    assert stored(raw, clone)["message_count"] == 2
    assert RoleThread.get(clone.id).messages() == copies


def test_copy_is_independent_of_the_original(raw: Raw) -> None:
    thread = RoleThread(metadata={"k": [1]})
    message = thread.post("user", "a")
    clone = thread.copy()
    assert clone.metadata is not None
    clone.metadata["k"].append(2)
    clone.save()
    clone.post("user", "only in clone")
    clone.update_message(clone.messages()[0].id, text="edited in clone")
    thread.post("user", "only in original")
    assert texts(thread) == ["a", "only in original"]
    assert texts(clone) == ["edited in clone", "only in clone"]
    assert stored(raw, thread)["metadata"] == {"k": [1]}
    assert RoleThread.get(thread.id).messages()[0] == message
    assert RoleMessage.find(id=message.id) == [message]


# -- find --------------------------------------------------------------------------------------


def test_find_by_fields_returns_matches_oldest_first() -> None:
    first = RoleThread(owner_id="alice", public=True, name="a")
    RoleThread(owner_id="bob", public=True, name="b")
    third = RoleThread(owner_id="alice", public=False, name="c")
    fourth = RoleThread(owner_id="alice", public=True, name="d")

    assert [t.id for t in RoleThread.find(owner_id="alice")] == [first.id, third.id, fourth.id]
    assert [t.id for t in RoleThread.find(owner_id="alice", public=True)] == [
        first.id,
        fourth.id,
    ]
    assert [t.id for t in RoleThread.find(name="c")] == [third.id]
    assert [t.id for t in RoleThread.find(id=fourth.id)] == [fourth.id]
    assert RoleThread.find(owner_id="carol") == []
    assert len(RoleThread.find()) == 4


def test_find_oldest_first_ignores_insertion_order(store: ThreadStore) -> None:
    # from_v1 keeps the given created time, so a thread stored later can be older.
    newer = RoleThread(owner_id="o")
    older = RoleThread.from_v1(
        V1RoleThread(
            id="older-thread",
            owner_id="o",
            public=False,
            messages=[],
            created=newer.created - 100,
            updated=newer.created - 100,
        )
    )
    assert [t.id for t in RoleThread.find(owner_id="o")] == [older.id, newer.id]


def test_find_owner_none_matches_threads_without_owner() -> None:
    ownerless = RoleThread()
    RoleThread(owner_id="x")
    assert [t.id for t in RoleThread.find(owner_id=None)] == [ownerless.id]


def test_find_by_metadata_requires_every_entry() -> None:
    both = RoleThread(metadata={"team": "red", "level": 2, "extra": True})
    RoleThread(metadata={"team": "red", "level": 3})
    RoleThread(metadata={"team": "blue", "level": 2})
    RoleThread()
    assert [t.id for t in RoleThread.find(metadata={"team": "red", "level": 2})] == [both.id]
    assert len(RoleThread.find(metadata={"team": "red"})) == 2
    assert RoleThread.find(metadata={"team": "green"}) == []


def test_find_returns_full_threads(store: ThreadStore) -> None:
    thread = RoleThread(owner_id="o", role_mapping={"assistant": role()})
    thread.post("user", "x")
    (found,) = RoleThread.find(owner_id="o", store=store)
    assert found.messages() == thread.messages()
    assert found.role_mapping == thread.role_mapping
    assert found.version == 1
    found.post("assistant", "y")
    assert found.version == 2


# -- RoleMessage.find --------------------------------------------------------------------------


def test_role_message_find_returns_only_matches_across_threads(store: ThreadStore) -> None:
    one = RoleThread()
    two = RoleThread()
    a = one.post("user", "hello")
    one.post("assistant", "hi")
    b = two.post("user", "hello", images=[URL])
    c = two.post("user", "bye", private=True, metadata={"m": 1})
    two.post("assistant", "hello")

    assert RoleMessage.find(role="user") == [a, b, c]
    assert RoleMessage.find(role="user", text="hello") == [a, b]
    assert RoleMessage.find(thread_id=two.id, role="user") == [b, c]
    assert RoleMessage.find(id=c.id) == [c]
    assert RoleMessage.find(id=c.id, store=store) == [c]
    assert RoleMessage.find(text="nothing like this") == []
    assert RoleMessage.find(thread_id="no-such-thread") == []
    assert len(RoleMessage.find()) == 5
    assert [m.thread_id for m in RoleMessage.find(text="hello")] == [one.id, two.id, two.id]


def test_role_message_find_orders_by_thread_creation_then_position() -> None:
    newer = RoleThread()
    older = RoleThread.from_v1(
        V1RoleThread(id="older", public=False, messages=[], created=newer.created - 5, updated=0.0)
    )
    n1 = newer.post("user", "same")
    o1 = older.post("user", "same")
    o2 = older.post("user", "same")
    assert RoleMessage.find(text="same") == [o1, o2, n1]


def test_role_message_find_does_not_see_deleted_messages() -> None:
    thread = RoleThread()
    message = thread.post("user", "short-lived")
    thread.delete_message(message.id)
    assert RoleMessage.find(id=message.id) == []


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


def test_from_openai_to_openai_round_trip(raw: Raw) -> None:
    thread = RoleThread.from_openai(
        copy.deepcopy(OPENAI_MESSAGES), owner_id="o", name="imported", metadata={"src": "oai"}
    )
    assert thread.to_openai() == {"messages": OPENAI_MESSAGES}
    assert thread.version == 0
    assert (thread.owner_id, thread.name, thread.metadata) == ("o", "imported", {"src": "oai"})
    fresh = RoleThread.get(thread.id)
    assert fresh.to_openai() == {"messages": OPENAI_MESSAGES}
    doc = stored(raw, thread)
    assert doc["message_count"] == 4
    assert doc["messages"][2]["images"] == [URL, DATA_URI]
    assert doc["messages"][2]["text"] == "What is <image> and <image>"


def test_to_openai_from_openai_round_trip_of_a_posted_thread() -> None:
    thread = RoleThread()
    thread.post("user", "Hey there!")
    thread.post("user", "What is <image>", images=[URL])
    thread.post("assistant", "A cat")
    exported = thread.to_openai()
    again = RoleThread.from_openai(exported["messages"])
    assert again.id != thread.id
    assert again.to_openai() == exported


def test_from_openai_of_no_messages_is_an_empty_thread(raw: Raw) -> None:
    thread = RoleThread.from_openai([])
    assert thread.messages() == []
    assert stored(raw, thread)["message_count"] == 0


def test_to_v1_from_v1_round_trip(store: ThreadStore, raw: Raw) -> None:
    thread = RoleThread(
        owner_id="o", public=True, name="n", metadata={"k": 1}, role_mapping={"assistant": role()}
    )
    thread.post("user", "hello", images=[URL], metadata={"m": [1]})
    thread.post("assistant", "hi", private=True)
    schema = thread.to_v1()
    assert isinstance(schema, V1RoleThread)
    assert schema.version == "2"
    assert schema.id == thread.id
    assert [m.id for m in schema.messages] == [m.id for m in thread.messages()]
    assert {m.thread_id for m in schema.messages} == {thread.id}

    thread.delete()
    restored = RoleThread.from_v1(schema)
    assert restored.id == thread.id
    assert restored.version == 0
    again = restored.to_v1()
    assert again.model_dump(exclude={"version"}) == schema.model_dump(exclude={"version"})
    assert RoleThread.get(thread.id).messages() == restored.messages()
    assert stored(raw, restored)["message_count"] == 2


def test_from_v1_into_another_store_keeps_ids(
    store: ThreadStore, store_factory: Callable[[Any], ThreadStore]
) -> None:
    thread = RoleThread(name="n")
    message = thread.post("user", "x")
    other = store_factory(store.collection.database.client)
    restored = RoleThread.from_v1(thread.to_v1(), store=other)
    assert restored.store is other
    assert RoleThread.get(thread.id, store=other).messages() == [message]
    assert RoleMessage.find(id=message.id, store=other) == [message]


def test_from_v1_with_private_none_stores_public_messages(raw: Raw) -> None:
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
    thread = RoleThread.from_v1(schema)
    assert thread.messages()[0].private is False
    assert stored(raw, thread)["messages"][0]["private"] is False
    assert (thread.created, thread.updated) == (1.0, 2.0)


# -- two objects on one thread: conflicts ------------------------------------------------------


def two_views(**fields: Any) -> tuple[RoleThread, RoleThread]:
    thread = RoleThread(**fields)
    return thread, RoleThread.get(thread.id)


def test_appends_from_two_objects_never_conflict(raw: Raw) -> None:
    mine, theirs = two_views()
    mine.post("user", "1")
    theirs.post("user", "2")
    mine.post("user", "3")
    assert texts(mine) == ["1", "2", "3"]
    assert mine.version == 3
    assert [m["text"] for m in stored(raw, mine)["messages"]] == ["1", "2", "3"]


def test_post_on_an_object_that_missed_others_posts_picks_them_up() -> None:
    mine, theirs = two_views()
    theirs.post("user", "a")
    theirs.post("assistant", "b")
    theirs.name = "renamed"
    theirs.save()
    mine.post("user", "c")
    assert texts(mine) == ["a", "b", "c"]
    assert mine.name == "renamed"
    assert mine.version == 4


def test_stale_save_raises_version_conflict_and_writes_nothing(raw: Raw) -> None:
    mine, theirs = two_views(name="start")
    theirs.post("user", "x")
    before = encoded_snapshot(raw)
    mine.name = "mine"
    with pytest.raises(VersionConflictError) as info:
        mine.save()
    assert (info.value.thread_id, info.value.expected_version, info.value.actual_version) == (
        mine.id,
        0,
        1,
    )
    assert encoded_snapshot(raw) == before
    assert mine.version == 0
    mine.refresh()
    mine.name = "mine"
    mine.save()
    assert stored(raw, mine)["name"] == "mine"
    assert mine.version == 2


def test_stale_update_message_raises_version_conflict_and_writes_nothing(raw: Raw) -> None:
    mine, _ = two_views()
    message = mine.post("user", "original")
    theirs = RoleThread.get(mine.id)
    theirs.update_message(message.id, text="theirs")
    theirs.post("user", "more")
    before = encoded_snapshot(raw)
    with pytest.raises(VersionConflictError) as info:
        mine.update_message(message.id, text="mine")
    assert (info.value.expected_version, info.value.actual_version) == (1, 3)
    assert encoded_snapshot(raw) == before
    assert mine.messages()[0].text == "original"
    mine.refresh()
    mine.update_message(message.id, text="mine")
    assert stored(raw, mine)["messages"][0]["text"] == "mine"


def test_stale_delete_message_raises_version_conflict_and_writes_nothing(raw: Raw) -> None:
    mine = RoleThread()
    message = mine.post("user", "x")
    theirs = RoleThread.get(mine.id)
    theirs.post("user", "y")
    before = encoded_snapshot(raw)
    with pytest.raises(VersionConflictError) as info:
        mine.delete_message(message.id)
    assert (info.value.expected_version, info.value.actual_version) == (1, 2)
    assert encoded_snapshot(raw) == before
    assert [m.id for m in mine.messages()] == [message.id]
    mine.refresh()
    mine.delete_message(message.id)
    assert [m["text"] for m in stored(raw, mine)["messages"]] == ["y"]


def test_delete_of_a_message_others_deleted_raises_version_conflict(raw: Raw) -> None:
    mine = RoleThread()
    message = mine.post("user", "x")
    theirs = RoleThread.get(mine.id)
    theirs.delete_message(message.id)
    before = encoded_snapshot(raw)
    with pytest.raises(VersionConflictError):
        mine.delete_message(message.id)
    assert encoded_snapshot(raw) == before
    mine.refresh()
    with pytest.raises(MessageNotFoundError):
        mine.delete_message(message.id)


def test_stale_add_role_raises_version_conflict_and_writes_nothing(raw: Raw) -> None:
    mine, theirs = two_views()
    theirs.add_role(role("assistant"))
    before = encoded_snapshot(raw)
    with pytest.raises(VersionConflictError) as info:
        mine.add_role(role("assistant", "someone-else"))
    assert (info.value.expected_version, info.value.actual_version) == (0, 1)
    assert encoded_snapshot(raw) == before
    assert mine.role_mapping == {}
    mine.refresh()
    with pytest.raises(InvalidInputError):
        mine.add_role(role("assistant", "someone-else"))
    mine.add_role(role("critic"))
    assert [r["name"] for r in stored(raw, mine)["roles"]] == ["assistant", "critic"]


def test_stale_remove_role_raises_version_conflict_and_writes_nothing(raw: Raw) -> None:
    mine, theirs = two_views(role_mapping={"assistant": role()})
    theirs.post("user", "x")
    before = encoded_snapshot(raw)
    with pytest.raises(VersionConflictError) as info:
        mine.remove_role("assistant")
    assert (info.value.expected_version, info.value.actual_version) == (0, 1)
    assert encoded_snapshot(raw) == before
    assert set(mine.role_mapping) == {"assistant"}
    mine.refresh()
    mine.remove_role("assistant")
    assert stored(raw, mine)["roles"] == []


def test_stale_remove_images_raises_version_conflict_and_writes_nothing(raw: Raw) -> None:
    mine = RoleThread()
    mine.post("user", "pic", images=[URL])
    theirs = RoleThread.get(mine.id)
    theirs.post("user", "another", images=[URL])
    before = encoded_snapshot(raw)
    with pytest.raises(VersionConflictError):
        mine.remove_images()
    assert encoded_snapshot(raw) == before
    mine.refresh()
    mine.remove_images()
    assert [m["images"] for m in stored(raw, mine)["messages"]] == [[], []]


def test_version_conflict_error_message_tells_what_to_do() -> None:
    mine, theirs = two_views()
    theirs.post("user", "x")
    mine.name = "y"
    with pytest.raises(VersionConflictError, match=r"refresh\(\)"):
        mine.save()


# -- apply -------------------------------------------------------------------------------------


def test_apply_retries_a_change_after_a_version_conflict(raw: Raw) -> None:
    mine, theirs = two_views(metadata={"counter": 0})
    theirs.post("user", "moves the version")
    calls: list[int] = []

    def increment(thread: RoleThread) -> int:
        calls.append(thread.version)
        assert thread.metadata is not None
        thread.metadata = {"counter": thread.metadata["counter"] + 1}
        thread.save()
        return thread.metadata["counter"]

    assert mine.apply(increment) == 1
    assert calls == [0, 1]
    assert stored(raw, mine)["metadata"] == {"counter": 1}
    assert mine.version == 2
    assert texts(mine) == ["moves the version"]


def test_apply_without_conflict_runs_the_change_once() -> None:
    thread = RoleThread()
    calls: list[int] = []

    def rename(t: RoleThread) -> None:
        calls.append(1)
        t.name = "renamed"
        t.save()

    thread.apply(rename)
    assert calls == [1]
    assert RoleThread.get(thread.id).name == "renamed"


def test_apply_gives_up_after_the_given_attempts(raw: Raw) -> None:
    mine = RoleThread()
    theirs = RoleThread.get(mine.id)
    calls: list[int] = []

    def always_beaten(thread: RoleThread) -> None:
        calls.append(thread.version)
        theirs.post("user", f"interfere {len(calls)}")
        thread.name = "never"
        thread.save()

    with pytest.raises(VersionConflictError):
        mine.apply(always_beaten, attempts=3)
    assert calls == [0, 1, 2]
    doc = stored(raw, mine)
    assert doc["name"] is None
    assert doc["version"] == 3


def test_apply_does_not_retry_other_errors() -> None:
    thread = RoleThread()
    calls: list[int] = []

    def broken(t: RoleThread) -> None:
        calls.append(1)
        t.update_message("missing", text="x")

    with pytest.raises(MessageNotFoundError):
        thread.apply(broken)
    assert calls == [1]


@pytest.mark.parametrize("attempts", [0, -1, True, 2.5])
def test_apply_refuses_bad_attempt_counts(attempts: Any) -> None:
    thread = RoleThread()
    with pytest.raises(InvalidInputError):
        thread.apply(lambda t: None, attempts=attempts)
