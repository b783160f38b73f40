"""Hostile and odd input, and failures around writes, through the sync API on every backend.

Ids are values: an operator dict is refused before anything is sent, and a stored id
such as ``"$_id"`` is compared as a string, never read as a field path. Message ids are
unique across threads. A post whose append landed never raises. Strings that cannot be
stored, metadata nested without end and counts past 64 bits are ``InvalidInputError``
with nothing written, GridFS included. Copies never refer to images that are gone.
The async twin of each test is in ``test_hardening_async.py``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import threading
from typing import Any

import pytest
from bson import ObjectId
from pymongo.collection import Collection

from threadmem_mongo import (
    ImageFormatError,
    InvalidInputError,
    RoleMessage,
    RoleThread,
    StoreUnavailableError,
    ThreadNotFoundError,
    ThreadStore,
    V1RoleMessage,
    V1RoleThread,
)

Document = dict[str, Any]
OPERATORS: list[Any] = [{"$ne": "x"}, {"$exists": True}, ["a"], 7, None]
LONE_SURROGATE = "bad \udc80 text"
BIG = 2**70
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def big_image() -> str:
    """A PNG data URI well over the GridFS threshold."""
    return "data:image/png;base64," + base64.b64encode(PNG + b"\0" * 60_000).decode()


def snapshot(store: ThreadStore) -> dict[str, list[Document]]:
    database = store.collection.database
    return {
        name: list(database[name].find({}, sort=[("_id", 1)]))
        for name in ("threads", "threadmem_images.files", "threadmem_images.chunks")
    }


@pytest.fixture
def thread(store: ThreadStore) -> RoleThread:
    made = RoleThread(owner_id="owner", name="n", store=store)
    for text in ("one", "two", "three", "four"):
        made.post("user", text)
    return made


# -- ids are type-checked whatever the object has loaded -------------------------------------


@pytest.mark.parametrize("bad", OPERATORS)
@pytest.mark.parametrize("last", [None, 2])
def test_operator_message_ids_are_refused_and_write_nothing(
    store: ThreadStore, thread: RoleThread, bad: Any, last: int | None
) -> None:
    loaded = RoleThread.get(thread.id, last=last, store=store)
    before = snapshot(store)
    with pytest.raises(InvalidInputError):
        loaded.delete_message(bad)
    with pytest.raises(InvalidInputError):
        loaded.update_message(bad, text="rewritten")
    with pytest.raises(InvalidInputError):
        loaded.history(before=bad if bad is not None else {"$gt": ""})
    assert snapshot(store) == before
    assert [m.text for m in RoleThread.get(thread.id, store=store).messages()] == [
        "one",
        "two",
        "three",
        "four",
    ]


@pytest.mark.parametrize("bad", [{"$ne": None}, ["x"], 3, ""])
def test_operator_thread_ids_are_refused(store: ThreadStore, thread: RoleThread, bad: Any) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidInputError):
        RoleThread.get(bad, store=store)
    with pytest.raises(InvalidInputError):
        store.delete(bad)
    with pytest.raises(InvalidInputError):
        store.load(bad)
    assert snapshot(store) == before


def test_watch_refuses_an_operator_after_message(store: ThreadStore, thread: RoleThread) -> None:
    with pytest.raises(InvalidInputError):
        next(iter(thread.watch(after_message={"$gt": ""})))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        next(iter(thread.watch(resume_after="token")))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"$ne": None}, ["x"]])
def test_message_search_refuses_operators(store: ThreadStore, bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        RoleMessage.find(id=bad, store=store)


# -- ids are values, never expressions ------------------------------------------------------


@pytest.mark.parametrize("odd_id", ["$_id", "$$ROOT", "$messages.id"])
def test_stored_dollar_ids_page_and_edit_as_plain_strings(store: ThreadStore, odd_id: str) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "first")
    thread.add_msg(RoleMessage(role="user", text="odd", id=odd_id))
    thread.post("user", "last")

    page = RoleThread.get(thread.id, store=store).history(before=odd_id, limit=5)
    assert [m.text for m in page] == ["first"]
    assert [m.text for m in RoleMessage.find(id=odd_id, store=store)] == ["odd"]
    partial = RoleThread.get(thread.id, last=1, store=store)
    partial.update_message(odd_id, text="renamed")
    partial.refresh()
    partial.delete_message(odd_id)
    assert [m.text for m in RoleThread.get(thread.id, store=store).messages()] == ["first", "last"]


@pytest.mark.wire
def test_watch_backlog_after_a_dollar_message_id(wire_store: ThreadStore) -> None:
    thread = RoleThread(store=wire_store)
    thread.add_msg(RoleMessage(role="user", text="odd", id="$_id"))
    thread.post("user", "after it")
    end = thread.post("system", "end")  # the watch stops here instead of waiting for quiet
    reported: list[str] = []
    with contextlib.closing(thread.watch(after_message="$_id", idle_timeout=30)) as events:
        for event in events:
            if event.message_id == end.id:
                break
            reported.append(event.message.text if event.message else event.kind)
        else:
            pytest.fail(f"the watch ended before the last post; it reported {reported}")
    assert reported == ["after it"]


# -- message ids are unique -------------------------------------------------------------------


def v1_thread(thread_id: str, message_ids: list[str]) -> V1RoleThread:
    return V1RoleThread(
        id=thread_id,
        public=False,
        created=1.0,
        updated=1.0,
        messages=[
            V1RoleMessage(id=mid, role="user", text=f"text {mid}", created=1.0)
            for mid in message_ids
        ],
    )


def test_from_v1_with_a_repeated_message_id_is_refused(store: ThreadStore) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="more than once"):
        RoleThread.from_v1(v1_thread("t1", ["m1", "m2", "m1"]), store=store)
    assert snapshot(store) == before


def test_message_ids_of_another_thread_are_refused(store: ThreadStore) -> None:
    held = RoleThread(store=store)
    taken = held.post("user", "mine")
    other = RoleThread(store=store)
    before = snapshot(store)

    with pytest.raises(InvalidInputError, match="another thread"):
        other.add_msg(RoleMessage(role="user", text="copy", id=taken.id))
    with pytest.raises(InvalidInputError, match="another thread"):
        RoleThread.from_v1(v1_thread("t2", ["fresh", taken.id]), store=store)

    assert snapshot(store) == before
    assert RoleMessage.find(id=taken.id, store=store) == [taken]


def test_retrying_the_same_message_in_its_own_thread_still_lands_once(
    store: ThreadStore, thread: RoleThread
) -> None:
    message = RoleMessage(role="user", text="retried")
    thread.add_msg(message)
    thread.add_msg(message)
    assert [m.id for m in RoleThread.get(thread.id, store=store).messages()].count(message.id) == 1


# -- a landed post never invites a duplicating retry ---------------------------------------


def fail_reads(store: ThreadStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every read that follows a write fail as an unreachable server would."""

    def unavailable(*args: object, **kwargs: object) -> object:
        raise StoreUnavailableError("unreachable for this test")

    monkeypatch.setattr(store, "catch_up", unavailable)
    monkeypatch.setattr(store, "load", unavailable)


def test_post_whose_follow_up_read_fails_returns_and_stores_once(
    store: ThreadStore, thread: RoleThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    RoleThread.get(thread.id, store=store).post("assistant", "someone else")
    with monkeypatch.context() as patch:
        fail_reads(store, patch)
        posted = thread.post("user", "mine")  # lands unpinned; the catch-up read fails

    texts = [m.text for m in thread.messages()]  # the stale object re-reads here
    assert texts == ["one", "two", "three", "four", "someone else", "mine"]
    assert texts == [m.text for m in RoleThread.get(thread.id, store=store).messages()]
    assert RoleMessage.find(id=posted.id, store=store) == [posted]


# -- strings, nesting and counts that cannot be stored ----------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.post(LONE_SURROGATE, "text", images=[big_image()]),
        lambda t: t.post("user", LONE_SURROGATE, images=[big_image()]),
        lambda t: t.post("user", "x", images=[big_image()], metadata={"k": LONE_SURROGATE}),
        lambda t: t.post("user", "x", images=[big_image()], metadata={LONE_SURROGATE: 1}),
        lambda t: t.update_message(t.messages()[0].id, text=LONE_SURROGATE),
        lambda t: RoleThread(name=LONE_SURROGATE),
        lambda t: RoleThread(owner_id=LONE_SURROGATE),
        lambda t: RoleThread.find(owner_id=LONE_SURROGATE),
        lambda t: RoleThread.find(metadata={"k": LONE_SURROGATE}),
        lambda t: RoleMessage.find(text=LONE_SURROGATE),
    ],
)
def test_unencodable_strings_are_refused_and_write_nothing(
    store: ThreadStore, thread: RoleThread, call: Any
) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="surrogate"):
        call(thread)
    assert snapshot(store) == before


def test_metadata_nested_without_end_is_refused(store: ThreadStore, thread: RoleThread) -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="nested"):
        thread.post("user", "deep", images=[big_image()], metadata=deep)
    with pytest.raises(InvalidInputError, match="nested"):
        RoleThread(metadata=deep)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda t: RoleThread.get(t.id, last=BIG),
        lambda t: RoleThread.find(limit=BIG),
        lambda t: RoleThread.find(last=BIG),
        lambda t: t.history(limit=BIG),
        lambda t: t.apply(lambda _: None, attempts=BIG),
    ],
)
def test_counts_past_64_bits_are_refused(store: ThreadStore, thread: RoleThread, call: Any) -> None:
    with pytest.raises(InvalidInputError, match="whole number"):
        call(thread)


def test_huge_but_storable_counts_read_everything(store: ThreadStore, thread: RoleThread) -> None:
    huge = 2**62
    assert len(RoleThread.get(thread.id, last=huge, store=store).messages()) == 4
    assert len(thread.history(limit=huge)) == 4
    last_id = thread.messages()[-1].id
    assert [m.text for m in thread.history(before=last_id, limit=huge)] == ["one", "two", "three"]
    assert len(RoleThread.find(limit=huge, store=store)) == 1


# -- copies never refer to images that are gone -------------------------------------------------


@pytest.fixture
def pictured(store: ThreadStore) -> RoleThread:
    made = RoleThread(store=store)
    made.post("user", "look", images=[big_image()])
    made.post("assistant", "nice")
    return made


def test_copy_of_a_stale_object_after_the_thread_was_deleted_conflicts(
    store: ThreadStore, pictured: RoleThread
) -> None:
    stale = RoleThread.get(pictured.id, store=store)
    pictured.delete()
    before = snapshot(store)
    with pytest.raises(ThreadNotFoundError):
        stale.copy()
    assert snapshot(store) == before


def test_copy_of_a_stale_object_after_a_message_was_deleted_has_readable_images(
    store: ThreadStore, pictured: RoleThread
) -> None:
    stale = RoleThread.get(pictured.id, store=store)
    pictured.delete_message(pictured.messages()[0].id)
    made = stale.copy()
    assert [m.text for m in RoleThread.get(made.id, store=store).messages()] == ["nice"]


def test_copy_of_a_stale_object_after_remove_images_has_readable_images(
    store: ThreadStore, pictured: RoleThread
) -> None:
    stale = RoleThread.get(pictured.id, store=store)
    pictured.remove_images()
    made = stale.copy()
    messages = RoleThread.get(made.id, store=store).messages()
    assert [(m.text, m.images) for m in messages] == [("look", []), ("nice", [])]


def test_copy_keeps_unsaved_fields_and_does_not_change_the_object(
    store: ThreadStore, pictured: RoleThread
) -> None:
    partial = RoleThread.get(pictured.id, last=1, store=store)
    partial.name = "unsaved name"
    made = partial.copy()
    assert made.name == "unsaved name"
    assert len(made.messages()) == 2
    assert partial.is_partial
    assert partial.name == "unsaved name"
    assert made.messages()[0].images == [big_image()]


@pytest.mark.slow
@pytest.mark.wire
def test_copies_racing_deletes_never_lose_images(wire_store: ThreadStore) -> None:
    rounds = 40
    outcomes: list[str] = []
    for _ in range(rounds):
        source = RoleThread(store=wire_store)
        source.post("user", "look", images=[big_image()])
        loaded = RoleThread.get(source.id, store=wire_store)
        start = threading.Barrier(2)
        copies: list[RoleThread] = []

        def copy_it(
            loaded: RoleThread = loaded,
            start: threading.Barrier = start,
            copies: list[RoleThread] = copies,
        ) -> None:
            start.wait()
            with contextlib.suppress(ThreadNotFoundError):
                copies.append(loaded.copy())

        def delete_it(source: RoleThread = source, start: threading.Barrier = start) -> None:
            start.wait()
            source.delete()

        workers = [threading.Thread(target=copy_it), threading.Thread(target=delete_it)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for made in copies:
            images = RoleThread.get(made.id, store=wire_store).messages()[0].images
            assert images == [big_image()]
        outcomes.append("copied" if copies else "deleted first")
    assert len(outcomes) == rounds


def test_blob_release_keeps_an_image_a_copy_holds(store: ThreadStore, pictured: RoleThread) -> None:
    made = pictured.copy()
    pictured.delete()
    assert made.messages()[0].images == [big_image()]
    files = store.collection.database["threadmem_images.files"]
    assert files.count_documents({"releasing": {"$exists": True}}) == 0


# -- leftovers are swept, and a delete that removed the thread succeeds ---------------------------


def test_sweep_removes_chunks_whose_file_never_came(store: ThreadStore) -> None:
    chunks: Collection[Document] = store.collection.database["threadmem_images.chunks"]
    old = ObjectId.from_datetime(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    fresh = ObjectId()
    chunks.insert_many(
        [
            {"files_id": old, "n": 0, "data": b"half"},
            {"files_id": old, "n": 1, "data": b"written"},
            {"files_id": fresh, "n": 0, "data": b"being written now"},
        ]
    )
    kept = RoleThread(store=store)
    kept.post("user", "kept", images=[big_image()])

    swept = store.sweep_blobs(older_than=datetime.timedelta(minutes=5))

    assert swept == [str(old)]
    assert chunks.count_documents({"files_id": old}) == 0
    assert chunks.count_documents({"files_id": fresh}) == 1
    assert kept.messages()[0].images == [big_image()]


def test_delete_succeeds_when_releasing_images_fails(
    store: ThreadStore, pictured: RoleThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: object, **kwargs: object) -> list[str]:
        raise StoreUnavailableError("unreachable for this test")

    with monkeypatch.context() as patch:
        patch.setattr(store, "release_blobs", unavailable)
        pictured.delete()
    assert store.collection.count_documents({"_id": pictured.id}) == 0
    files = store.collection.database["threadmem_images.files"]
    # What is left is an unreferenced image, which the sweep's release step deletes.
    left = [str(doc["_id"]) for doc in files.find({}, {"_id": 1})]
    assert len(left) == 1
    assert store.release_blobs(left) == left
    assert files.count_documents({}) == 0


# -- the docs keep their promises ------------------------------------------------------------


def test_from_openai_refuses_gridfs_references_as_its_docstring_says(store: ThreadStore) -> None:
    reference = f"gridfs:{ObjectId()}"
    assert "refused" in (RoleThread.from_openai.__doc__ or "")
    with pytest.raises(ImageFormatError):
        RoleThread.from_openai(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": reference}}]}],
            store=store,
        )
