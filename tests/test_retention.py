"""Retention: ``ttl=`` / ``expires_at=``, the TTL index, ``touch()``, and what expiry leaves.

Every test takes ``store`` (mongomock and the SecantusDB wire server), except those that
drive SecantusDB's TTL pass (``secantusAdmin.pruneTtl``), which take ``wire_store``. The
server's own TTL monitor runs once a minute; nothing here waits for it.
"""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any

import bson
import pytest
from pymongo import MongoClient

from threadmem_mongo import InvalidInputError, RoleThread, ThreadNotFoundError, ThreadStore

Document = dict[str, Any]
UTC = datetime.timezone.utc
HOUR = datetime.timedelta(hours=1)
BUCKET = "threadmem_images"


def stored(store: ThreadStore, thread_id: str) -> Document:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None, f"thread {thread_id} is not stored"
    return doc


def stored_expiry(store: ThreadStore, thread_id: str) -> datetime.datetime:
    """The stored ``expires_at``, checked to be a BSON date, as an aware UTC datetime."""
    doc = store.collection.find_one({"_id": thread_id, "expires_at": {"$type": "date"}})
    assert doc is not None, "expires_at is not stored as a BSON date"
    value = doc["expires_at"]
    assert isinstance(value, datetime.datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def utc_ms(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(round(epoch, 3), UTC)


def snapshot(store: ThreadStore) -> list[bytes]:
    return [bson.encode(doc) for doc in store.collection.find({}, sort=[("_id", 1)])]


def image_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(os.urandom(60_000)).decode()


def blob_files(store: ThreadStore) -> int:
    return store.collection.database[f"{BUCKET}.files"].count_documents({})


def blob_chunks(store: ThreadStore) -> int:
    return store.collection.database[f"{BUCKET}.chunks"].count_documents({})


# -- setting an expiry ------------------------------------------------------------------------


def test_ttl_sets_expires_at_to_a_bson_date_ttl_after_creation(store: ThreadStore) -> None:
    thread = RoleThread(ttl=2 * HOUR, store=store)

    doc = stored(store, thread.id)
    assert stored_expiry(store, thread.id) == thread.expires_at == utc_ms(doc["created"] + 7200)
    assert doc["ttl"] == 7200.0
    assert thread.ttl == 2 * HOUR
    assert thread.expires_at is not None
    assert thread.expires_at.tzinfo is not None


def test_expires_at_is_stored_as_the_same_instant_in_utc(store: ThreadStore) -> None:
    plus_five = datetime.timezone(datetime.timedelta(hours=5))
    when = datetime.datetime(2031, 1, 2, 3, 4, 5, 678_000, tzinfo=plus_five)

    thread = RoleThread(expires_at=when, store=store)

    assert stored_expiry(store, thread.id) == when
    assert thread.expires_at == when
    assert stored(store, thread.id)["ttl"] is None
    assert thread.ttl is None


def test_expiry_read_back_equals_the_objects_own(store: ThreadStore) -> None:
    odd = datetime.datetime(2031, 5, 6, 7, 8, 9, 123_456, tzinfo=UTC)  # sub-millisecond
    for thread in (RoleThread(ttl=HOUR, store=store), RoleThread(expires_at=odd, store=store)):
        reread = RoleThread.get(thread.id, store=store)
        assert reread.expires_at == thread.expires_at == stored_expiry(store, thread.id)
        assert reread.expires_at is not None
        assert reread.expires_at.tzinfo is not None
        assert reread.ttl == thread.ttl


def test_thread_without_ttl_or_expires_at_never_expires(store: ThreadStore) -> None:
    thread = RoleThread(store=store)

    doc = stored(store, thread.id)
    assert (doc["expires_at"], doc["ttl"]) == (None, None)
    assert (thread.expires_at, thread.ttl) == (None, None)


def test_ttl_index_on_expires_at_expires_documents_at_that_date(store: ThreadStore) -> None:
    store.ensure_indexes()  # a fresh store, before any thread exists

    indexes = store.collection.index_information()
    ttl_indexes = [i for i in indexes.values() if "expireAfterSeconds" in i]
    assert ttl_indexes == [indexes["expires_at"]]
    assert indexes["expires_at"]["key"] == [("expires_at", 1)]
    assert indexes["expires_at"]["expireAfterSeconds"] == 0


def test_ttl_and_expires_at_together_are_invalid_input(store: ThreadStore) -> None:
    with pytest.raises(InvalidInputError):
        RoleThread(ttl=HOUR, expires_at=datetime.datetime.now(UTC) + HOUR, store=store)
    assert store.collection.count_documents({}) == 0


@pytest.mark.parametrize(
    "expires_at",
    [
        datetime.datetime(2031, 1, 1, 12, 0),  # naive
        datetime.datetime.now(),  # naive, local time
        "2031-01-01T00:00:00Z",
        1_900_000_000.0,
        datetime.date(2031, 1, 1),
    ],
)
def test_expires_at_that_is_not_an_aware_datetime_is_invalid_input(
    store: ThreadStore, expires_at: Any
) -> None:
    with pytest.raises(InvalidInputError):
        RoleThread(expires_at=expires_at, store=store)
    assert store.collection.count_documents({}) == 0


@pytest.mark.parametrize(
    "ttl", [datetime.timedelta(0), datetime.timedelta(seconds=-1), 3600, 3600.0, "1h"]
)
def test_ttl_that_is_not_a_positive_timedelta_is_invalid_input(
    store: ThreadStore, ttl: Any
) -> None:
    with pytest.raises(InvalidInputError):
        RoleThread(ttl=ttl, store=store)
    assert store.collection.count_documents({}) == 0


# -- touch() ----------------------------------------------------------------------------------


def test_touch_pushes_a_near_expiry_a_full_ttl_ahead_and_raises_the_version_by_one(
    store: ThreadStore,
) -> None:
    thread = RoleThread(ttl=HOUR, store=store)
    thread.post("user", "hello")
    soon = datetime.datetime.now(UTC) + datetime.timedelta(seconds=10)
    # Time has passed: the stored expiry is ten seconds away (as a touch long ago left it).
    store.collection.update_one({"_id": thread.id}, {"$set": {"expires_at": soon}})
    version = thread.version

    thread.touch()

    doc = stored(store, thread.id)
    expiry = stored_expiry(store, thread.id)
    assert expiry == thread.expires_at == utc_ms(doc["updated"] + 3600)
    assert expiry - soon > datetime.timedelta(minutes=59)
    assert doc["version"] == thread.version == version + 1
    assert doc["ttl"] == 3600.0
    assert [m["text"] for m in doc["messages"]] == ["hello"]
    assert doc["size_bytes"] >= len(bson.encode(doc))


def test_touch_with_a_ttl_sets_the_new_ttl_for_later_touches(store: ThreadStore) -> None:
    thread = RoleThread(ttl=HOUR, store=store)
    version = thread.version

    thread.touch(ttl=datetime.timedelta(days=2))

    doc = stored(store, thread.id)
    assert doc["ttl"] == 172_800.0
    assert thread.ttl == datetime.timedelta(days=2)
    assert stored_expiry(store, thread.id) == utc_ms(doc["updated"] + 172_800)
    assert doc["version"] == version + 1

    thread.touch()

    doc = stored(store, thread.id)
    assert stored_expiry(store, thread.id) == utc_ms(doc["updated"] + 172_800)
    assert doc["version"] == version + 2


def test_touch_with_a_ttl_makes_a_thread_with_a_fixed_date_extendable(
    store: ThreadStore,
) -> None:
    thread = RoleThread(expires_at=datetime.datetime.now(UTC) + HOUR, store=store)

    thread.touch(ttl=datetime.timedelta(days=1))

    assert stored(store, thread.id)["ttl"] == 86_400.0
    assert thread.ttl == datetime.timedelta(days=1)


@pytest.mark.parametrize("made_with", ["nothing", "expires_at"])
def test_touch_without_ttl_on_a_thread_without_one_is_invalid_input_and_writes_nothing(
    store: ThreadStore, made_with: str
) -> None:
    expiry = datetime.datetime.now(UTC) + HOUR if made_with == "expires_at" else None
    thread = RoleThread(expires_at=expiry, store=store)
    before = snapshot(store)

    with pytest.raises(InvalidInputError):
        thread.touch()

    assert snapshot(store) == before
    assert thread.version == 0


@pytest.mark.parametrize("ttl", [datetime.timedelta(0), datetime.timedelta(seconds=-5), 60, "1h"])
def test_touch_with_a_bad_ttl_is_invalid_input_and_writes_nothing(
    store: ThreadStore, ttl: Any
) -> None:
    thread = RoleThread(ttl=HOUR, store=store)
    before = snapshot(store)

    with pytest.raises(InvalidInputError):
        thread.touch(ttl=ttl)

    assert snapshot(store) == before


def test_touch_of_a_deleted_thread_raises_thread_not_found(store: ThreadStore) -> None:
    thread = RoleThread(ttl=HOUR, store=store)
    RoleThread.get(thread.id, store=store).delete()

    with pytest.raises(ThreadNotFoundError):
        thread.touch()
    assert store.collection.count_documents({}) == 0


def test_touch_from_a_stale_object_lands_and_catches_up(store: ThreadStore) -> None:
    thread = RoleThread(ttl=HOUR, store=store)
    stale = RoleThread.get(thread.id, store=store)
    thread.post("user", "posted meanwhile")

    stale.touch(ttl=datetime.timedelta(days=1))

    doc = stored(store, thread.id)
    assert doc["version"] == stale.version == 2
    assert doc["ttl"] == 86_400.0
    assert [m.text for m in stale.messages()] == ["posted meanwhile"]
    assert stale.expires_at == stored_expiry(store, thread.id)


# -- what expiry leaves behind ------------------------------------------------------------------


def test_sweep_removes_the_blobs_of_a_thread_the_ttl_monitor_deleted(
    store: ThreadStore,
) -> None:
    expired = RoleThread(ttl=HOUR, store=store)
    expired.post("user", "", images=[image_uri()])
    expired.post("user", "", images=[image_uri()])
    alive = RoleThread(ttl=HOUR, store=store)
    kept = image_uri()
    alive.post("user", "", images=[kept])
    assert (blob_files(store), blob_chunks(store)) == (3, 3)

    store.collection.delete_one({"_id": expired.id})  # what the TTL monitor does
    swept = store.sweep_blobs(older_than=datetime.timedelta(0))

    assert len(swept) == 2
    assert (blob_files(store), blob_chunks(store)) == (1, 1)
    assert RoleThread.get(alive.id, store=store).messages()[0].images == [kept]


def prune_ttl(client: MongoClient[Document]) -> int:
    """Run SecantusDB's TTL pass now (mongod's monitor would within 60 s)."""
    return int(client.admin.command("secantusAdmin.pruneTtl")["pruned"])


@pytest.mark.wire
def test_ttl_pass_deletes_expired_threads_only_and_sweep_removes_their_blobs(
    wire_store: ThreadStore, wire_client: MongoClient[Document]
) -> None:
    now = datetime.datetime.now(UTC)
    expired = RoleThread(expires_at=now - datetime.timedelta(minutes=1), store=wire_store)
    expired.post("user", "", images=[image_uri()])
    later = RoleThread(ttl=HOUR, store=wire_store)
    later.post("user", "", images=[image_uri()])
    forever = RoleThread(store=wire_store)
    revived = RoleThread(expires_at=now - datetime.timedelta(minutes=1), store=wire_store)
    revived.touch(ttl=HOUR)

    assert prune_ttl(wire_client) >= 1

    remaining = {doc["_id"] for doc in wire_store.collection.find({}, {"_id": 1})}
    assert remaining == {later.id, forever.id, revived.id}
    with pytest.raises(ThreadNotFoundError):
        RoleThread.get(expired.id, store=wire_store)
    with pytest.raises(ThreadNotFoundError):
        expired.post("user", "too late")

    assert len(wire_store.sweep_blobs(older_than=datetime.timedelta(0))) == 1
    assert (blob_files(wire_store), blob_chunks(wire_store)) == (1, 1)
    assert RoleThread.get(later.id, store=wire_store).messages()[0].images[0].startswith("data:")
