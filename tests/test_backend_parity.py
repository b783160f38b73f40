"""The same script of operations stores the same documents on mongomock and on the wire.

Like mongomock's own multicollection tests: one script, two backends, equal results once
the values that differ by nature (ids, timestamps) are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mongomock
import pytest

from threadmem_mongo import RoleMessage, RoleThread, ThreadStore, V1Role

pytestmark = pytest.mark.wire

Document = dict[str, Any]

URL = "https://example.com/cat.png"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="
OPENAI_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is"},
            {"type": "image_url", "image_url": {"url": URL}},
        ],
    },
    {"role": "assistant", "content": "A cat."},
]


def role(name: str, user_id: str = "bot-1") -> V1Role:
    return V1Role(name=name, user_id=user_id, user_name="Bot", icon="https://x/icon.png")


def run_script(store: ThreadStore) -> list[str]:
    """Exercise every kind of write; return the ids of the threads it leaves."""
    thread = RoleThread(
        owner_id="owner",
        public=False,
        name="script",
        metadata={"a": 1, "nested": {"list": [1, "x", None, 2.5]}},
        role_mapping={"assistant": role("assistant")},
        store=store,
    )
    first = thread.post("user", "Hey <image>", images=[URL], metadata={"k": "v"})
    second = thread.post("assistant", "Hello", private=True)
    third = thread.post("user", "to delete")
    thread.post("user", "", images=[DATA_URI])
    thread.add_msg(first)  # a retry: writes nothing
    thread.add_msg(RoleMessage(role="tool", text="added"))
    thread.update_message(first.id, text="Hey there <image>", metadata={"edited": True})
    thread.update_message(second.id, private=False)
    thread.delete_message(third.id)
    thread.add_role(role("critic", "bot-2"))
    thread.remove_role("assistant")
    thread.public = True
    thread.metadata = {"a": 2, "b": [True, False]}
    thread.save()
    thread.remove_images()
    clone = thread.copy()
    clone.post("moderator", "in the copy")
    imported = RoleThread.from_openai(OPENAI_MESSAGES, owner_id="owner", store=store)
    return [thread.id, clone.id, imported.id]


def normalized(store: ThreadStore, ids: list[str]) -> list[Document]:
    result = []
    for thread_id in ids:
        doc = store.collection.find_one({"_id": thread_id})
        assert doc is not None
        for key in ("_id", "created", "updated"):
            doc.pop(key)
        for message in doc["messages"]:
            message.pop("id")
            message.pop("created")
        if "last_change" in doc:  # names the messages an edit touched, by id
            doc["last_change"]["ids"] = len(doc["last_change"]["ids"])
        result.append(doc)
    return result


def test_same_script_stores_the_same_documents_on_mongomock_and_wire(
    wire_client: Any, store_factory: Callable[[Any], ThreadStore]
) -> None:
    mock_store = store_factory(mongomock.MongoClient())
    wire_store = store_factory(wire_client)
    mock_docs = normalized(mock_store, run_script(mock_store))
    wire_docs = normalized(wire_store, run_script(wire_store))
    assert mock_docs == wire_docs
    assert [d["version"] for d in wire_docs] == [12, 1, 0]
    assert [d["message_count"] for d in wire_docs] == [4, 5, 3]
    assert [m["text"] for m in wire_docs[0]["messages"]] == [
        "Hey there",
        "Hello",
        "[image removed]",
        "added",
    ]


def test_same_search_results_on_mongomock_and_wire(
    wire_client: Any, store_factory: Callable[[Any], ThreadStore]
) -> None:
    results = []
    for client in (mongomock.MongoClient(), wire_client):
        store = store_factory(client)
        ids = run_script(store)
        position = {thread_id: index for index, thread_id in enumerate(ids)}
        threads = RoleThread.find(owner_id="owner", store=store)
        messages = RoleMessage.find(role="user", store=store)
        results.append(
            (
                [position[t.id] for t in threads],
                [(position[m.thread_id or ""], m.text) for m in messages],
                len(RoleThread.find(metadata={"a": 2}, store=store)),
            )
        )
    assert results[0] == results[1]
    assert results[1][0] == [0, 1, 2]
