"""What only the sync API has, beside the generated behaviour suite (``test_behaviour.py``,
generated from ``test_behaviour_async.py``): a thread stored by calling ``RoleThread``
itself, and ``RoleMessage.find`` (the async API has ``AsyncRoleThread.find_messages``).
On every backend (``store`` is parametrized).
"""

from __future__ import annotations

from typing import Any

import bson
import pytest
from pymongo.collection import Collection

from threadmem_mongo import RoleMessage, RoleThread, ThreadStore, V1Role, V1RoleThread

Document = dict[str, Any]
Raw = Collection[Document]

URL = "https://example.com/cat.png"


def role(name: str = "assistant", user_id: str = "bot-1") -> V1Role:
    return V1Role(name=name, user_id=user_id, user_name="Bot", icon="https://x/icon.png")


def stored(raw: Raw, thread: RoleThread) -> Document:
    doc = raw.find_one({"_id": thread.id})
    assert doc is not None, f"thread {thread.id} is not stored"
    return doc


def without_id_and_clock(doc: Document) -> Document:
    """``doc`` less what differs between two threads made alike: the id and the times."""
    return {key: value for key, value in doc.items() if key not in ("_id", "created", "updated")}


@pytest.fixture(autouse=True)
def _on_every_backend(store: ThreadStore) -> None:
    """Every test here runs on each backend, through the default store ``store`` set up."""


# -- calling the class -------------------------------------------------------------------------


def test_calling_the_class_stores_the_thread_at_once_as_create_does(raw: Raw) -> None:
    fields: dict[str, Any] = {
        "owner_id": "owner-1",
        "public": True,
        "name": "My thread",
        "metadata": {"purpose": "demo"},
        "role_mapping": {"assistant": role()},
    }
    thread = RoleThread(**fields)
    assert thread.version == 0
    assert thread.created == thread.updated
    doc = stored(raw, thread)
    assert (doc["owner_id"], doc["public"], doc["name"], doc["metadata"]) == (
        "owner-1",
        True,
        "My thread",
        {"purpose": "demo"},
    )
    assert doc["roles"] == [role().model_dump()]
    assert (doc["messages"], doc["message_count"], doc["version"]) == ([], 0, 0)
    assert (doc["created"], doc["updated"]) == (thread.created, thread.updated)
    assert doc["size_bytes"] >= len(bson.encode(doc))

    created = stored(raw, RoleThread.create(**fields))
    assert without_id_and_clock(doc) == without_id_and_clock(created)
    assert list(doc) == list(created)


def test_calling_the_class_without_arguments_stores_the_default_fields(raw: Raw) -> None:
    thread = RoleThread()
    assert (thread.owner_id, thread.public, thread.name, thread.metadata) == (
        None,
        False,
        None,
        None,
    )
    assert thread.role_mapping == {}
    assert thread.messages() == []
    assert {RoleThread().id for _ in range(3)} | {thread.id} == {doc["_id"] for doc in raw.find({})}
    assert raw.count_documents({}) == 4
    assert without_id_and_clock(stored(raw, thread)) == without_id_and_clock(
        stored(raw, RoleThread.create())
    )


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
    assert RoleMessage.find(role="user") == RoleThread.find_messages(role="user")


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


def test_role_message_find_searches_the_store_it_is_given(
    store: ThreadStore, store_factory: Any
) -> None:
    thread = RoleThread(name="n")
    message = thread.post("user", "x")
    other = store_factory(store.collection.database.client)
    RoleThread.from_v1(thread.to_v1(), store=other)
    assert RoleMessage.find(id=message.id, store=other) == [message]
    thread.delete()
    assert RoleMessage.find(id=message.id) == []
    assert RoleMessage.find(id=message.id, store=other) == [message]
