"""Bad input raises InvalidInputError (or a subclass) and leaves the database as it was;
oversized changes raise ThreadTooLargeError before they are sent. On every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymongo.collection import Collection

from threadmem_mongo import (
    ImageFormatError,
    InvalidInputError,
    RoleMessage,
    RoleThread,
    ThreadStore,
    ThreadTooLargeError,
    V1Role,
    V1RoleMessage,
    V1RoleThread,
)
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES

Document = dict[str, Any]
Raw = Collection[Document]
Call = Callable[[RoleThread], object]

URL = "https://example.com/cat.png"
MB = 1024 * 1024
BIG = 2**70  # MongoDB stores integers of at most 64 bits


def role(name: str = "assistant") -> V1Role:
    return V1Role(name=name, user_id="bot-1", user_name="Bot", icon="https://x/icon.png")


def snapshot(raw: Raw) -> list[Document]:
    return list(raw.find({}, sort=[("_id", 1)]))


@pytest.fixture(autouse=True)
def _on_every_backend(store: ThreadStore) -> None:
    """Every test here runs on each backend, through the default store ``store`` set up."""


@pytest.fixture
def thread() -> RoleThread:
    """A stored thread with a role, metadata, a message with an image and one without."""
    made = RoleThread(
        owner_id="owner", name="n", metadata={"a": 1}, role_mapping={"assistant": role()}
    )
    made.post("user", "hello", images=[URL])
    made.post("assistant", "plain")
    return made


def first_id(thread: RoleThread) -> str:
    return thread.messages()[0].id


def last_id(thread: RoleThread) -> str:
    return thread.messages()[-1].id


def edit_metadata_in_place_and_save(key: str, value: object) -> Call:
    def call(thread: RoleThread) -> None:
        assert thread.metadata is not None
        thread.metadata[key] = value
        thread.save()

    return call


def other_threads_message(thread: RoleThread) -> RoleMessage:
    return RoleMessage(role="user", text="x", thread_id="some-other-thread")


def v1_copy(thread: RoleThread, **changes: Any) -> V1RoleThread:
    return thread.to_v1().model_copy(update=changes)


INVALID_CALLS = [
    # creating a thread
    pytest.param(lambda t: RoleThread(owner_id=5), id="new-thread-int-owner"),
    pytest.param(lambda t: RoleThread(public="yes"), id="new-thread-str-public"),
    pytest.param(lambda t: RoleThread(public=1), id="new-thread-int-public"),
    pytest.param(lambda t: RoleThread(name=3), id="new-thread-int-name"),
    pytest.param(lambda t: RoleThread(metadata="a=1"), id="new-thread-str-metadata"),
    pytest.param(lambda t: RoleThread(metadata={"$set": 1}), id="new-thread-dollar-key"),
    pytest.param(lambda t: RoleThread(metadata={"a.b": 1}), id="new-thread-dotted-key"),
    pytest.param(lambda t: RoleThread(metadata={"a": {"$gt": 1}}), id="new-thread-nested-key"),
    pytest.param(lambda t: RoleThread(metadata={"s": {1, 2}}), id="new-thread-set-value"),
    pytest.param(lambda t: RoleThread(metadata={"o": object()}), id="new-thread-object-value"),
    pytest.param(lambda t: RoleThread(metadata={"n": BIG}), id="new-thread-int-over-64-bits"),
    pytest.param(lambda t: RoleThread(role_mapping=[role()]), id="new-thread-role-list"),
    pytest.param(lambda t: RoleThread(role_mapping={"a": "bot"}), id="new-thread-role-not-v1"),
    pytest.param(
        lambda t: RoleThread(role_mapping={"critic": role("assistant")}),
        id="new-thread-role-key-differs",
    ),
    # posting
    pytest.param(lambda t: t.post("", "x"), id="post-empty-role"),
    pytest.param(lambda t: t.post("   ", "x"), id="post-blank-role"),
    pytest.param(lambda t: t.post(None, "x"), id="post-none-role"),
    pytest.param(lambda t: t.post(5, "x"), id="post-int-role"),
    pytest.param(lambda t: t.post("user", ""), id="post-empty-text"),
    pytest.param(lambda t: t.post("user", None), id="post-none-text"),
    pytest.param(lambda t: t.post("user", 5), id="post-int-text"),
    pytest.param(lambda t: t.post("user", b"bytes"), id="post-bytes-text"),
    pytest.param(lambda t: t.post("user", "x", private="yes"), id="post-str-private"),
    pytest.param(lambda t: t.post("user", "x", metadata={"$inc": 1}), id="post-dollar-key"),
    pytest.param(lambda t: t.post("user", "x", metadata={"a.b": 1}), id="post-dotted-key"),
    pytest.param(lambda t: t.post("user", "x", metadata={"s": {1}}), id="post-set-value"),
    pytest.param(lambda t: t.post("user", "x", metadata={"o": object()}), id="post-object"),
    pytest.param(lambda t: t.post("user", "x", metadata={"n": BIG}), id="post-int-over-64-bits"),
    pytest.param(lambda t: t.post("user", "x", metadata=[1]), id="post-list-metadata"),
    # add_msg
    pytest.param(lambda t: t.add_msg({"role": "user", "text": "x"}), id="add-msg-dict"),
    pytest.param(lambda t: t.add_msg(other_threads_message(t)), id="add-msg-other-thread"),
    # editing messages
    pytest.param(lambda t: t.update_message(first_id(t)), id="update-nothing"),
    pytest.param(lambda t: t.update_message(first_id(t), text=5), id="update-int-text"),
    pytest.param(lambda t: t.update_message(last_id(t), text=""), id="update-empty-text"),
    pytest.param(
        lambda t: t.update_message(first_id(t), metadata={"$x": 1}), id="update-dollar-key"
    ),
    pytest.param(
        lambda t: t.update_message(first_id(t), metadata={"x.y": 1}), id="update-dotted-key"
    ),
    pytest.param(lambda t: t.update_message(first_id(t), metadata={"s": {1}}), id="update-set"),
    pytest.param(
        lambda t: t.update_message(first_id(t), metadata={"n": BIG}), id="update-int-over-64-bits"
    ),
    pytest.param(lambda t: t.update_message(first_id(t), metadata="m"), id="update-str-metadata"),
    pytest.param(lambda t: t.update_message(first_id(t), private="no"), id="update-str-private"),
    # roles
    pytest.param(lambda t: t.add_role(role("assistant")), id="add-existing-role"),
    pytest.param(lambda t: t.add_role({"name": "critic"}), id="add-role-dict"),
    pytest.param(lambda t: t.remove_role("missing"), id="remove-missing-role"),
    # setters and save
    pytest.param(lambda t: setattr(t, "name", 5), id="set-int-name"),
    pytest.param(lambda t: setattr(t, "public", "true"), id="set-str-public"),
    pytest.param(lambda t: setattr(t, "metadata", {"a.b": 1}), id="set-dotted-metadata"),
    pytest.param(lambda t: setattr(t, "metadata", {"s": {1}}), id="set-set-metadata"),
    pytest.param(edit_metadata_in_place_and_save("$bad", 1), id="save-dollar-key-in-place"),
    pytest.param(edit_metadata_in_place_and_save("a.b", 1), id="save-dotted-key-in-place"),
    pytest.param(edit_metadata_in_place_and_save("s", {1, 2}), id="save-set-in-place"),
    pytest.param(edit_metadata_in_place_and_save("o", object()), id="save-object-in-place"),
    pytest.param(edit_metadata_in_place_and_save("n", BIG), id="save-int-over-64-bits"),
    # lookups
    pytest.param(lambda t: RoleThread.get(5), id="get-int-id"),
    pytest.param(lambda t: RoleThread.get({"$ne": None}), id="get-operator-id"),
    pytest.param(lambda t: RoleThread.find(owner_id={"$ne": None}), id="find-operator"),
    pytest.param(lambda t: RoleThread.find(id={"$exists": True}), id="find-id-operator"),
    pytest.param(lambda t: RoleThread.find(name={"x": 1}), id="find-dict-value"),
    pytest.param(lambda t: RoleThread.find(public=[True]), id="find-list-value"),
    pytest.param(lambda t: RoleThread.find(messages="x"), id="find-unknown-field"),
    pytest.param(lambda t: RoleThread.find(metadata={"a": {"$gt": 0}}), id="find-meta-operator"),
    pytest.param(lambda t: RoleThread.find(metadata={"a": {"b": 1}}), id="find-meta-dict"),
    pytest.param(lambda t: RoleThread.find(metadata={"$where": 1}), id="find-meta-dollar-key"),
    pytest.param(lambda t: RoleThread.find(metadata={}), id="find-meta-empty"),
    pytest.param(lambda t: RoleThread.find(name=BIG), id="find-int-over-64-bits"),
    pytest.param(lambda t: RoleMessage.find(role={"$ne": None}), id="message-find-operator"),
    pytest.param(
        lambda t: RoleMessage.find(thread_id={"$exists": True}), id="message-find-thread-op"
    ),
    pytest.param(lambda t: RoleMessage.find(private=True), id="message-find-unknown-field"),
    pytest.param(lambda t: RoleMessage.find(text=BIG), id="message-find-int-over-64-bits"),
    # imports
    pytest.param(lambda t: RoleThread.from_openai("hello"), id="from-openai-str"),
    pytest.param(lambda t: RoleThread.from_openai({"role": "user"}), id="from-openai-dict"),
    pytest.param(lambda t: RoleThread.from_openai(None), id="from-openai-none"),
    pytest.param(
        lambda t: RoleThread.from_openai([{"role": "user", "content": "ok"}, {"content": "x"}]),
        id="from-openai-no-role",
    ),
    pytest.param(
        lambda t: RoleThread.from_openai([{"role": "", "content": "x"}]),
        id="from-openai-empty-role",
    ),
    pytest.param(
        lambda t: RoleThread.from_openai([{"role": "user", "content": ""}]),
        id="from-openai-empty-content",
    ),
    pytest.param(
        lambda t: RoleThread.from_openai([{"role": "user", "content": None}]),
        id="from-openai-none-content",
    ),
    pytest.param(
        lambda t: RoleThread.from_openai([{"role": "user", "content": "x"}], metadata={"$a": 1}),
        id="from-openai-dollar-metadata",
    ),
    pytest.param(lambda t: RoleThread.from_v1(t.to_v1().model_dump()), id="from-v1-dict"),
    pytest.param(lambda t: RoleThread.from_v1(t.to_v1()), id="from-v1-existing-id"),
    pytest.param(
        lambda t: RoleThread.from_v1(v1_copy(t, id="new-id", metadata={"a.b": 1})),
        id="from-v1-dotted-metadata",
    ),
    pytest.param(
        lambda t: RoleThread.from_v1(
            v1_copy(
                t,
                id="new-id",
                messages=[V1RoleMessage(id="m", role="user", text="", created=1.0)],
            )
        ),
        id="from-v1-empty-text",
    ),
]


@pytest.mark.parametrize("call", INVALID_CALLS)
def test_invalid_input_raises_and_writes_nothing(thread: RoleThread, raw: Raw, call: Call) -> None:
    before = snapshot(raw)
    version, messages = thread.version, thread.messages()
    with pytest.raises(InvalidInputError):
        call(thread)
    assert snapshot(raw) == before
    assert (thread.version, thread.messages()) == (version, messages)


IMAGE_CALLS = [
    pytest.param(lambda t: t.post("user", "x", images=URL), id="single-url-not-a-list"),
    pytest.param(lambda t: t.post("user", "x", images=[42]), id="int"),
    pytest.param(lambda t: t.post("user", "x", images=[None]), id="none"),
    pytest.param(lambda t: t.post("user", "x", images=[{"url": URL}]), id="dict"),
    pytest.param(
        lambda t: t.post("user", "x", images=["/nonexistent/threadmem/missing.png"]),
        id="missing-file",
    ),
    pytest.param(lambda t: t.post("user", "x", images=["ftp://e.com/a.png"]), id="ftp-url"),
    pytest.param(
        lambda t: t.post("user", "x", images=["data:image/png;base64,@@@"]), id="bad-data-uri"
    ),
    pytest.param(lambda t: t.post("user", "x", images=["data:image/png,abc"]), id="not-base64"),
    pytest.param(lambda t: t.post("user", "x", images=[URL, "data:text"]), id="second-image-bad"),
]


@pytest.mark.parametrize("call", IMAGE_CALLS)
def test_bad_image_raises_image_format_error_and_writes_nothing(
    thread: RoleThread, raw: Raw, call: Call
) -> None:
    before = snapshot(raw)
    with pytest.raises(ImageFormatError):
        call(thread)
    assert snapshot(raw) == before
    assert thread.version == 2


# -- the document size limit -------------------------------------------------------------------


def test_message_over_16mb_is_refused_before_sending(thread: RoleThread, raw: Raw) -> None:
    before = snapshot(raw)
    with pytest.raises(ThreadTooLargeError) as info:
        thread.post("user", "x" * (17 * MB))
    assert info.value.thread_id == thread.id
    assert info.value.size > info.value.limit == DOCUMENT_BUDGET_BYTES
    assert snapshot(raw) == before
    assert thread.version == 2
    assert len(thread.messages()) == 2
    thread.post("user", "still works")
    assert thread.version == 3


def test_add_msg_over_16mb_is_refused(thread: RoleThread, raw: Raw) -> None:
    before = snapshot(raw)
    with pytest.raises(ThreadTooLargeError):
        thread.add_msg(RoleMessage(role="user", text="x" * (17 * MB)))
    assert snapshot(raw) == before


def test_second_9mb_message_is_refused_and_the_thread_is_unchanged(raw: Raw) -> None:
    # With every message inline (no overflow pages), the document holds at most 16 MB.
    store = ThreadStore(raw, max_inline_messages=None)
    thread = RoleThread(store=store)
    thread.post("user", "hello")
    first = thread.post("user", "a" * (9 * MB))
    before = snapshot(raw)
    with pytest.raises(ThreadTooLargeError) as info:
        thread.post("user", "b" * (9 * MB))
    assert info.value.size > info.value.limit
    assert snapshot(raw) == before
    assert thread.version == 2
    assert thread.messages()[-1] == first
    stale = RoleThread.get(thread.id, store=store)
    with pytest.raises(ThreadTooLargeError):
        stale.post("user", "c" * (9 * MB))
    assert RoleThread.get(thread.id, store=store).version == 2
    thread.post("user", "small messages still fit")
    assert thread.version == 3


def test_one_message_over_16mb_is_refused_even_with_overflow_pages(raw: Raw) -> None:
    thread = RoleThread(store=ThreadStore(raw))
    thread.post("user", "hello")
    before = snapshot(raw)
    with pytest.raises(ThreadTooLargeError):
        thread.post("user", "x" * (17 * MB))
    assert snapshot(raw) == before


class RecordingCollection:
    """A collection that records the name of every method called on it."""

    def __init__(self, collection: Raw) -> None:
        self._collection = collection
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if not callable(attribute):
            return attribute

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return recorded


def test_post_that_would_overflow_the_thread_is_refused_before_sending(raw: Raw) -> None:
    recording = RecordingCollection(raw)
    # Every message inline (no overflow pages): the 9 MB message stays in the document.
    store = ThreadStore(recording, max_inline_messages=None)  # type: ignore[arg-type]
    thread = RoleThread(store=store)
    thread.post("user", "a" * (9 * MB))
    recording.calls.clear()
    before = snapshot(raw)
    with pytest.raises(ThreadTooLargeError):
        thread.post("user", "b" * (9 * MB))
    # One small read confirms the size the object knew (others may have deleted
    # messages since); the 9 MB message itself is never sent.
    assert recording.calls == ["find_one"]
    assert snapshot(raw) == before


def test_edit_that_would_overflow_the_thread_is_refused_before_sending(raw: Raw) -> None:
    recording = RecordingCollection(raw)
    # Every message inline (no overflow pages): the 9 MB message stays in the document.
    store = ThreadStore(recording, max_inline_messages=None)  # type: ignore[arg-type]
    thread = RoleThread(store=store)
    thread.post("user", "a" * (9 * MB))
    small = thread.post("user", "small")
    before = snapshot(raw)
    recording.calls.clear()
    with pytest.raises(ThreadTooLargeError):
        thread.update_message(small.id, text="b" * (9 * MB))
    assert recording.calls == []
    assert snapshot(raw) == before
    assert thread.messages()[-1] == small


def test_thread_over_16mb_is_not_created(raw: Raw) -> None:
    before = snapshot(raw)
    with pytest.raises(ThreadTooLargeError):
        RoleThread.from_openai([{"role": "user", "content": "x" * (17 * MB)}])
    # With every message inline (no overflow pages), the document holds at most 16 MB.
    with pytest.raises(ThreadTooLargeError):
        RoleThread.from_openai(
            [{"role": "user", "content": "x" * (9 * MB)}] * 2,
            store=ThreadStore(raw, max_inline_messages=None),
        )
    assert snapshot(raw) == before


def test_metadata_over_16mb_is_refused_before_sending(thread: RoleThread, raw: Raw) -> None:
    before = snapshot(raw)
    thread.metadata = {"blob": "x" * (17 * MB)}
    with pytest.raises(ThreadTooLargeError):
        thread.save()
    assert snapshot(raw) == before


def test_edit_leaving_placeholders_that_do_not_match_the_images_writes_nothing(
    raw: Raw,
) -> None:
    thread = RoleThread()
    message = thread.post("user", "look <image> and <image>", images=[URL, URL])
    before = snapshot(raw)
    with pytest.raises(InvalidInputError, match="placeholder"):
        thread.update_message(message.id, text="only <image>")
    assert snapshot(raw) == before


def test_added_message_pointing_at_a_stored_image_is_refused(raw: Raw) -> None:
    owner = RoleThread()
    owner.post("user", "private picture", images=["data:image/png;base64," + "A" * 50_000])
    ref = owner.messages(resolve_images=False)[0].images[0]
    assert ref.startswith("gridfs:")
    intruder = RoleThread()
    before = snapshot(raw)
    with pytest.raises(ImageFormatError):
        intruder.add_msg(RoleMessage(role="user", text="mine now", images=[ref]))
    with pytest.raises(ImageFormatError):
        RoleThread.from_openai(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": ref}}]}]
        )
    assert snapshot(raw) == before


@pytest.mark.parametrize(
    "build",
    [
        lambda: V1RoleMessage(id="m", role="user", text=5, created=1.0),
        lambda: V1RoleThread(public="yes please", id="t", messages=[], created=1, updated=1),
    ],
    ids=["message", "thread"],
)
def test_invalid_v1_schemas_raise_invalid_input(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidInputError):
        build()
