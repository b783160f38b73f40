"""What travels over the wire, measured with pymongo command monitoring on SecantusDB.

Each test gets a store on a new ``MongoClient`` whose ``CommandListener`` records every
command; the indexes are created before recording starts, so only the operation under
test is counted. Reply sizes are the BSON size of each successful command's reply.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import bson
import pytest
from pymongo import MongoClient
from traffic import Recorder

from threadmem_mongo import RoleThread, ThreadStore, ThreadTooLargeError

pytestmark = pytest.mark.wire

Document = dict[str, Any]
KB = 1024
MB = 1_000_000
FILLER = "The quick brown fox jumps over the lazy dog while the bot answers. "


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def monitored_client(wire_uri: str, recorder: Recorder) -> Iterator[MongoClient[Document]]:
    client: MongoClient[Document] = MongoClient(
        wire_uri, serverSelectionTimeoutMS=5000, event_listeners=[recorder]
    )
    yield client
    client.close()


@pytest.fixture
def monitored_store(
    monitored_client: MongoClient[Document],
    store_factory: Callable[[Any], ThreadStore],
    recorder: Recorder,
) -> ThreadStore:
    """A store on the monitored client, indexes made; recording starts empty.

    Every message stays in the thread document (no overflow pages): these tests measure
    what one document per thread costs; ``test_overflow_traffic.py`` measures pages.
    """
    made = store_factory(monitored_client, max_inline_messages=None)
    made.ensure_indexes()
    recorder.reset()
    return made


def long_thread(store: ThreadStore, count: int, owner_id: str | None = None) -> RoleThread:
    """A stored thread of ``count`` messages of about 100 characters, in one insert."""
    return RoleThread.from_openai(
        [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}: {FILLER}"}
            for i in range(count)
        ],
        owner_id=owner_id,
        store=store,
    )


def thread_bytes(store: ThreadStore, thread_id: str) -> int:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None
    return len(bson.encode(doc))


def first_batch(reply: Document) -> list[Document]:
    return list(reply["cursor"]["firstBatch"])


# -- posts -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_post_to_a_2000_message_thread_is_one_command_with_a_reply_under_2_kb(
    monitored_store: ThreadStore, recorder: Recorder
) -> None:
    whole = long_thread(monitored_store, 2000)
    assert thread_bytes(monitored_store, whole.id) > 250_000

    recorder.reset()
    whole.post("user", "one more")
    assert recorder.commands == ["update"]
    assert recorder.reply_bytes < 2 * KB
    assert len(bson.encode(recorder.sent("update")[0])) < 2 * KB

    partial = RoleThread.get(whole.id, last=20, store=monitored_store)
    recorder.reset()
    partial.post("user", "and one more, from a partial object")
    assert recorder.commands == ["update"]
    assert recorder.reply_bytes < 2 * KB

    doc = monitored_store.collection.find_one({"_id": whole.id}, {"message_count": 1, "version": 1})
    assert doc is not None
    assert (doc["message_count"], doc["version"]) == (2002, 2)


def test_post_of_a_17_mb_message_sends_nothing(
    monitored_store: ThreadStore, recorder: Recorder
) -> None:
    thread = RoleThread(store=monitored_store)
    recorder.reset()

    with pytest.raises(ThreadTooLargeError):
        thread.post("user", "x" * (17 * MB))

    assert recorder.commands == []


def test_post_with_a_large_image_sends_the_blob_apart_from_the_thread_update(
    monitored_store: ThreadStore, recorder: Recorder
) -> None:
    thread = long_thread(monitored_store, 2000)
    image = b"\x89PNG\r\n\x1a\n" + os.urandom(MB)
    uri = "data:image/png;base64," + base64.b64encode(image).decode()
    recorder.reset()

    thread.post("user", "look", images=[uri])

    assert recorder.commands == ["insert"] * 4 + ["insert", "update"]  # 4 chunks, the file
    (update,) = recorder.sent("update")
    assert len(bson.encode(update)) < 2 * KB
    assert recorder.reply_bytes < 2 * KB


# -- conditional changes and touch on a long thread -------------------------------------------


@pytest.mark.slow
def test_edit_delete_and_touch_on_a_partial_2000_message_thread_are_one_command_each(
    monitored_store: ThreadStore, recorder: Recorder
) -> None:
    made = long_thread(monitored_store, 2000)
    partial = RoleThread.get(made.id, last=20, store=monitored_store)
    target = partial.messages()[-1]
    steps: dict[str, Callable[[], object]] = {
        "update_message": lambda: partial.update_message(target.id, text="edited"),
        "delete_message": lambda: partial.delete_message(target.id),
        "touch": lambda: partial.touch(ttl=timedelta(days=1)),
    }
    for step, run in steps.items():
        recorder.reset()
        run()
        assert recorder.commands == ["update"], step
        assert recorder.reply_bytes < 2 * KB, step

    doc = monitored_store.collection.find_one({"_id": made.id}, {"message_count": 1, "version": 1})
    assert doc is not None
    assert (doc["message_count"], doc["version"]) == (1999, 3)


# -- reads -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_get_last_20_is_one_command_whose_reply_holds_20_messages(
    monitored_store: ThreadStore, recorder: Recorder
) -> None:
    made = long_thread(monitored_store, 2000)
    whole_size = thread_bytes(monitored_store, made.id)
    recorder.reset()

    partial = RoleThread.get(made.id, last=20, store=monitored_store)

    assert recorder.commands == ["find"]
    (reply,) = recorder.replies("find")
    (doc,) = first_batch(reply)
    assert len(doc["messages"]) == 20
    assert recorder.reply_bytes < whole_size / 50
    assert [m.text for m in partial.messages()] == [
        f"message {i}: {FILLER}" for i in range(1980, 2000)
    ]


@pytest.mark.slow
def test_history_page_is_one_command_whose_reply_holds_only_that_page(
    monitored_store: ThreadStore, recorder: Recorder
) -> None:
    made = long_thread(monitored_store, 2000)
    whole_size = thread_bytes(monitored_store, made.id)
    partial = RoleThread.get(made.id, last=20, store=monitored_store)
    recorder.reset()

    page = partial.history(before=partial.messages()[0].id, limit=50)

    assert len(page) == 50
    assert recorder.commands == ["aggregate"]
    (reply,) = recorder.replies("aggregate")
    (doc,) = first_batch(reply)
    assert len(doc["page"]) == 50
    assert recorder.reply_bytes < whole_size / 20


@pytest.mark.slow
def test_find_of_50_threads_without_messages_transfers_no_messages(
    monitored_store: ThreadStore, recorder: Recorder
) -> None:
    made = [long_thread(monitored_store, 100, owner_id="lister").id for _ in range(50)]
    messages_size = sum(
        len(bson.encode({"messages": doc["messages"]}))
        for doc in monitored_store.collection.find({"owner_id": "lister"}, {"messages": 1})
    )
    recorder.reset()

    found = RoleThread.find(owner_id="lister", limit=50, last=0, store=monitored_store)

    assert [t.id for t in found] == made
    assert all(t.message_count == 100 and t.messages() == [] for t in found)
    assert recorder.commands == ["find"]
    (reply,) = recorder.replies("find")
    docs = first_batch(reply)
    assert len(docs) == 50
    assert all("messages" not in doc for doc in docs)
    assert recorder.reply_bytes < messages_size / 20
