"""Paging: loading the last N messages, ``history()`` backwards, and thread listings.

Every test takes ``store`` (mongomock and the SecantusDB wire server).
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.collection import Collection

from threadmem_mongo import (
    InvalidInputError,
    MessageNotFoundError,
    RoleMessage,
    RoleThread,
    ThreadNotFoundError,
    ThreadStore,
    VersionConflictError,
)

Document = dict[str, Any]
Raw = Collection[Document]


def long_thread(store: ThreadStore, count: int, owner_id: str | None = None) -> RoleThread:
    """A stored thread with messages ``m0`` .. ``m{count-1}``, written in one insert."""
    return RoleThread.from_openai(
        [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(count)],
        owner_id=owner_id,
        store=store,
    )


def stored(store: ThreadStore, thread_id: str) -> Document:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None, f"thread {thread_id} is not stored"
    return doc


def stored_texts(store: ThreadStore, thread_id: str) -> list[str]:
    return [m["text"] for m in stored(store, thread_id)["messages"]]


def texts(messages: list[RoleMessage]) -> list[str]:
    return [m.text for m in messages]


def numbered(start: int, stop: int) -> list[str]:
    return [f"m{i}" for i in range(start, stop)]


def assert_count_matches(store: ThreadStore, thread_id: str) -> None:
    doc = stored(store, thread_id)
    assert doc["message_count"] == len(doc["messages"])


# -- get(..., last=N) ---------------------------------------------------------------------------


def test_get_last_n_loads_only_the_last_n_messages(store: ThreadStore) -> None:
    thread = long_thread(store, 30)

    partial = RoleThread.get(thread.id, last=5, store=store)

    assert texts(partial.messages()) == numbered(25, 30)
    assert partial.is_partial
    assert partial.message_count == 30
    assert partial.version == thread.version
    whole = RoleThread.get(thread.id, store=store)
    assert not whole.is_partial
    assert whole.message_count == 30
    assert texts(whole.messages()) == numbered(0, 30)


@pytest.mark.parametrize("last", [30, 31, 1000])
def test_get_last_of_at_least_the_length_loads_everything(store: ThreadStore, last: int) -> None:
    thread = long_thread(store, 30)

    loaded = RoleThread.get(thread.id, last=last, store=store)

    assert texts(loaded.messages()) == numbered(0, 30)
    assert not loaded.is_partial
    assert loaded.message_count == 30


def test_get_last_zero_loads_no_messages_but_counts_them(store: ThreadStore) -> None:
    thread = long_thread(store, 30)
    empty = RoleThread(store=store)

    listed = RoleThread.get(thread.id, last=0, store=store)

    assert listed.messages() == []
    assert listed.is_partial
    assert listed.message_count == 30
    assert listed.name == thread.name
    reread_empty = RoleThread.get(empty.id, last=0, store=store)
    assert (reread_empty.message_count, reread_empty.is_partial) == (0, False)


@pytest.mark.parametrize("last", [-1, True, 1.5, "5"])
def test_get_with_bad_last_is_invalid_input(store: ThreadStore, last: Any) -> None:
    thread = long_thread(store, 3)
    with pytest.raises(InvalidInputError):
        RoleThread.get(thread.id, last=last, store=store)


def test_get_last_of_an_unknown_thread_raises_thread_not_found(store: ThreadStore) -> None:
    with pytest.raises(ThreadNotFoundError):
        RoleThread.get("no-such-thread", last=5, store=store)


# -- changes through a partial object ---------------------------------------------------------


def test_post_on_a_partial_thread_appends_to_the_whole_thread(store: ThreadStore) -> None:
    thread = long_thread(store, 30)
    partial = RoleThread.get(thread.id, last=3, store=store)

    posted = partial.post("user", "new")

    assert stored_texts(store, thread.id) == [*numbered(0, 30), "new"]
    assert partial.messages()[-1] == posted
    assert partial.message_count == 31
    assert partial.is_partial
    assert partial.version == thread.version + 1
    assert_count_matches(store, thread.id)


def test_post_on_a_partial_thread_after_others_posted_picks_theirs_up(
    store: ThreadStore,
) -> None:
    thread = long_thread(store, 30)
    partial = RoleThread.get(thread.id, last=3, store=store)
    thread.post("user", "theirs")

    partial.post("user", "mine")

    assert stored_texts(store, thread.id)[-2:] == ["theirs", "mine"]
    assert texts(partial.messages())[-2:] == ["theirs", "mine"]
    assert partial.message_count == 32
    assert partial.version == stored(store, thread.id)["version"]


def test_update_message_on_a_partial_thread_changes_only_that_message(
    store: ThreadStore,
) -> None:
    thread = long_thread(store, 30)
    before = stored(store, thread.id)["messages"]
    partial = RoleThread.get(thread.id, last=3, store=store)
    target = partial.messages()[1]

    updated = partial.update_message(target.id, text="edited", metadata={"k": 1})

    after = stored(store, thread.id)["messages"]
    assert after[28]["text"] == "edited"
    assert after[28]["metadata"] == {"k": 1}
    assert after[:28] == before[:28]
    assert after[29:] == before[29:]
    assert partial.messages()[1] == updated
    assert partial.message_count == 30
    assert_count_matches(store, thread.id)


def test_delete_message_on_a_partial_thread_removes_it_from_the_whole_thread(
    store: ThreadStore,
) -> None:
    thread = long_thread(store, 30)
    partial = RoleThread.get(thread.id, last=3, store=store)

    partial.delete_message(partial.messages()[0].id)

    assert stored_texts(store, thread.id) == [*numbered(0, 27), "m28", "m29"]
    assert texts(partial.messages()) == ["m28", "m29"]
    assert partial.message_count == 29
    assert partial.is_partial
    assert_count_matches(store, thread.id)


def test_update_and_delete_of_a_message_before_the_window_work_on_a_partial_thread(
    store: ThreadStore,
) -> None:
    # The object can be "edited like a whole one": a message found with history() is a
    # message of the thread, even if it is not among the loaded ones.
    thread = long_thread(store, 30)
    partial = RoleThread.get(thread.id, last=3, store=store)
    older = partial.history(before=partial.messages()[0].id, limit=5)
    assert texts(older) == numbered(22, 27)

    partial.update_message(older[0].id, text="edited")
    partial.delete_message(older[1].id)

    assert stored_texts(store, thread.id) == [*numbered(0, 22), "edited", *numbered(24, 30)]
    assert partial.message_count == 29
    assert_count_matches(store, thread.id)


def test_stale_partial_object_raises_version_conflict_and_writes_nothing(
    store: ThreadStore,
) -> None:
    thread = long_thread(store, 30)
    partial = RoleThread.get(thread.id, last=3, store=store)
    thread.post("user", "moves the version")
    before = stored(store, thread.id)

    with pytest.raises(VersionConflictError):
        partial.update_message(partial.messages()[0].id, text="stale")
    with pytest.raises(VersionConflictError):
        partial.delete_message(partial.messages()[0].id)

    assert stored(store, thread.id) == before


def test_refresh_of_a_partial_thread_keeps_its_window(store: ThreadStore) -> None:
    thread = long_thread(store, 30)
    partial = RoleThread.get(thread.id, last=3, store=store)
    for text in ("a", "b"):
        thread.post("user", text)

    partial.refresh()

    assert texts(partial.messages()) == ["m29", "a", "b"]
    assert partial.message_count == 32
    assert partial.version == thread.version


def test_copy_and_remove_images_of_a_partial_thread_cover_every_message(
    store: ThreadStore,
) -> None:
    thread = long_thread(store, 30)
    thread.post("user", "<image>", images=["https://example.com/a.png"])
    partial = RoleThread.get(thread.id, last=2, store=store)

    copied = partial.copy()
    partial.remove_images()

    assert stored_texts(store, copied.id) == [*numbered(0, 30), "<image>"]
    assert stored(store, copied.id)["message_count"] == 31
    assert stored_texts(store, thread.id) == [*numbered(0, 30), "[image removed]"]
    assert stored(store, thread.id)["messages"][-1]["images"] == []


# -- message_count --------------------------------------------------------------------------


def test_message_count_is_kept_in_the_document_by_every_change(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    assert stored(store, thread.id)["message_count"] == 0
    first = thread.post("user", "one")
    thread.post("assistant", "two")
    assert_count_matches(store, thread.id)

    thread.add_msg(first)  # a retried post lands once
    other = RoleThread.get(thread.id, store=store)
    other.post("user", "from another object")
    thread.post("user", "from a stale object")
    assert stored(store, thread.id)["message_count"] == 4
    assert_count_matches(store, thread.id)

    thread.refresh()
    thread.delete_message(first.id)
    assert stored(store, thread.id)["message_count"] == 3
    assert thread.message_count == 3

    copied = thread.copy()
    imported = RoleThread.from_openai(thread.to_openai()["messages"], store=store)
    schema = thread.to_v1()
    # Message ids are unique across threads: the restored copy needs its own.
    renumbered = [
        m.model_copy(update={"id": f"restored-{i}"}) for i, m in enumerate(schema.messages)
    ]
    restored = RoleThread.from_v1(
        schema.model_copy(update={"id": "restored", "messages": renumbered}), store=store
    )
    for made in (copied, imported, restored):
        assert stored(store, made.id)["message_count"] == 3
        assert made.message_count == 3


# -- history() ------------------------------------------------------------------------------


def test_history_without_before_returns_the_last_page_oldest_first(store: ThreadStore) -> None:
    thread = long_thread(store, 30)

    assert texts(thread.history(limit=7)) == numbered(23, 30)
    assert texts(thread.history()) == numbered(0, 30)  # default limit 50


def test_history_walks_back_to_the_start_without_gaps_or_repeats(store: ThreadStore) -> None:
    thread = long_thread(store, 30)
    reader = RoleThread.get(thread.id, last=0, store=store)

    pages = [reader.history(limit=7)]
    while pages[-1]:
        pages.append(reader.history(before=pages[-1][0].id, limit=7))

    assert [len(page) for page in pages] == [7, 7, 7, 7, 2, 0]
    walked = [m for page in reversed(pages) for m in page]
    assert walked == RoleThread.get(thread.id, store=store).messages()


def test_history_is_stable_while_others_append(store: ThreadStore) -> None:
    thread = long_thread(store, 20)
    original = [m.id for m in thread.messages()]
    reader = RoleThread.get(thread.id, last=0, store=store)
    writer = RoleThread.get(thread.id, last=0, store=store)

    pages = [reader.history(limit=4)]
    while pages[-1]:
        for n in range(3):
            writer.post("user", f"appended {len(pages)}.{n}")
        pages.append(reader.history(before=pages[-1][0].id, limit=4))

    walked = [m.id for page in reversed(pages) for m in page]
    assert walked == original
    assert stored(store, thread.id)["message_count"] == 20 + 3 * (len(pages) - 1)


def test_history_stops_at_the_first_message(store: ThreadStore) -> None:
    thread = long_thread(store, 5)
    first, second, third = thread.messages()[:3]

    assert thread.history(before=first.id) == []
    assert thread.history(before=third.id, limit=50) == [first, second]


def test_history_of_an_unknown_message_raises_message_not_found(store: ThreadStore) -> None:
    thread = long_thread(store, 5)
    elsewhere = long_thread(store, 2)

    with pytest.raises(MessageNotFoundError):
        thread.history(before="no-such-message")
    with pytest.raises(MessageNotFoundError):
        thread.history(before=elsewhere.messages()[0].id)


def test_history_of_a_deleted_thread_raises_thread_not_found(store: ThreadStore) -> None:
    thread = long_thread(store, 5)
    anchor = thread.messages()[3].id
    RoleThread.get(thread.id, store=store).delete()

    with pytest.raises(ThreadNotFoundError):
        thread.history()
    with pytest.raises(ThreadNotFoundError):
        thread.history(before=anchor)


@pytest.mark.parametrize(
    ("before", "limit"), [(None, 0), (None, -1), (None, True), (None, "5"), (3, 5)]
)
def test_history_with_bad_arguments_is_invalid_input(
    store: ThreadStore, before: Any, limit: Any
) -> None:
    thread = long_thread(store, 5)
    with pytest.raises(InvalidInputError):
        thread.history(before=before, limit=limit)


# -- find(): listings in creation order -------------------------------------------------------


def make_owned(store: ThreadStore, owner_id: str, count: int, messages: int = 3) -> list[str]:
    return [long_thread(store, messages, owner_id=owner_id).id for _ in range(count)]


def walk(
    store: ThreadStore, limit: int, newest_first: bool = False, **filters: Any
) -> list[list[RoleThread]]:
    pages = [
        RoleThread.find(limit=limit, newest_first=newest_first, last=0, store=store, **filters)
    ]
    while pages[-1]:
        pages.append(
            RoleThread.find(
                limit=limit,
                newest_first=newest_first,
                after=pages[-1][-1].cursor,
                last=0,
                store=store,
                **filters,
            )
        )
    return pages


def test_find_pages_through_threads_in_creation_order_without_messages(
    store: ThreadStore,
) -> None:
    created = make_owned(store, "pager", 7)
    make_owned(store, "someone else", 2)

    pages = walk(store, 3, owner_id="pager")

    assert [len(page) for page in pages] == [3, 3, 1, 0]
    found = [t for page in pages for t in page]
    assert [t.id for t in found] == created
    for thread in found:
        assert thread.messages() == []
        assert (thread.message_count, thread.is_partial) == (3, True)
        assert thread.owner_id == "pager"


def test_find_newest_first_pages_backwards_through_creation_order(store: ThreadStore) -> None:
    created = make_owned(store, "pager", 7)

    pages = walk(store, 3, newest_first=True, owner_id="pager")

    assert [t.id for page in pages for t in page] == created[::-1]


def test_cursor_of_a_thread_just_created_continues_a_listing(store: ThreadStore) -> None:
    before = make_owned(store, "pager", 2)
    middle = long_thread(store, 1, owner_id="pager")
    after = make_owned(store, "pager", 2)

    newer = RoleThread.find(owner_id="pager", after=middle.cursor, last=0, store=store)
    older = RoleThread.find(
        owner_id="pager", after=middle.cursor, newest_first=True, last=0, store=store
    )

    assert [t.id for t in newer] == after
    assert [t.id for t in older] == before[::-1]


@pytest.mark.parametrize("newest_first", [False, True])
def test_find_cursor_breaks_ties_of_creation_time_by_id(
    store: ThreadStore, newest_first: bool
) -> None:
    created = make_owned(store, "tied", 6)
    store.collection.update_many({"owner_id": "tied"}, {"$set": {"created": 1_700_000_000.5}})

    pages = walk(store, 2, newest_first=newest_first, owner_id="tied")

    assert [t.id for page in pages for t in page] == sorted(created, reverse=newest_first)


def test_find_paging_is_stable_while_threads_are_created(store: ThreadStore) -> None:
    created = make_owned(store, "pager", 6)

    oldest_first = [RoleThread.find(owner_id="pager", limit=2, last=0, store=store)]
    newest_first = [
        RoleThread.find(owner_id="pager", limit=2, newest_first=True, last=0, store=store)
    ]
    while oldest_first[-1] or newest_first[-1]:
        if len(created) < 9:  # three more threads, created while both walks go on
            created += make_owned(store, "pager", 1)
        if oldest_first[-1]:
            oldest_first.append(
                RoleThread.find(
                    owner_id="pager",
                    limit=2,
                    after=oldest_first[-1][-1].cursor,
                    last=0,
                    store=store,
                )
            )
        if newest_first[-1]:
            newest_first.append(
                RoleThread.find(
                    owner_id="pager",
                    limit=2,
                    newest_first=True,
                    after=newest_first[-1][-1].cursor,
                    last=0,
                    store=store,
                )
            )

    listed_old = [t.id for page in oldest_first for t in page]
    listed_new = [t.id for page in newest_first for t in page]
    assert len(set(listed_old)) == len(listed_old)
    assert listed_old == created  # in order, nothing skipped, new threads at the end
    assert listed_new == created[:6][::-1]  # threads newer than the first page never show


@pytest.mark.parametrize(
    "cursor", ["garbage", "", "1700000000.5|", "nan|some-id", "x|some-id", 123]
)
def test_find_with_a_bad_cursor_is_invalid_input(store: ThreadStore, cursor: Any) -> None:
    make_owned(store, "pager", 1)
    with pytest.raises(InvalidInputError):
        RoleThread.find(owner_id="pager", after=cursor, store=store)


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_find_with_a_bad_limit_is_invalid_input(store: ThreadStore, limit: Any) -> None:
    with pytest.raises(InvalidInputError):
        RoleThread.find(limit=limit, store=store)


def test_find_last_n_loads_the_last_n_messages_of_each_thread(store: ThreadStore) -> None:
    made = make_owned(store, "pager", 3, messages=10)

    found = RoleThread.find(owner_id="pager", last=2, store=store)

    assert [t.id for t in found] == made
    for thread in found:
        assert texts(thread.messages()) == ["m8", "m9"]
        assert (thread.message_count, thread.is_partial) == (10, True)


def test_thread_listed_without_messages_can_be_posted_to_and_edited(store: ThreadStore) -> None:
    (made,) = make_owned(store, "pager", 1)
    (listed,) = RoleThread.find(owner_id="pager", last=0, store=store)

    posted = listed.post("user", "new")
    listed.update_message(posted.id, text="edited")
    listed.name = "renamed"
    listed.save()

    doc = stored(store, made)
    assert [m["text"] for m in doc["messages"]] == ["m0", "m1", "m2", "edited"]
    assert (doc["name"], doc["message_count"]) == ("renamed", 4)
    assert listed.message_count == 4
