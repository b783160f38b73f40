"""Anthropic Messages, OpenAI Responses and Chat Completions exports, their importers, and
the importer of OpenAI Assistants API exports.

Every export is validated against the official SDKs' request types (``anthropic`` and
``openai``, installed by the test extra) with pydantic, strictly: unknown keys are
refused, and lazily validated iterables are drained and compared with the export, so a
wrong shape fails (``test_validators_refuse_wrong_shapes`` shows each check can fail).

Pure conversions are tested without a database; behaviour through the sync API takes
``store`` and through the async API ``async_store``, both on mongomock and on the
SecantusDB wire server.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputItemParam
from pydantic import ConfigDict, TypeAdapter, ValidationError

from threadmem_mongo import (
    ImageFormatError,
    InvalidInputError,
    RoleMessage,
    RoleThread,
    ThreadNotFoundError,
    ThreadStore,
    _anthropic,
    _assistants,
    _images,
    _imports,
    _responses,
)
from threadmem_mongo._async_blobs import DEFAULT_BUCKET
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

STRICT = ConfigDict(extra="forbid", strict=True)
ANTHROPIC_MESSAGE = TypeAdapter(MessageParam, config=STRICT)
ANTHROPIC_SYSTEM = TypeAdapter(str, config=STRICT)
RESPONSES_ITEM = TypeAdapter(ResponseInputItemParam, config=STRICT)
CHAT_MESSAGE = TypeAdapter(ChatCompletionMessageParam, config=STRICT)

URL = "https://example.com/cat.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL_PNG = PNG_SIGNATURE + b"small"
SMALL_DATA_URI = "data:image/png;base64," + base64.b64encode(SMALL_PNG).decode("ascii")
#: Over the default image threshold (32 KiB of data URI), so it is stored in GridFS.
LARGE_PNG = PNG_SIGNATURE + bytes(range(256)) * 160
LARGE_DATA_URI = "data:image/png;base64," + base64.b64encode(LARGE_PNG).decode("ascii")
BMP_DATA_URI = "data:image/bmp;base64," + base64.b64encode(b"BM" + b"\0" * 20).decode("ascii")


# -- validation against the SDK types ----------------------------------------------------


def drained(value: Any) -> Any:
    """``value`` with every lazily validated iterable pydantic returned turned into a
    list, so that validating those items actually happens."""
    if isinstance(value, Mapping):
        return {key: drained(item) for key, item in value.items()}
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, Iterable):
        return [drained(item) for item in value]
    return value


def validated(adapter: TypeAdapter[Any], value: Any) -> None:
    """Validate ``value`` with ``adapter``; the validated value must equal ``value``."""
    assert drained(adapter.validate_python(value)) == value


def check_anthropic(export: dict[str, Any]) -> None:
    assert set(export) == {"system", "messages"}
    if export["system"] is not None:
        validated(ANTHROPIC_SYSTEM, export["system"])
    for message in export["messages"]:
        validated(ANTHROPIC_MESSAGE, message)


def check_responses(items: list[dict[str, Any]]) -> None:
    for item in items:
        validated(RESPONSES_ITEM, item)


def check_chat(export: dict[str, Any]) -> None:
    assert set(export) == {"messages"}
    for message in export["messages"]:
        validated(CHAT_MESSAGE, message)


@pytest.mark.parametrize(
    ("adapter", "wrong"),
    [
        pytest.param(ANTHROPIC_MESSAGE, {"role": "critic", "content": "hi"}, id="anthropic-role"),
        pytest.param(
            ANTHROPIC_MESSAGE,
            {"role": "user", "content": [{"type": "text", "content": "hi"}]},
            id="anthropic-text-block",
        ),
        pytest.param(
            ANTHROPIC_MESSAGE,
            {"role": "user", "content": [{"type": "image", "source": {"type": "url"}}]},
            id="anthropic-image-without-url",
        ),
        pytest.param(
            ANTHROPIC_MESSAGE,
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/bmp", "data": "AA=="},
                    }
                ],
            },
            id="anthropic-bmp",
        ),
        pytest.param(ANTHROPIC_SYSTEM, None, id="anthropic-system-none"),
        pytest.param(
            RESPONSES_ITEM, {"type": "message", "role": "critic", "content": "hi"}, id="resp-role"
        ),
        pytest.param(
            RESPONSES_ITEM,
            {"type": "message", "role": "user", "content": [{"type": "input_text", "txt": "a"}]},
            id="responses-text-part",
        ),
        pytest.param(
            RESPONSES_ITEM,
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": URL}}],
            },
            id="responses-chat-image-part",
        ),
        pytest.param(CHAT_MESSAGE, {"role": "critic", "content": "hi"}, id="chat-role"),
        pytest.param(CHAT_MESSAGE, {"role": "tool", "content": "42"}, id="chat-tool-no-call-id"),
        pytest.param(
            CHAT_MESSAGE,
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            id="chat-responses-part",
        ),
    ],
)
def test_validators_refuse_wrong_shapes(adapter: TypeAdapter[Any], wrong: Any) -> None:
    with pytest.raises(ValidationError):
        drained(adapter.validate_python(wrong))


# -- a thread with every kind of message ---------------------------------------------------


def post_every_kind(thread: RoleThread) -> None:
    """Post text, images of each kind, placeholders, a private message, and every role."""
    thread.post("system", "You are terse.")
    thread.post("user", "Hello")
    thread.post("user", "Is <image> the same as <image>?", images=[URL, SMALL_DATA_URI])
    thread.post("user", "Describe this", images=[LARGE_DATA_URI])
    thread.post("user", "", images=[SMALL_DATA_URI])
    thread.post("critic", "Too long.")
    thread.post("tool", "42")
    thread.post("assistant", "Both are cats.")
    thread.post("user", "a private note", private=True)
    thread.post("system", "Answer in English.")


def post_standard_roles(thread: RoleThread) -> None:
    """Post the roles every format has, with text, images and placeholders."""
    thread.post("system", "You are terse.")
    thread.post("user", "Hello")
    thread.post("assistant", "Hi.")
    # Round trips keep the text; around placeholders, whitespace comes back as one space.
    thread.post("user", "Compare <image> with <image> please", images=[URL, SMALL_DATA_URI])
    thread.post("user", "Describe this", images=[LARGE_DATA_URI])
    thread.post("user", "<image> first, then text", images=[URL])
    thread.post("assistant", "Line one\nline two")
    thread.post("user", "a private note", private=True)


def signature(thread_messages: list[RoleMessage]) -> list[tuple[str, str, list[str]]]:
    return [(m.role, m.text, m.images) for m in thread_messages]


def blob_files(store: ThreadStore | AsyncThreadStore, db_client: Any) -> int:
    database = db_client[store.collection.database.name]
    return int(database[f"{DEFAULT_BUCKET}.files"].count_documents({}))


def thread_count(store: ThreadStore | AsyncThreadStore, db_client: Any) -> int:
    database = db_client[store.collection.database.name]
    return int(database[store.collection.name].count_documents({}))


# -- Anthropic Messages --------------------------------------------------------------------


def test_to_anthropic_of_every_kind_of_message_validates_as_message_params(
    store: ThreadStore,
) -> None:
    thread = RoleThread(store=store)
    post_every_kind(thread)
    assert any(
        i.startswith("gridfs:") for m in thread.messages(resolve_images=False) for i in m.images
    )

    export = thread.to_anthropic()

    check_anthropic(export)
    assert export["system"] == "You are terse.\n\nAnswer in English."
    messages = export["messages"]
    assert [m["role"] for m in messages] == ["user"] * 6 + ["assistant", "user"]
    assert messages[0]["content"] == [{"type": "text", "text": "Hello"}]
    small = base64.b64encode(SMALL_PNG).decode("ascii")
    assert messages[1]["content"] == [
        {"type": "text", "text": "Is"},
        {"type": "image", "source": {"type": "url", "url": URL}},
        {"type": "text", "text": "the same as"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": small}},
        {"type": "text", "text": "?"},
    ]
    large = messages[2]["content"][1]["source"]
    assert not large["data"].startswith("data:")
    assert base64.b64decode(large["data"]) == LARGE_PNG
    assert messages[3]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": small}}
    ]
    assert messages[4]["content"] == [{"type": "text", "text": "critic: Too long."}]
    assert messages[5]["content"] == [{"type": "text", "text": "tool: 42"}]
    assert messages[7]["content"] == [{"type": "text", "text": "a private note"}]


def test_to_anthropic_without_private_messages_or_system(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "Hello")
    thread.post("user", "secret", private=True)

    export = thread.to_anthropic(include_private=False)

    check_anthropic(export)
    assert export == {
        "system": None,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }


def test_anthropic_round_trip_keeps_roles_texts_images_and_order(store: ThreadStore) -> None:
    original = RoleThread(store=store)
    post_standard_roles(original)
    export = original.to_anthropic()

    copy = RoleThread.from_anthropic(
        export["messages"], system=export["system"], owner_id="o", name="copy", metadata={"k": 1}
    )

    assert signature(copy.messages()) == signature(original.messages())
    assert (copy.owner_id, copy.name, copy.metadata, copy.version) == ("o", "copy", {"k": 1}, 0)
    assert copy.to_anthropic() == export
    assert RoleThread.get(copy.id, store=store).messages() == copy.messages()
    refs = [i for m in copy.messages(resolve_images=False) for i in m.images]
    assert any(ref.startswith("gridfs:") for ref in refs)


def test_other_roles_come_back_from_anthropic_as_user_with_their_name(store: ThreadStore) -> None:
    original = RoleThread(store=store)
    original.post("critic", "Too long.")
    original.post("tool", "", images=[URL])
    export = original.to_anthropic()

    copy = RoleThread.from_anthropic(export["messages"])

    assert signature(copy.messages()) == [
        ("user", "critic: Too long.", []),
        ("user", "tool:", [URL]),
    ]


def test_from_anthropic_reads_string_content_and_system_blocks(store: ThreadStore) -> None:
    thread = RoleThread.from_anthropic(
        [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
        system=[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        store=store,
    )
    assert signature(thread.messages()) == [
        ("system", "one\n\ntwo", []),
        ("user", "Hi", []),
        ("assistant", "a\nb", []),
    ]


BAD_ANTHROPIC: list[Any] = [
    pytest.param("Hi", id="not-a-list"),
    pytest.param({"role": "user", "content": "Hi"}, id="a-dict"),
    pytest.param(["Hi"], id="message-not-a-dict"),
    pytest.param([{"role": "system", "content": "Hi"}], id="system-role"),
    pytest.param([{"role": "user"}], id="no-content"),
    pytest.param([{"role": "user", "content": 3}], id="content-not-a-list"),
    pytest.param([{"role": "user", "content": [{"type": "text"}]}], id="text-without-text"),
    pytest.param(
        [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}],
        id="tool-use-block",
    ),
    pytest.param(
        [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
            }
        ],
        id="file-source",
    ),
    pytest.param(
        [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": "ftp://x"}}],
            }
        ],
        id="ftp-url",
    ),
    pytest.param(
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "***"},
                    }
                ],
            }
        ],
        id="bad-base64",
    ),
    pytest.param([{"role": "user", "content": ""}], id="empty-text"),
]


@pytest.mark.parametrize("messages", BAD_ANTHROPIC)
def test_from_anthropic_refuses_malformed_input_and_writes_nothing(
    store: ThreadStore, db_client: Any, messages: Any
) -> None:
    good = {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": "image/png",
                    "data": LARGE_DATA_URI.split(",", 1)[1],
                },
            }
        ],
    }
    # A large image before the bad message: not even its GridFS blob may be written.
    full = [good, *messages] if isinstance(messages, list) else messages
    with pytest.raises(InvalidInputError):
        RoleThread.from_anthropic(full, store=store)
    with pytest.raises(InvalidInputError):
        RoleThread.from_anthropic([good], system=3, store=store)  # type: ignore[arg-type]
    assert thread_count(store, db_client) == 0
    assert blob_files(store, db_client) == 0


def test_to_anthropic_gives_media_types_in_lower_case() -> None:
    upper = "data:IMAGE/PNG;base64," + base64.b64encode(SMALL_PNG).decode("ascii")
    export = _anthropic.thread_to_anthropic([RoleMessage(role="user", text="x", images=[upper])])
    check_anthropic(export)
    assert export["messages"][0]["content"][1]["source"]["media_type"] == "image/png"


def test_to_anthropic_refuses_what_the_messages_api_cannot_take() -> None:
    with pytest.raises(InvalidInputError, match="image/bmp"):
        _anthropic.thread_to_anthropic([RoleMessage(role="user", text="x", images=[BMP_DATA_URI])])
    with pytest.raises(InvalidInputError, match="system prompt is text only"):
        _anthropic.thread_to_anthropic([RoleMessage(role="system", text="x", images=[URL])])


# -- OpenAI Responses ----------------------------------------------------------------------


def test_to_responses_of_every_kind_of_message_validates_as_input_items(
    store: ThreadStore,
) -> None:
    thread = RoleThread(store=store)
    post_every_kind(thread)

    items = thread.to_responses()

    check_responses(items)
    assert [(i["type"], i["role"]) for i in items] == [
        ("message", "system"),
        *[("message", "user")] * 6,
        ("message", "assistant"),
        ("message", "user"),
        ("message", "system"),
    ]
    assert items[2]["content"] == [
        {"type": "input_text", "text": "Is"},
        {"type": "input_image", "image_url": URL, "detail": "auto"},
        {"type": "input_text", "text": "the same as"},
        {"type": "input_image", "image_url": SMALL_DATA_URI, "detail": "auto"},
        {"type": "input_text", "text": "?"},
    ]
    assert items[3]["content"][1] == {
        "type": "input_image",
        "image_url": LARGE_DATA_URI,
        "detail": "auto",
    }
    assert items[4]["content"] == [
        {"type": "input_image", "image_url": SMALL_DATA_URI, "detail": "auto"}
    ]
    assert items[5]["content"] == [{"type": "input_text", "text": "critic: Too long."}]
    assert items[6]["content"] == [{"type": "input_text", "text": "tool: 42"}]
    assert items[7] == {"type": "message", "role": "assistant", "content": "Both are cats."}
    assert len(thread.to_responses(include_private=False)) == len(items) - 1


def test_responses_round_trip_keeps_roles_texts_images_and_order(store: ThreadStore) -> None:
    original = RoleThread(store=store)
    post_standard_roles(original)
    original.post("developer", "Use metric units.")
    items = original.to_responses()

    copy = RoleThread.from_responses(items, owner_id="o", name="copy", metadata={"k": 1})

    assert signature(copy.messages()) == signature(original.messages())
    assert (copy.owner_id, copy.name, copy.metadata, copy.version) == ("o", "copy", {"k": 1}, 0)
    assert copy.to_responses() == items
    assert RoleThread.get(copy.id, store=store).messages() == copy.messages()


def test_from_responses_reads_the_output_message_form(store: ThreadStore) -> None:
    output_message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "Paris.", "annotations": []},
            {"type": "refusal", "refusal": "No more."},
        ],
    }
    validated(RESPONSES_ITEM, output_message)
    thread = RoleThread.from_responses(
        [{"role": "user", "content": "Capital of France?"}, output_message], store=store
    )
    assert signature(thread.messages()) == [
        ("user", "Capital of France?", []),
        ("assistant", "Paris.\nNo more.", []),
    ]


BAD_RESPONSES: list[Any] = [
    pytest.param("Hi", id="a-string"),
    pytest.param(
        [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}], id="call"
    ),
    pytest.param([{"type": "message", "role": "critic", "content": "x"}], id="role"),
    pytest.param([{"type": "message", "role": "user", "content": 1}], id="content"),
    pytest.param(
        [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "file_id": "f", "detail": "auto"}],
            }
        ],
        id="image-file-id",
    ),
    pytest.param(
        [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
        id="input-file",
    ),
    pytest.param(
        [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": "/etc/passwd", "detail": "auto"}],
            }
        ],
        id="image-path",
    ),
]


@pytest.mark.parametrize("items", BAD_RESPONSES)
def test_from_responses_refuses_malformed_input_and_writes_nothing(
    store: ThreadStore, db_client: Any, items: Any
) -> None:
    good = {
        "role": "user",
        "content": [{"type": "input_image", "image_url": LARGE_DATA_URI, "detail": "auto"}],
    }
    full = [good, *items] if isinstance(items, list) else items
    with pytest.raises(InvalidInputError):
        RoleThread.from_responses(full, store=store)
    assert thread_count(store, db_client) == 0
    assert blob_files(store, db_client) == 0


def test_to_responses_refuses_assistant_images() -> None:
    with pytest.raises(InvalidInputError, match="no images in assistant input"):
        _responses.thread_to_responses([RoleMessage(role="assistant", text="x", images=[URL])])


# -- Chat Completions (to_openai) ----------------------------------------------------------


def test_to_openai_of_the_standard_roles_validates_as_chat_completion_messages(
    store: ThreadStore,
) -> None:
    thread = RoleThread(store=store)
    post_standard_roles(thread)

    export = thread.to_openai()

    check_chat(export)
    check_chat(thread.to_openai(include_private=False))
    assert len(export["messages"]) == 8
    assert export["messages"][4]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": LARGE_DATA_URI},
    }


def test_to_openai_keeps_other_role_names_which_chat_completions_refuses(
    store: ThreadStore,
) -> None:
    # As documented: to_openai() does not translate roles; an app translates a bot's
    # name or "tool" (which needs a tool_call_id) before sending.
    thread = RoleThread(store=store)
    thread.post("critic", "Too long.")
    thread.post("tool", "42")
    export = thread.to_openai()
    assert export == {
        "messages": [{"role": "critic", "content": "Too long."}, {"role": "tool", "content": "42"}]
    }
    for message in export["messages"]:
        with pytest.raises(ValidationError):
            CHAT_MESSAGE.validate_python(message)


# -- pure helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([("text", "a"), ("text", "b")], ("a\nb", [])),
        ([("text", "a"), ("image", URL), ("image", URL)], ("a", [URL, URL])),
        ([("image", URL), ("text", "a")], ("<image> a", [URL])),
        ([("text", "a"), ("image", URL), ("text", "b")], ("a <image> b", [URL])),
        ([("image", URL)], ("", [URL])),
    ],
)
def test_text_and_images_places_images_by_placeholder_only_when_text_follows(
    parts: list[_images.Part], expected: tuple[str, list[str]]
) -> None:
    assert _imports.text_and_images(parts) == expected


def test_whitespace_around_placeholders_comes_back_as_one_space() -> None:
    message = RoleMessage(role="user", text="a<image>\n b", images=[URL])
    parts = _imports.message_parts(message)
    assert parts == [("text", "a"), ("image", URL), ("text", "b")]
    assert _imports.text_and_images(parts) == ("a <image> b", [URL])


def test_import_ids_depend_on_source_owner_and_key() -> None:
    first = _imports.import_thread_id("openai-assistants", None, "thread_1")
    assert first == _imports.import_thread_id("openai-assistants", None, "thread_1")
    assert first != _imports.import_thread_id("openai-assistants", "", "thread_1")
    assert first != _imports.import_thread_id("openai-assistants", None, "thread_2")
    assert first != _imports.import_thread_id("anthropic", None, "thread_1")
    assert _imports.content_key({"a": 1, "b": [1]}) == _imports.content_key({"b": [1], "a": 1})


@pytest.mark.parametrize("owner_id", [3, {"$ne": None}, object(), b"alice"])
def test_imports_refuse_an_owner_id_that_is_not_a_string(
    store: ThreadStore, db_client: Any, owner_id: Any
) -> None:
    with pytest.raises(InvalidInputError, match="owner_id"):
        RoleThread.import_openai_thread(assistants_messages(), owner_id=owner_id, store=store)
    with pytest.raises(InvalidInputError, match="owner_id"):
        RoleThread.from_anthropic([{"role": "user", "content": "hi"}], owner_id=owner_id)
    with pytest.raises(InvalidInputError, match="owner_id"):
        RoleThread.from_responses([{"role": "user", "content": "hi"}], owner_id=owner_id)
    assert thread_count(store, db_client) == 0
    assert blob_files(store, db_client) == 0


def test_exports_refuse_unresolved_gridfs_references() -> None:
    message = RoleMessage.model_construct(
        role="user", text="x", images=["gridfs:abc"], id="m", private=False
    )
    with pytest.raises(InvalidInputError, match="unresolved image reference"):
        _anthropic.thread_to_anthropic([message])
    with pytest.raises(InvalidInputError, match="unresolved image reference"):
        _responses.thread_to_responses([message])


# -- OpenAI Assistants exports ---------------------------------------------------------------


def assistants_message(
    message_id: str,
    created: int,
    role: str,
    content: list[dict[str, Any]],
    thread_id: str = "thread_abc",
    **fields: Any,
) -> dict[str, Any]:
    """A ``thread.message`` as the Assistants API lists it."""
    return {
        "id": message_id,
        "object": "thread.message",
        "created_at": created,
        "assistant_id": "asst_1" if role == "assistant" else None,
        "thread_id": thread_id,
        "run_id": "run_1" if role == "assistant" else None,
        "role": role,
        "content": content,
        "attachments": [],
        "metadata": {},
        **fields,
    }


def text_part(value: str, annotations: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}


ANNOTATION = {
    "type": "file_citation",
    "text": "【4:0†source】",
    "start_index": 6,
    "end_index": 18,
    "file_citation": {"file_id": "file-cite"},
}


def assistants_messages() -> list[dict[str, Any]]:
    """A conversation, oldest first."""
    return [
        assistants_message(
            "msg_1",
            1_700_000_000,
            "user",
            [
                text_part("What is on this picture?"),
                {"type": "image_url", "image_url": {"url": URL, "detail": "high"}},
            ],
            attachments=[{"file_id": "file-doc", "tools": [{"type": "file_search"}]}],
            metadata={"source": "web"},
        ),
        assistants_message(
            "msg_2",
            1_700_000_005,
            "assistant",
            [text_part("A cat.【4:0†source】", [ANNOTATION])],
        ),
        assistants_message(
            "msg_3",
            1_700_000_010,
            "user",
            [{"type": "image_file", "image_file": {"file_id": "file-img", "detail": "auto"}}],
        ),
        assistants_message(
            "msg_4",
            1_700_000_010,
            "user",
            [
                text_part("And"),
                {"type": "image_url", "image_url": {"url": LARGE_DATA_URI}},
                text_part("this one?"),
                {"type": "image_file", "image_file": {"file_id": "file-2"}},
            ],
        ),
    ]


def list_object(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The list-messages object, newest first as the API lists by default."""
    data = list(reversed(messages))
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"],
        "last_id": data[-1]["id"],
        "has_more": False,
        **fields,
    }


def check_imported(thread: RoleThread | AsyncRoleThread, messages: list[RoleMessage]) -> None:
    assert [m.text for m in messages] == [
        "What is on this picture?",
        "A cat.【4:0†source】",
        "[image_file file-img]",
        "And <image> this one?",
    ]
    assert [m.role for m in messages] == ["user", "assistant", "user", "user"]
    assert [m.images for m in messages] == [[URL], [], [], [LARGE_DATA_URI]]
    assert [m.created for m in messages] == [
        1_700_000_000,
        1_700_000_005,
        1_700_000_010,
        1_700_000_010,
    ]
    kept = [m.metadata["openai"] for m in messages if m.metadata]
    assert [k["id"] for k in kept] == ["msg_1", "msg_2", "msg_3", "msg_4"]
    assert kept[0]["attachments"] == [{"file_id": "file-doc", "tools": [{"type": "file_search"}]}]
    assert kept[0]["metadata"] == {"source": "web"}
    assert kept[1]["annotations"] == [ANNOTATION]
    assert (kept[1]["assistant_id"], kept[1]["run_id"]) == ("asst_1", "run_1")
    assert kept[2]["image_files"] == [{"file_id": "file-img", "detail": "auto"}]
    assert kept[3]["image_files"] == [{"file_id": "file-2"}]
    assert thread.metadata == {"openai": {"thread_id": "thread_abc"}}
    assert thread.version == 0


def test_import_openai_thread_from_the_list_object_gives_messages_oldest_first(
    store: ThreadStore,
) -> None:
    thread = RoleThread.import_openai_thread(
        list_object(assistants_messages()), owner_id="alice", name="migrated", store=store
    )

    check_imported(thread, thread.messages())
    check_imported(thread, RoleThread.get(thread.id, store=store).messages())
    assert (thread.owner_id, thread.name) == ("alice", "migrated")
    assert any(
        i.startswith("gridfs:") for m in thread.messages(resolve_images=False) for i in m.images
    )
    check_anthropic(thread.to_anthropic())
    check_responses(thread.to_responses())
    check_chat(thread.to_openai())


def test_import_openai_thread_is_idempotent_across_every_source_shape(
    store: ThreadStore, db_client: Any, tmp_path: Path
) -> None:
    messages = assistants_messages()
    json_file = tmp_path / "export.json"
    json_file.write_text(json.dumps(list_object(messages)))
    list_file = tmp_path / "list.json"
    list_file.write_text(json.dumps(messages))
    ndjson_file = tmp_path / "export.jsonl"
    ndjson_file.write_text("\n".join(json.dumps(m) for m in reversed(messages)) + "\n\n")

    first = RoleThread.import_openai_thread(list_object(messages), store=store)
    again = [
        RoleThread.import_openai_thread(source, store=store)
        for source in (list_object(messages), messages, json_file, str(list_file), ndjson_file)
    ]

    assert {thread.id for thread in again} == {first.id}
    assert thread_count(store, db_client) == 1
    assert blob_files(store, db_client) == 1
    for thread in again:
        check_imported(thread, thread.messages())
    other_owner = RoleThread.import_openai_thread(messages, owner_id="bob", store=store)
    assert other_owner.id != first.id
    assert thread_count(store, db_client) == 2


def test_reimport_returns_the_thread_with_later_posts_but_refuses_a_changed_one(
    store: ThreadStore, db_client: Any
) -> None:
    export = list_object(assistants_messages())
    thread = RoleThread.import_openai_thread(export, store=store)
    thread.post("user", "a question after the migration")

    again = RoleThread.import_openai_thread(export, store=store)
    assert again.id == thread.id
    assert len(again.messages()) == 5

    again.delete_message(again.messages()[1].id)
    with pytest.raises(InvalidInputError, match="no longer starts with its messages"):
        RoleThread.import_openai_thread(export, store=store)
    assert thread_count(store, db_client) == 1


def test_import_keeps_that_a_listed_export_was_cut_short(store: ThreadStore) -> None:
    thread = RoleThread.import_openai_thread(
        list_object(assistants_messages(), has_more=True), store=store
    )
    assert thread.metadata == {"openai": {"thread_id": "thread_abc", "has_more": True}}


def test_import_orders_by_created_at_whatever_the_export_order() -> None:
    messages = assistants_messages()
    ascending = _assistants.parse_export(messages)
    descending = _assistants.parse_export(list(reversed(messages)))
    listed_ascending = _assistants.parse_export({**list_object(messages), "data": messages})
    assert ascending == descending == listed_ascending
    # Same second throughout: the list object is newest first, a plain list as given.
    same_time = [
        assistants_message("msg_a", 5, "user", [text_part("first")]),
        assistants_message("msg_b", 5, "assistant", [text_part("second")]),
    ]
    assert [m.text for m in _assistants.parse_export(same_time).messages] == ["first", "second"]
    listed = _assistants.parse_export(list_object(same_time))
    assert [m.text for m in listed.messages] == ["first", "second"]


def malformed_exports() -> list[Any]:
    good = assistants_messages()
    return [
        pytest.param({"object": "thread", "id": "thread_abc"}, id="not-a-list-object"),
        pytest.param({"object": "list", "data": []}, id="no-messages"),
        pytest.param([], id="empty-list"),
        pytest.param(good[0], id="a-single-message"),
        pytest.param([*good, "text"], id="message-not-a-dict"),
        pytest.param([*good, {**good[0], "object": "thread.run"}], id="wrong-object"),
        pytest.param([*good, {**good[0], "id": 5}], id="id-not-a-string"),
        pytest.param([*good, {**good[0], "role": "system"}], id="bad-role"),
        pytest.param([*good, {**good[0], "created_at": "yesterday"}], id="bad-created-at"),
        pytest.param([*good, {**good[0], "content": "text"}], id="content-not-a-list"),
        pytest.param([*good, {**good[0], "content": [{"type": "video"}]}], id="unknown-part"),
        pytest.param(
            [*good, {**good[0], "content": [{"type": "text", "text": "x"}]}], id="text-not-a-dict"
        ),
        pytest.param(
            [
                *good,
                {
                    **good[0],
                    "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}],
                },
            ],
            id="image-url-not-a-url",
        ),
        pytest.param([*good, {**good[0], "content": []}], id="empty-message"),
        pytest.param([*good, {**good[0], "thread_id": "thread_other"}], id="two-threads"),
        pytest.param([*good, {**good[0], "metadata": {"$where": "1"}}], id="operator-key"),
        pytest.param(42, id="a-number"),
        pytest.param(None, id="none"),
    ]


@pytest.mark.parametrize("export", malformed_exports())
def test_malformed_assistants_export_creates_nothing(
    store: ThreadStore, db_client: Any, export: Any
) -> None:
    with pytest.raises(InvalidInputError):
        RoleThread.import_openai_thread(export, store=store)
    assert thread_count(store, db_client) == 0
    assert blob_files(store, db_client) == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("export.json", "{not json", "is not JSON"),
        ("export.jsonl", '{"id": 1}\n{oops\n', "line 2 is not JSON"),
        ("export.json", b"\xff\xfe\x00", "cannot read"),
        ("missing.json", None, "cannot read"),
    ],
)
def test_unreadable_export_files_raise_invalid_input_and_create_nothing(
    store: ThreadStore, db_client: Any, tmp_path: Path, name: str, content: Any, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        RoleThread.import_openai_thread(path, store=store)
    assert thread_count(store, db_client) == 0


def test_an_image_url_that_is_not_a_url_is_an_image_format_error() -> None:
    export = [
        assistants_message(
            "msg_1", 1, "user", [{"type": "image_url", "image_url": {"url": "relative.png"}}]
        )
    ]
    parsed = _assistants.parse_export(export)
    with pytest.raises(ImageFormatError):
        _imports.build_messages(parsed.messages, "t", derived_ids=True, now=0.0)


# -- the async API ---------------------------------------------------------------------------


def test_async_api_has_every_format_method() -> None:
    for name in (
        "to_anthropic",
        "from_anthropic",
        "to_responses",
        "from_responses",
        "import_openai_thread",
    ):
        assert hasattr(AsyncRoleThread, name)
        assert hasattr(RoleThread, name)


@pytest.mark.asyncio
async def test_async_exports_validate_and_match_the_sync_ones(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    await thread.post("system", "You are terse.")
    await thread.post("user", "Is <image> the same as <image>?", images=[URL, SMALL_DATA_URI])
    await thread.post("user", "Describe this", images=[LARGE_DATA_URI])
    await thread.post("critic", "Too long.")
    await thread.post("tool", "42")
    await thread.post("assistant", "Both are cats.")
    await thread.post("user", "a private note", private=True)

    anthropic_export = await thread.to_anthropic()
    responses_export = await thread.to_responses()

    check_anthropic(anthropic_export)
    check_responses(responses_export)
    same = RoleThread.get(thread.id)
    assert anthropic_export == same.to_anthropic()
    assert responses_export == same.to_responses()
    assert len(await thread.to_responses(include_private=False)) == len(responses_export) - 1
    assert len((await thread.to_anthropic(include_private=False))["messages"]) == 5


@pytest.mark.asyncio
async def test_async_round_trips_keep_roles_texts_images_and_order(
    async_store: AsyncThreadStore,
) -> None:
    original = await AsyncRoleThread.create(store=async_store)
    await original.post("system", "You are terse.")
    await original.post("user", "Compare <image> with <image>", images=[URL, SMALL_DATA_URI])
    await original.post("user", "Describe this", images=[LARGE_DATA_URI])
    await original.post("assistant", "Both are cats.")
    expected = signature(await original.messages())

    export = await original.to_anthropic()
    from_anthropic = await AsyncRoleThread.from_anthropic(
        export["messages"], system=export["system"], owner_id="o"
    )
    from_responses = await AsyncRoleThread.from_responses(
        await original.to_responses(), name="r", store=async_store
    )

    assert signature(await from_anthropic.messages()) == expected
    assert signature(await from_responses.messages()) == expected
    assert signature(RoleThread.get(from_anthropic.id).messages()) == expected
    assert (from_anthropic.owner_id, from_responses.name) == ("o", "r")


@pytest.mark.asyncio
async def test_async_import_openai_thread_is_idempotent(
    async_store: AsyncThreadStore, db_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(json.dumps(m) for m in assistants_messages()))

    first = await AsyncRoleThread.import_openai_thread(path, owner_id="alice")
    second = await AsyncRoleThread.import_openai_thread(
        list_object(assistants_messages()), owner_id="alice", store=async_store
    )

    assert second.id == first.id
    check_imported(first, await first.messages())
    check_imported(second, await second.messages())
    assert first.id == RoleThread.import_openai_thread(assistants_messages(), owner_id="alice").id
    assert thread_count(async_store, db_client) == 1
    assert blob_files(async_store, db_client) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("export", malformed_exports()[:8])
async def test_async_malformed_input_creates_nothing(
    async_store: AsyncThreadStore, db_client: Any, export: Any
) -> None:
    with pytest.raises(InvalidInputError):
        await AsyncRoleThread.import_openai_thread(export)
    with pytest.raises(InvalidInputError):
        await AsyncRoleThread.from_anthropic([{"role": "user", "content": [{"type": "video"}]}])
    with pytest.raises(InvalidInputError):
        await AsyncRoleThread.from_responses([{"type": "reasoning", "summary": []}])
    assert thread_count(async_store, db_client) == 0
    assert blob_files(async_store, db_client) == 0


def test_large_images_exist_for_the_gridfs_cases() -> None:
    # The GridFS assertions above rely on this image crossing the default threshold.
    from threadmem_mongo._images import DEFAULT_BLOB_THRESHOLD

    assert len(LARGE_DATA_URI) > DEFAULT_BLOB_THRESHOLD


def test_openai_export_reader_keeps_texts_and_refuses_other_parts() -> None:
    parsed = _imports.messages_from_openai_export(
        {
            "messages": [
                {"role": "critic", "content": "Too long."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe this"},
                        {"type": "image_url", "image_url": {"url": URL}},
                    ],
                },
            ]
        }
    )
    assert [(m.role, m.text, m.images) for m in parsed] == [
        ("critic", "Too long.", ()),
        ("user", "Describe this", (URL,)),
    ]
    with pytest.raises(InvalidInputError, match="only 'text' and 'image_url'"):
        _imports.messages_from_openai_export(
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}
        )
    with pytest.raises(InvalidInputError, match="must be"):
        _imports.messages_from_openai_export({"messages": [], "model": "gpt"})


def test_an_import_that_loses_the_race_to_the_same_import_returns_its_thread(
    store: ThreadStore, db_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = list_object(assistants_messages())
    first = RoleThread.import_openai_thread(export, store=store)
    real_get = RoleThread.get.__func__  # type: ignore[attr-defined]
    lookups: list[str] = []

    def get_missing_once(cls: type[RoleThread], thread_id: str, **kwargs: Any) -> RoleThread:
        # The first look-up misses, as when the other import had not landed yet.
        lookups.append(thread_id)
        if len(lookups) == 1:
            raise ThreadNotFoundError(thread_id)
        return real_get(cls, thread_id, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(RoleThread, "get", classmethod(get_missing_once))

    second = RoleThread.import_openai_thread(export, store=store)

    assert second.id == first.id
    assert lookups == [first.id, first.id]
    assert thread_count(store, db_client) == 1
    assert blob_files(store, db_client) == 1
