"""The pure core, without a database: update builders, document conversion, validation,
the OpenAI format and image normalization."""

from __future__ import annotations

import base64
import datetime
import io
from pathlib import Path
from typing import Any

import bson
import pytest
from PIL import Image

from threadmem_mongo import (
    ImageFormatError,
    InvalidInputError,
    RoleMessage,
    ThreadMemError,
    V1Role,
    _document,
    _images,
    _openai,
    _pages,
    _updates,
    _validation,
)
from threadmem_mongo._document import ThreadState
from threadmem_mongo._limits import (
    ARRAY_ELEMENT_OVERHEAD_BYTES,
    DOCUMENT_BUDGET_BYTES,
    MAX_DOCUMENT_BYTES,
)
from threadmem_mongo._state import (
    appended_batch,
    apply_catch_up,
    changed_message,
    message_changes,
)

TID = "00000000-0000-4000-8000-000000000001"
MID = "00000000-0000-4000-8000-0000000000aa"
NOW = 1_700_000_000.5
URL = "https://example.com/cat.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_bytes(mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (2, 2)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri_payload(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def make_role(name: str = "assistant") -> V1Role:
    return V1Role(name=name, user_id="bot-1", user_name="Bot", icon="https://x/i.png")


def make_message(**changes: Any) -> RoleMessage:
    fields: dict[str, Any] = {
        "role": "user",
        "text": "Hey there!",
        "thread_id": TID,
        "created": NOW,
        "id": MID,
    }
    fields.update(changes)
    return RoleMessage(**fields)


def make_state(**changes: Any) -> ThreadState:
    fields: dict[str, Any] = {
        "id": TID,
        "owner_id": "owner-1",
        "public": True,
        "name": "My thread",
        "metadata": {"purpose": "demo"},
        "roles": {"assistant": make_role()},
        "messages": [make_message()],
        "version": 0,
        "created": NOW,
        "updated": NOW,
    }
    fields.update(changes)
    return ThreadState(**fields)


# -- _updates: every filter and update document --------------------------------------------


def test_by_id_and_at_version_filters() -> None:
    assert _updates.by_id(TID) == {"_id": TID}
    assert _updates.at_version(TID, 7) == {"_id": TID, "version": 7}


def test_projections_read_only_what_a_missed_write_needs() -> None:
    assert _updates.STATUS_PROJECTION == {"_id": 1, "version": 1, "size_bytes": 1}
    assert _updates.append_status_projection(MID) == {
        "_id": 1,
        "version": 1,
        "size_bytes": 1,
        "messages": {"$elemMatch": {"id": MID}},
    }


def test_append_message_is_idempotent_by_id_and_bounded_by_the_budget() -> None:
    doc = _document.message_to_document(make_message())
    query, update = _updates.append_message(TID, doc, 100, NOW)
    assert query == {
        "_id": TID,
        "messages.id": {"$ne": MID},
        "size_bytes": {"$lte": DOCUMENT_BUDGET_BYTES - 100},
    }
    assert update == {
        "$inc": {"version": 1, "size_bytes": 100, "message_count": 1},
        "$set": {"updated": NOW},
        "$push": {"messages": doc},
    }


def test_append_message_pushes_a_copy_of_the_message_document() -> None:
    doc = _document.message_to_document(make_message())
    _, update = _updates.append_message(TID, doc, 100, NOW)
    assert update["$push"]["messages"] is not doc


def test_pinned_adds_the_known_version_to_a_filter() -> None:
    query = {"_id": TID, "messages.id": {"$ne": MID}}
    assert _updates.pinned(query, 4) == {"_id": TID, "messages.id": {"$ne": MID}, "version": 4}
    assert query == {"_id": TID, "messages.id": {"$ne": MID}}


def test_account_last_change_counts_the_replaced_field() -> None:
    _, update = _updates.delete_message(TID, 8, MID, 120, NOW)
    new_bytes = _document.last_change_size(update["$set"]["last_change"])
    assert new_bytes == len(bson.encode({"last_change": update["$set"]["last_change"]}))
    assert _updates.account_last_change(update, 30) == new_bytes
    assert update["$inc"]["size_bytes"] == -120 + new_bytes - 30


def test_account_last_change_leaves_updates_without_it_alone() -> None:
    _, update = _updates.set_fields(TID, 3, {"name": "x"}, 0, NOW)
    assert _updates.account_last_change(update, 30) == 30
    assert update == {"$inc": {"version": 1}, "$set": {"updated": NOW, "name": "x"}}
    assert _document.last_change_size(None) == 0


def test_window_projection_loads_the_last_messages_only() -> None:
    assert _updates.window_projection(None) is None
    assert _updates.window_projection(0) == {"messages": 0}
    projection = _updates.window_projection(3)
    assert projection == {
        **{field: 1 for field in _document.THREAD_FIELDS},
        "messages": {"$slice": -3},
    }


def test_creation_order_sorts_by_created_then_id() -> None:
    assert _updates.creation_order(newest_first=False) == [("created", 1), ("_id", 1)]
    assert _updates.creation_order(newest_first=True) == [("created", -1), ("_id", -1)]


def test_history_pipeline_cuts_the_page_on_the_server() -> None:
    paging = {"version": 1, "page_count": 1, "paged_count": 1, "pending": 1}
    assert _updates.history_pipeline(TID, MID, 10) == [
        {"$match": {"_id": TID}},
        {
            "$project": {
                **paging,
                "index": {
                    "$indexOfArray": [
                        {"$map": {"input": "$messages", "in": "$$this.id"}},
                        {"$literal": MID},
                    ]
                },
                "messages": 1,
            }
        },
        {
            "$project": {
                **paging,
                "index": 1,
                "page": {
                    "$cond": [
                        {"$gt": ["$index", 0]},
                        {
                            "$slice": [
                                "$messages",
                                {"$max": [0, {"$subtract": ["$index", 10]}]},
                                {"$min": [10, "$index"]},
                            ]
                        },
                        [],
                    ]
                },
            }
        },
    ]


def test_blob_filters() -> None:
    assert _updates.blob_holder("abc") == {"messages.blobs": "abc"}
    assert _updates.BLOBS_PROJECTION == {
        "_id": 1,
        "messages.blobs": 1,
        "page_count": 1,
        "paged_blobs": 1,
    }


def test_listing_cursor_round_trips_into_a_filter() -> None:
    cursor = _updates.page_cursor(NOW, TID)
    assert cursor == f"{NOW!r}|{TID}"
    assert _updates.after_cursor(cursor, newest_first=False) == {
        "$or": [{"created": {"$gt": NOW}}, {"created": NOW, "_id": {"$gt": TID}}]
    }
    assert _updates.after_cursor(cursor, newest_first=True) == {
        "$or": [{"created": {"$lt": NOW}}, {"created": NOW, "_id": {"$lt": TID}}]
    }


@pytest.mark.parametrize("cursor", ["", "abc", "1.5|", "nan|x", "x|y", 5, None])
def test_listing_cursor_not_made_here_is_invalid_input(cursor: Any) -> None:
    with pytest.raises(InvalidInputError):
        _updates.after_cursor(cursor, newest_first=False)


def test_set_expiry_is_unconditional() -> None:
    when = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert _updates.set_expiry(TID, when, 3600.0, 7, NOW) == (
        {"_id": TID},
        {
            "$inc": {"version": 1, "size_bytes": 7},
            "$set": {"updated": NOW, "expires_at": when, "ttl": 3600.0},
        },
    )


def test_set_fields_is_conditional_on_version() -> None:
    fields = {"public": False, "name": "n", "metadata": {"a": 1}}
    assert _updates.set_fields(TID, 3, fields, 5, NOW) == (
        {"_id": TID, "version": 3},
        {
            "$inc": {"version": 1, "size_bytes": 5},
            "$set": {"updated": NOW, "public": False, "name": "n", "metadata": {"a": 1}},
        },
    )


def test_set_fields_without_size_change_increments_only_the_version() -> None:
    _, update = _updates.set_fields(TID, 3, {"name": "x"}, 0, NOW)
    assert update == {"$inc": {"version": 1}, "$set": {"updated": NOW, "name": "x"}}


def test_set_roles_writes_the_whole_role_list() -> None:
    role_docs = [
        _document.role_to_document(make_role()),
        _document.role_to_document(make_role("b")),
    ]
    query, update = _updates.set_roles(TID, 2, role_docs, 90, NOW)
    assert (query, update) == (
        {"_id": TID, "version": 2},
        {"$inc": {"version": 1, "size_bytes": 90}, "$set": {"updated": NOW, "roles": role_docs}},
    )
    assert update["$set"]["roles"][0] is not role_docs[0]


def test_set_roles_to_an_empty_list_shrinks() -> None:
    assert _updates.set_roles(TID, 4, [], -90, NOW) == (
        {"_id": TID, "version": 4},
        {"$inc": {"version": 1, "size_bytes": -90}, "$set": {"updated": NOW, "roles": []}},
    )


def test_edit_message_uses_the_positional_operator() -> None:
    changes = {"text": "new", "metadata": {"k": "v"}, "private": True}
    assert _updates.edit_message(TID, 5, MID, changes, -3, NOW) == (
        {"_id": TID, "version": 5, "messages.id": MID},
        {
            "$inc": {"version": 1, "size_bytes": -3},
            "$set": {
                "updated": NOW,
                "messages.$.text": "new",
                "messages.$.metadata": {"k": "v"},
                "messages.$.private": True,
                "last_change": {"op": "message_updated", "ids": [MID], "version": 6},
            },
        },
    )


def test_edit_messages_at_sets_fields_by_position() -> None:
    changes = {0: {"images": [], "text": "a"}, 2: {"images": [], "text": "b"}}
    assert _updates.edit_messages_at(TID, 6, changes, ["m0", "m2"], -40, NOW) == (
        {"_id": TID, "version": 6},
        {
            "$inc": {"version": 1, "size_bytes": -40},
            "$set": {
                "updated": NOW,
                "last_change": {"op": "message_updated", "ids": ["m0", "m2"], "version": 7},
                "messages.0.images": [],
                "messages.0.text": "a",
                "messages.2.images": [],
                "messages.2.text": "b",
            },
        },
    )


def test_delete_message_pulls_by_id_and_decrements_the_count() -> None:
    assert _updates.delete_message(TID, 8, MID, 120, NOW) == (
        {"_id": TID, "version": 8, "messages.id": MID},
        {
            "$inc": {"version": 1, "size_bytes": -120, "message_count": -1},
            "$set": {
                "updated": NOW,
                "last_change": {"op": "message_deleted", "ids": [MID], "version": 9},
            },
            "$pull": {"messages": {"id": MID}},
        },
    )


def test_one_message_projection() -> None:
    assert _updates.one_message_projection(MID) == {
        "version": 1,
        "messages": {"$elemMatch": {"id": MID}},
    }


def test_messages_after_pipeline_slices_after_the_anchor() -> None:
    counters = {field: 1 for field in _updates.CATCH_UP_FIELDS}
    assert {"version", "message_count", "size_bytes", "page_count", "metadata"} <= set(counters)
    assert _updates.messages_after_pipeline(TID, MID) == [
        {"$match": {"_id": TID}},
        {
            "$project": {
                **counters,
                "messages": 1,
                "index": {
                    "$indexOfArray": [
                        {"$map": {"input": "$messages", "in": "$$this.id"}},
                        {"$literal": MID},
                    ]
                },
            }
        },
        {
            "$project": {
                **counters,
                "index": 1,
                "page": {
                    "$slice": [
                        "$messages",
                        {"$add": ["$index", 1]},
                        {"$max": [1, {"$size": "$messages"}]},
                    ]
                },
            }
        },
    ]


def test_builders_return_fresh_dicts_each_call() -> None:
    first = _updates.at_version(TID, 1)
    first["extra"] = 1
    assert _updates.at_version(TID, 1) == {"_id": TID, "version": 1}
    query, _ = _updates.edit_message(TID, 1, MID, {"text": "x"}, 0, NOW)
    assert "messages.id" not in _updates.at_version(TID, 1)
    assert query is not _updates.at_version(TID, 1)


def test_thread_search_filter_maps_id_and_fields_to_equality() -> None:
    assert _updates.thread_search_filter(
        {"id": TID, "owner_id": "o", "public": True, "name": None}
    ) == {"_id": TID, "owner_id": "o", "public": True, "name": None}
    assert _updates.thread_search_filter({}) == {}


def test_thread_search_filter_flattens_metadata_entries() -> None:
    assert _updates.thread_search_filter({"owner_id": "o", "metadata": {"a": 1, "b": "x"}}) == {
        "owner_id": "o",
        "metadata.a": 1,
        "metadata.b": "x",
    }


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"owner_id": {"$ne": None}}, id="operator-dict"),
        pytest.param({"name": {"x": 1}}, id="plain-dict"),
        pytest.param({"public": [True]}, id="list"),
        pytest.param({"messages": "x"}, id="unknown-field"),
        pytest.param({"_id": TID}, id="raw-_id"),
        pytest.param({"metadata": {"a": {"$gt": 1}}}, id="metadata-operator"),
        pytest.param({"metadata": {"a": {"b": 1}}}, id="metadata-dict-value"),
        pytest.param({"metadata": {"$where": "1"}}, id="metadata-dollar-key"),
        pytest.param({"metadata": {"a.b": 1}}, id="metadata-dotted-key"),
        pytest.param({"metadata": {}}, id="metadata-empty"),
        pytest.param({"metadata": None}, id="metadata-none"),
        pytest.param({"metadata": "a"}, id="metadata-str"),
    ],
)
def test_thread_search_filter_refuses_non_equality_filters(filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        _updates.thread_search_filter(filters)


def test_message_search_pipeline_matches_threads_then_messages() -> None:
    assert _updates.message_search_pipeline({"role": "user", "text": "hi"}) == [
        {"$match": {"messages": {"$elemMatch": {"role": "user", "text": "hi"}}}},
        {"$sort": {"created": 1, "_id": 1}},
        {"$project": {"messages": 1}},
        {"$unwind": "$messages"},
        {"$match": {"messages.role": "user", "messages.text": "hi"}},
    ]


def test_message_search_pipeline_by_thread_id_filters_on_the_document_id() -> None:
    assert _updates.message_search_pipeline({"thread_id": TID, "id": MID}) == [
        {"$match": {"_id": TID, "messages": {"$elemMatch": {"id": MID}}}},
        {"$sort": {"created": 1, "_id": 1}},
        {"$project": {"messages": 1}},
        {"$unwind": "$messages"},
        {"$match": {"messages.id": MID}},
    ]


def test_message_search_pipeline_without_filters_unwinds_everything() -> None:
    assert _updates.message_search_pipeline({}) == [
        {"$match": {}},
        {"$sort": {"created": 1, "_id": 1}},
        {"$project": {"messages": 1}},
        {"$unwind": "$messages"},
        {"$match": {}},
    ]


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"role": {"$ne": None}}, id="operator"),
        pytest.param({"thread_id": {"$exists": True}}, id="thread-id-operator"),
        pytest.param({"text": ["a"]}, id="list"),
        pytest.param({"private": True}, id="unknown-field"),
        pytest.param({"images": URL}, id="images-field"),
    ],
)
def test_message_search_pipeline_refuses_non_equality_filters(filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        _updates.message_search_pipeline(filters)


# -- _document: thread <-> document ------------------------------------------------------


def test_thread_document_has_exactly_the_documented_fields() -> None:
    doc = _document.thread_to_document(make_state())
    # last_change appears with the first edit or deletion of a message, and the page
    # fields with the first move of messages to an overflow page.
    later = {"last_change", "page_count", "paged_count", "paged_blobs", "pending"}
    assert list(doc) == ["_id", *(f for f in _document.THREAD_FIELDS if f not in later)]
    assert set(_document.THREAD_FIELDS) == {
        "owner_id",
        "public",
        "name",
        "metadata",
        "roles",
        "messages",
        "message_count",
        "size_bytes",
        "version",
        "created",
        "updated",
        "expires_at",
        "ttl",
        "last_change",
        "page_count",
        "paged_count",
        "paged_blobs",
        "pending",
    }


def test_thread_document_shape() -> None:
    doc = _document.thread_to_document(make_state())
    size = doc.pop("size_bytes")
    assert doc == {
        "_id": TID,
        "owner_id": "owner-1",
        "public": True,
        "name": "My thread",
        "metadata": {"purpose": "demo"},
        "roles": [
            {
                "name": "assistant",
                "user_id": "bot-1",
                "user_name": "Bot",
                "icon": "https://x/i.png",
                "description": None,
            }
        ],
        "messages": [
            {
                "id": MID,
                "role": "user",
                "text": "Hey there!",
                "created": NOW,
                "metadata": None,
            }
        ],
        "message_count": 1,
        "version": 0,
        "created": NOW,
        "updated": NOW,
        "expires_at": None,
        "ttl": None,
    }
    assert isinstance(size, int)


def test_messages_are_stored_without_thread_id() -> None:
    doc = _document.message_to_document(make_message())
    assert "thread_id" not in doc
    assert list(doc) == ["id", "role", "text", "created", "metadata"]


def test_a_message_stores_images_and_privacy_only_when_set() -> None:
    plain = _document.message_to_document(make_message())
    assert "images" not in plain
    assert "private" not in plain
    marked = make_message().model_copy(
        update={"images": ["https://x/cat.png"], "private": True}
    )
    doc = _document.message_to_document(marked)
    assert list(doc) == ["id", "role", "text", "images", "private", "created", "metadata"]
    assert (doc["images"], doc["private"]) == (["https://x/cat.png"], True)
    for message in (make_message(), marked):
        back = _document.message_from_document(
            _document.message_to_document(message), message.thread_id or TID
        )
        assert (back.images, back.private) == (message.images, message.private)


def test_size_bytes_covers_the_encoded_document() -> None:
    doc = _document.thread_to_document(make_state())
    encoded = len(bson.encode(doc))
    elements = len(doc["messages"]) + len(doc["roles"]) + 1
    assert encoded <= doc["size_bytes"] <= encoded + ARRAY_ELEMENT_OVERHEAD_BYTES * elements


def test_size_bytes_stays_above_the_real_size_after_deleting_created_messages() -> None:
    state = make_state()
    doc = _document.thread_to_document(state)
    size = doc["size_bytes"]
    while doc["messages"]:
        size -= _document.element_size(doc["messages"].pop())
        doc["message_count"] -= 1
        assert size >= len(bson.encode(doc))


def test_element_size_adds_the_array_overhead() -> None:
    doc = _document.message_to_document(make_message())
    assert _document.element_size(doc) == len(bson.encode(doc)) + ARRAY_ELEMENT_OVERHEAD_BYTES


def test_fields_size_is_the_encoded_size_of_the_fields() -> None:
    fields = {"public": True, "name": "x", "metadata": None}
    assert _document.fields_size(fields) == len(bson.encode(fields))


def test_editable_fields_are_public_name_metadata() -> None:
    assert _document.editable_fields(make_state()) == {
        "public": True,
        "name": "My thread",
        "metadata": {"purpose": "demo"},
    }


def test_thread_round_trips_through_its_document() -> None:
    state = make_state(
        messages=[make_message(), make_message(id="m2", images=[URL], private=True)],
        version=3,
        updated=NOW + 5,
    )
    doc = _document.thread_to_document(state)
    back = _document.thread_from_document(doc)
    assert back.id == TID
    assert back.owner_id == state.owner_id
    assert back.public is True
    assert back.name == state.name
    assert back.metadata == state.metadata
    assert back.roles == state.roles
    assert back.messages == state.messages
    assert back.version == 3
    assert back.created == NOW
    assert back.updated == NOW + 5
    assert back.size_bytes == doc["size_bytes"]
    assert back.message_count == 2


def test_message_from_document_sets_the_thread_id() -> None:
    message = make_message(metadata={"k": [1, 2]}, images=[URL], private=True)
    doc = _document.message_to_document(message)
    assert _document.message_from_document(doc, TID) == message


def test_thread_from_minimal_document_uses_defaults() -> None:
    state = _document.thread_from_document({"_id": TID, "created": NOW})
    assert state.owner_id is None
    assert state.public is False
    assert state.messages == []
    assert state.roles == {}
    assert state.version == 0
    assert state.updated == NOW
    assert state.size_bytes == 0
    assert state.message_count == 0


def test_role_round_trips_through_its_document() -> None:
    role = make_role()
    doc = _document.role_to_document(role)
    assert doc == {
        "name": "assistant",
        "user_id": "bot-1",
        "user_name": "Bot",
        "icon": "https://x/i.png",
        "description": None,
    }
    assert _document.role_from_document(doc) == role


def test_renumbered_messages_get_new_ids_and_the_new_thread() -> None:
    messages = [make_message(), make_message(id="m2")]
    fresh = _document.renumbered_messages(messages, "other")
    assert len({m.id for m in fresh} | {MID, "m2"}) == 4
    assert [(m.role, m.text, m.created) for m in fresh] == [
        (m.role, m.text, m.created) for m in messages
    ]
    assert {m.thread_id for m in fresh} == {"other"}
    assert [m.id for m in messages] == [MID, "m2"]


def test_gridfs_image_references_are_listed_in_blobs() -> None:
    # References are written by the library only (after storing the image), so the
    # message is made the way the library makes it, without input checks.
    message = make_message().model_copy(update={"images": [URL, "gridfs:abc", "gridfs:def"]})
    doc = _document.message_to_document(message)
    assert doc["blobs"] == ["abc", "def"]
    assert doc["images"] == [URL, "gridfs:abc", "gridfs:def"]
    assert _updates.blob_ids_of([doc, _document.message_to_document(make_message())]) == [
        "abc",
        "def",
    ]


def test_expiry_dates_read_back_as_aware_utc() -> None:
    naive = datetime.datetime(2030, 1, 2, 3, 4, 5)
    aware = _document.aware_utc(naive)
    assert aware == naive.replace(tzinfo=datetime.timezone.utc)
    assert _document.aware_utc(None) is None
    assert _document.aware_utc(aware) is aware
    state = _document.thread_from_document(
        {"_id": TID, "created": NOW, "expires_at": naive, "ttl": 60.0}
    )
    assert (state.expires_at, state.ttl) == (aware, 60.0)
    assert _document.expiry_fields(aware, 60.0) == {"expires_at": aware, "ttl": 60.0}


def test_offset_counts_the_messages_not_loaded() -> None:
    assert make_state(message_count=1).offset == 0
    assert make_state(message_count=5).offset == 4


def test_limits_leave_headroom_under_mongodb_maximum() -> None:
    assert MAX_DOCUMENT_BYTES == 16 * 1024 * 1024
    assert 0 < DOCUMENT_BUDGET_BYTES < MAX_DOCUMENT_BYTES


# -- _validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["", "   ", None, 3, b"user"])
def test_check_role_refuses_empty_and_non_string_roles(role: object) -> None:
    with pytest.raises(InvalidInputError):
        _validation.check_role(role)


def test_check_role_returns_the_role() -> None:
    assert _validation.check_role("user") == "user"


def test_check_text_allows_empty_text_only_with_images() -> None:
    assert _validation.check_text("", has_images=True) == ""
    assert _validation.check_text("x", has_images=False) == "x"
    with pytest.raises(InvalidInputError):
        _validation.check_text("", has_images=False)
    with pytest.raises(InvalidInputError):
        _validation.check_text(None, has_images=True)


def test_check_optional_str_and_check_bool() -> None:
    assert _validation.check_optional_str("name", None) is None
    assert _validation.check_optional_str("name", "x") == "x"
    with pytest.raises(InvalidInputError):
        _validation.check_optional_str("name", 1)
    assert _validation.check_bool("public", False) is False
    for bad in (0, 1, "true", None):
        with pytest.raises(InvalidInputError):
            _validation.check_bool("public", bad)


def test_check_metadata_returns_an_independent_copy() -> None:
    original = {"a": {"b": [1, 2]}, "n": None, "f": 1.5}
    checked = _validation.check_metadata(original)
    assert checked == original
    assert checked is not original
    assert checked is not None
    checked["a"]["b"].append(3)
    assert original["a"]["b"] == [1, 2]
    assert _validation.check_metadata(None) is None


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"$set": 1}, id="dollar-key"),
        pytest.param({"a.b": 1}, id="dotted-key"),
        pytest.param({"a": {"$gt": 1}}, id="nested-dollar-key"),
        pytest.param({"a": [{"b.c": 1}]}, id="dotted-key-in-list"),
        pytest.param({"a\x00": 1}, id="nul-key"),
        pytest.param({1: "x"}, id="int-key"),
        pytest.param({"s": {1, 2}}, id="set-value"),
        pytest.param({"o": object()}, id="object-value"),
        pytest.param({"big": 2**70}, id="int-over-64-bits"),
        pytest.param([("a", 1)], id="list"),
        pytest.param("a=1", id="str"),
    ],
)
def test_check_metadata_refuses_unstorable_metadata(metadata: object) -> None:
    with pytest.raises(InvalidInputError):
        _validation.check_metadata(metadata)


def test_check_filter_value_takes_scalars_only() -> None:
    for good in ("x", 1, 1.5, True, None):
        assert _validation.check_filter_value("f", good) == good
    for bad in ({"$ne": None}, [1], (1,), {1}, b"x", object()):
        with pytest.raises(InvalidInputError):
            _validation.check_filter_value("f", bad)


def test_check_filter_value_refuses_ints_mongodb_cannot_store() -> None:
    with pytest.raises(InvalidInputError):
        _validation.check_filter_value("name", 2**70)


def test_check_positive_int() -> None:
    assert _validation.check_positive_int("attempts", 1) == 1
    for bad in (0, -1, True, 1.0, "3"):
        with pytest.raises(InvalidInputError):
            _validation.check_positive_int("attempts", bad)


# -- RoleMessage -----------------------------------------------------------------------------


def test_role_message_repr() -> None:
    message = make_message()
    assert repr(message) == (
        f"RoleMessage(role='user', text='Hey there!', thread_id='{TID}', images=[], "
        f"private=False, created={NOW!r}, id='{MID}', metadata=None)"
    )


def test_role_message_defaults() -> None:
    message = RoleMessage(role="user", text="hi")
    assert message.thread_id is None
    assert message.images == []
    assert message.private is False
    assert message.metadata is None
    assert isinstance(message.created, float)
    assert message.id != RoleMessage(role="user", text="hi").id


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"role": "", "text": "x"}, id="empty-role"),
        pytest.param({"role": 1, "text": "x"}, id="int-role"),
        pytest.param({"role": "user", "text": ""}, id="empty-text"),
        pytest.param({"role": "user", "text": 5}, id="int-text"),
        pytest.param({"role": "user", "text": b"hi"}, id="bytes-text"),
        pytest.param({"role": b"user", "text": "hi"}, id="bytes-role"),
        pytest.param({"role": "user", "text": "x", "metadata": {"$a": 1}}, id="dollar-key"),
        pytest.param({"role": "user", "text": "x", "metadata": {"s": {1}}}, id="set-value"),
        pytest.param({"role": "user", "text": "x", "unknown": 1}, id="extra-field"),
    ],
)
def test_role_message_refuses_bad_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        RoleMessage(**fields)


def test_v1_role_with_empty_name_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        V1Role(name="", user_id="u", user_name="n", icon="i")


def test_invalid_input_errors_are_value_errors_and_threadmem_errors() -> None:
    with pytest.raises(ValueError, match="role"):
        RoleMessage(role="", text="x")
    assert issubclass(InvalidInputError, ThreadMemError)


def test_role_message_is_frozen() -> None:
    message = make_message()
    with pytest.raises(Exception, match="frozen"):
        message.text = "changed"  # type: ignore[misc]


def test_role_message_v1_round_trip() -> None:
    message = make_message(images=[URL], private=True, metadata={"k": 1})
    schema = message.to_v1()
    assert schema.model_dump() == {
        "id": MID,
        "role": "user",
        "text": "Hey there!",
        "images": [URL],
        "private": True,
        "metadata": {"k": 1},
        "created": NOW,
        "thread_id": TID,
    }
    assert RoleMessage.from_v1(schema) == message


# -- _openai ---------------------------------------------------------------------------------


def test_text_message_to_openai_is_role_and_content() -> None:
    assert _openai.message_to_openai(make_message()) == {"role": "user", "content": "Hey there!"}


def test_images_without_placeholders_follow_the_text() -> None:
    message = make_message(text="Look", images=[URL, "https://e.com/2.png"])
    assert message.to_openai() == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": URL}},
            {"type": "image_url", "image_url": {"url": "https://e.com/2.png"}},
        ],
    }


def test_image_only_message_has_only_image_parts() -> None:
    message = make_message(text="", images=[URL])
    assert message.to_openai() == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": URL}}],
    }


def test_placeholders_place_the_images() -> None:
    message = make_message(text="A <image> then B <image> end", images=[URL, "https://e/2"])
    assert message.to_openai() == {
        "role": "user",
        "content": [
            {"type": "text", "text": "A"},
            {"type": "image_url", "image_url": {"url": URL}},
            {"type": "text", "text": "then B"},
            {"type": "image_url", "image_url": {"url": "https://e/2"}},
            {"type": "text", "text": "end"},
        ],
    }


def test_placeholder_at_start_gives_image_first() -> None:
    message = make_message(text="<image> what is it?", images=[URL])
    assert message.to_openai()["content"] == [
        {"type": "image_url", "image_url": {"url": URL}},
        {"type": "text", "text": "what is it?"},
    ]


def test_messages_built_from_input_refuse_gridfs_references() -> None:
    # A reference from input could point a message at another user's stored image.
    with pytest.raises(ImageFormatError):
        make_message(images=["gridfs:6650c4a1b2c3d4e5f6a7b8c9"])


def test_placeholder_count_mismatch_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="placeholder"):
        make_message(text="<image> <image>", images=[URL])


def test_placeholders_without_images_stay_text() -> None:
    message = make_message(text="literal <image>")
    assert message.to_openai() == {"role": "user", "content": "literal <image>"}


def test_openai_string_content_parses_to_text() -> None:
    assert _openai.message_fields_from_openai({"role": "system", "content": "Be brief"}, 0) == (
        "system",
        "Be brief",
        [],
    )


def test_openai_text_parts_join_with_newlines() -> None:
    message = {
        "role": "user",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    assert _openai.message_fields_from_openai(message, 0) == ("user", "a\nb", [])


def test_openai_image_parts_become_placeholders() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is"},
            {"type": "image_url", "image_url": {"url": URL}},
            {"type": "text", "text": "this?"},
        ],
    }
    assert _openai.message_fields_from_openai(message, 0) == (
        "user",
        "What is <image> this?",
        [URL],
    )


def test_openai_parts_round_trip() -> None:
    openai = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is"},
            {"type": "image_url", "image_url": {"url": URL}},
            {"type": "text", "text": "this?"},
            {"type": "image_url", "image_url": {"url": "https://e/2"}},
        ],
    }
    role, text, images = _openai.message_fields_from_openai(openai, 0)
    assert RoleMessage(role=role, text=text, images=images).to_openai() == openai


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("user: hi", id="not-a-dict"),
        pytest.param({"content": "hi"}, id="no-role"),
        pytest.param({"role": 1, "content": "hi"}, id="int-role"),
        pytest.param({"role": "user"}, id="no-content"),
        pytest.param({"role": "user", "content": {"type": "text"}}, id="dict-content"),
        pytest.param({"role": "user", "content": b"hi"}, id="bytes-content"),
        pytest.param({"role": "user", "content": [{"type": "audio"}]}, id="unknown-part"),
        pytest.param({"role": "user", "content": ["hi"]}, id="string-part"),
        pytest.param(
            {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
            id="image-without-url",
        ),
        pytest.param({"role": "user", "content": [{"type": "text", "text": 1}]}, id="int-text"),
    ],
)
def test_openai_messages_of_other_shapes_are_invalid(message: object) -> None:
    with pytest.raises(InvalidInputError):
        _openai.message_fields_from_openai(message, 0)


# -- _images ---------------------------------------------------------------------------------


def test_urls_and_data_uris_are_kept_as_they_are() -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    http = "http://example.com/a.jpg"
    assert _images.normalize_images([URL, http, data_uri]) == [URL, http, data_uri]


def test_none_images_is_an_empty_list() -> None:
    assert _images.normalize_images(None) == []
    assert _images.normalize_images([]) == []


def test_png_file_becomes_a_png_data_uri(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2), (255, 0, 0)).save(path)
    for given in (str(path), path):
        uri = _images.normalize_image(given)
        assert uri.startswith("data:image/png;base64,")
        assert data_uri_payload(uri) == path.read_bytes()


def test_extensionless_file_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "photo"
    Image.new("RGB", (2, 2)).save(path, format="JPEG")
    assert _images.normalize_image(str(path)).startswith("data:image/jpeg;base64,")


def test_file_type_from_extension_when_magic_unknown(tmp_path: Path) -> None:
    path = tmp_path / "pic.tiff"
    Image.new("RGB", (2, 2)).save(path, format="TIFF")
    assert _images.normalize_image(path).startswith("data:image/tiff;base64,")


def test_webp_file_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "pic.bin"
    Image.new("RGB", (2, 2)).save(path, format="WEBP")
    assert _images.normalize_image(path).startswith("data:image/webp;base64,")


def test_bytes_become_a_data_uri_of_the_sniffed_type() -> None:
    data = png_bytes()
    uri = _images.normalize_image(data)
    assert uri.startswith("data:image/png;base64,")
    assert data_uri_payload(uri) == data
    gif = b"GIF89a" + b"\x00" * 10
    assert _images.normalize_image(bytearray(gif)).startswith("data:image/gif;base64,")


def test_pil_image_becomes_a_png_data_uri() -> None:
    uri = _images.normalize_image(Image.new("RGBA", (3, 2), (0, 0, 255, 128)))
    assert uri.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(data_uri_payload(uri)))
    assert decoded.size == (3, 2)


@pytest.mark.parametrize("mode", ["CMYK", "F"])
def test_pil_image_of_any_mode_becomes_a_data_uri(mode: str) -> None:
    # CMYK is what PIL opens most print-ready JPEGs as.
    uri = _images.normalize_image(Image.new(mode, (2, 2)))
    assert uri.startswith("data:image/")
    assert data_uri_payload(uri)


def test_opened_pil_image_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("L", (2, 2)).save(path)
    with Image.open(path) as image:
        assert _images.normalize_image(image).startswith("data:image/png;base64,")


def test_missing_file_is_an_image_format_error(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError):
        _images.normalize_image(str(tmp_path / "missing.png"))
    with pytest.raises(ImageFormatError):
        _images.normalize_image(tmp_path / "missing.png")


def test_directory_is_an_image_format_error(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError):
        _images.normalize_image(str(tmp_path))


def test_non_image_file_is_an_image_format_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ImageFormatError):
        _images.normalize_image(path)


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("data:image/png;base64,not base64!", id="bad-payload"),
        pytest.param("data:image/png,abcd", id="not-base64"),
        pytest.param("data:;base64,AAAA", id="no-type"),
        pytest.param("data:image;base64,AAAA", id="half-type"),
        pytest.param("data:image/png;base64,AAA", id="bad-padding"),
    ],
)
def test_malformed_data_uri_is_an_image_format_error(uri: str) -> None:
    with pytest.raises(ImageFormatError):
        _images.normalize_image(uri)


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(42, id="int"),
        pytest.param(None, id="none"),
        pytest.param({"url": URL}, id="dict"),
        pytest.param(["nested"], id="list"),
        pytest.param("ftp://example.com/a.png", id="ftp-url"),
    ],
)
def test_other_kinds_are_image_format_errors(image: object) -> None:
    with pytest.raises(ImageFormatError):
        _images.normalize_image(image)


@pytest.mark.parametrize("images", [URL, PNG_MAGIC, 5], ids=["str", "bytes", "int"])
def test_a_single_image_instead_of_a_list_is_an_image_format_error(images: object) -> None:
    with pytest.raises(ImageFormatError):
        _images.normalize_images(images)  # type: ignore[arg-type]


def test_gridfs_references() -> None:
    ref = _images.blob_ref("abc123")
    assert ref == "gridfs:abc123"
    assert _images.is_blob_ref(ref)
    assert not _images.is_blob_ref(URL)
    assert _images.blob_id_of(ref) == "abc123"


def test_data_uri_splits_and_joins_back() -> None:
    data = png_bytes()
    uri = _images.bytes_to_data_uri(data, "image/png")
    split = _images.split_data_uri(uri)
    assert split == ("data:image/png;base64,", data)
    assert _images.join_data_uri(*split) == uri
    assert _images.split_data_uri(URL) is None
    # base64 that would not re-encode to the same text stays inline
    assert _images.split_data_uri("data:image/png;base64,AB==") is None


def test_image_format_error_is_an_invalid_input_error() -> None:
    assert issubclass(ImageFormatError, InvalidInputError)
    assert issubclass(InvalidInputError, ValueError)


# -- checks of message edits and batches (_state), image placement (_images) -----------

PIXEL_URI = "data:image/png;base64,iVBORw0KGgo="


def test_message_changes_keep_only_the_fields_given_checked() -> None:
    assert message_changes(text="new", metadata=None, private=None) == {"text": "new"}
    assert message_changes(text=None, metadata={"k": 1}, private=True) == {
        "metadata": {"k": 1},
        "private": True,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"text": None, "metadata": None, "private": None},
        {"text": 3, "metadata": None, "private": None},
        {"text": "\ud800", "metadata": None, "private": None},
        {"text": None, "metadata": {"$bad": 1}, "private": None},
        {"text": None, "metadata": None, "private": "yes"},
    ],
)
def test_message_changes_refuse_nothing_and_bad_values(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        message_changes(**fields)


def test_changed_message_checks_a_new_text_against_the_images() -> None:
    with_image = RoleMessage(role="user", text="see <image>", images=[PIXEL_URI])
    assert changed_message(with_image, {"text": "now <image>"}).text == "now <image>"
    assert changed_message(with_image, {"text": ""}).images == [PIXEL_URI]
    with pytest.raises(InvalidInputError):
        changed_message(with_image, {"text": "two <image> <image>"})
    plain = RoleMessage(role="user", text="hi")
    with pytest.raises(InvalidInputError):
        changed_message(plain, {"text": ""})
    assert changed_message(plain, {"private": True}).private is True


def test_appended_batch_sets_the_thread_and_refuses_what_cannot_append() -> None:
    first, second = RoleMessage(role="user", text="a"), RoleMessage(role="user", text="b")
    batch = appended_batch((m for m in [first, second]), "t1", ["old"])
    assert [(m.id, m.thread_id) for m in batch] == [(first.id, "t1"), (second.id, "t1")]
    assert appended_batch([], "t1", []) == []
    other = first.model_copy(update={"thread_id": "t2"})
    refused: list[tuple[object, list[str]]] = [
        ("text", []),
        ({"role": "user"}, []),
        (5, []),
        ([{"role": "user", "text": "a"}], []),
        ([other], []),
        ([first, first], []),
        ([first], [first.id]),
    ]
    for messages, known in refused:
        with pytest.raises(InvalidInputError):
            appended_batch(messages, "t1", known)


@pytest.mark.parametrize(
    ("text", "images", "parts"),
    [
        ("hi", ["u1"], [("text", "hi"), ("image", "u1")]),
        ("", ["u1", "u2"], [("image", "u1"), ("image", "u2")]),
        (
            "a <image> b <image>",
            ["u1", "u2"],
            [("text", "a"), ("image", "u1"), ("text", "b"), ("image", "u2")],
        ),
        ("<image>  <image>", ["u1", "u2"], [("image", "u1"), ("image", "u2")]),
        ("no images", [], [("text", "no images")]),
    ],
)
def test_placed_parts_put_each_image_at_its_placeholder(
    text: str, images: list[str], parts: list[tuple[str, str]]
) -> None:
    assert _images.placed_parts("m1", text, images) == parts


def test_placed_parts_refuse_placeholders_that_do_not_match_the_images() -> None:
    with pytest.raises(InvalidInputError, match="'m1' has 2 <image> placeholder"):
        _images.placed_parts("m1", "<image> <image>", ["u1"])


def test_message_size_change_is_the_difference_of_the_two_elements() -> None:
    old = RoleMessage(role="user", text="short")
    new = old.model_copy(update={"text": "a good deal longer"})
    grown = _document.message_size_change(old, new)
    assert grown == len("a good deal longer") - len("short")
    assert _document.message_size_change(new, old) == -grown
    assert _document.message_size_change(old, old) == 0


def catch_up_read(state: ThreadState, page: list[RoleMessage], **changes: Any) -> dict[str, Any]:
    """What ``ThreadStore.catch_up`` returns when others appended ``page`` to ``state``."""
    found: dict[str, Any] = {
        **_document.editable_fields(state),
        "roles": [_document.role_to_document(role) for role in state.roles.values()],
        "expires_at": None,
        "ttl": None,
        "version": state.version + len(page),
        "message_count": state.message_count + len(page),
        "size_bytes": 999,
        "updated": NOW + 5,
        "index": 0,
        "page": [_document.message_to_document(m) for m in page],
    }
    found.update(changes)
    return found


def test_a_catch_up_of_appends_only_brings_the_state_to_the_store() -> None:
    state = make_state(message_count=1)
    saved = _document.editable_fields(state)
    others = [RoleMessage(role="user", text=f"m{i}", thread_id=TID) for i in range(2)]
    assert apply_catch_up(state, saved, catch_up_read(state, others, page_count=1)) is False
    assert (state.version, len(state.messages)) == (0, 1)  # a page came without its version

    found = catch_up_read(state, others, version=3, page_count=1, paged_count=4)
    assert apply_catch_up(state, saved, found) is True
    assert [m.text for m in state.messages[1:]] == ["m0", "m1"]
    assert (state.version, state.message_count, state.size_bytes) == (3, 3, 999)
    assert (state.page_count, state.paged_count, state.updated) == (1, 4, NOW + 5)


@pytest.mark.parametrize(
    "changes",
    [
        {"index": -1},
        {"version": 3},
        {"message_count": 5},
        {"name": "renamed by another object"},
        {"roles": []},
        {"ttl": 60},
    ],
    ids=["message-gone", "other-change", "deletion", "saved-field", "roles", "expiry"],
)
def test_a_catch_up_that_shows_other_changes_leaves_the_state_alone(
    changes: dict[str, Any],
) -> None:
    state = make_state(message_count=1)
    before = (state.version, list(state.messages), state.message_count, state.name)
    others = [RoleMessage(role="user", text="new", thread_id=TID)]
    found = catch_up_read(state, others, **changes)
    assert apply_catch_up(state, _document.editable_fields(state), found) is False
    assert (state.version, list(state.messages), state.message_count, state.name) == before


# -- windows of matching messages ---------------------------------------------------------


def test_plan_window_crosses_pages_and_the_inline_part() -> None:
    regions = [(0, 3), (1, 0), (2, 5), (-1, 4)]
    assert _pages.plan_window(regions, 0, None) == [(0, 0, 3), (2, 0, 5), (-1, 0, 4)]
    assert _pages.plan_window(regions, 2, 4) == [(0, 2, 1), (2, 0, 3)]
    assert _pages.plan_window(regions, 8, 10) == [(-1, 0, 4)]
    assert _pages.plan_window(regions, 10, 1) == [(-1, 2, 1)]
    assert _pages.plan_window(regions, 12, None) == []
    assert _pages.plan_window(regions, 0, 0) == []


def test_region_counts_add_up_totals_and_matches() -> None:
    counts = _pages.RegionCounts(7, ((0, 50, 10), (-1, 30, 29)), pending=False)
    assert (counts.total, counts.matching) == (80, 39)


def test_metadata_match_compares_literals_and_refuses_path_keys_that_are_operators() -> None:
    condition = _updates.metadata_match(("llama_index", "status"), "$active", "x")
    assert condition == {
        "$eq": [
            {"$ifNull": ["$$this.metadata.llama_index.status", {"$literal": "x"}]},
            {"$literal": "$active"},
        ]
    }
    for key in ("$where", "a.b", ""):
        with pytest.raises(InvalidInputError):
            _updates.metadata_match(("llama_index", key), "active", "active")


def test_match_counts_pipeline_is_one_document_of_counts() -> None:
    pipeline = _updates.match_counts_pipeline("t", "threads.pages", None)
    assert pipeline[0] == {"$match": {"_id": "t"}}
    assert pipeline[-1] == {"$group": {"_id": None, "rows": {"$push": "$$ROOT"}}}
    union = pipeline[2]["$unionWith"]
    assert union["coll"] == "threads.pages"
    assert union["pipeline"][0] == {"$match": {"thread_id": "t"}}


def test_the_first_move_says_whether_pages_hold_images_and_later_moves_only_raise_it() -> None:
    plain, imaged = [{"id": "a"}], [{"id": "b", "blobs": ["f1"]}]
    first = {"page_count": 0}
    assert _pages.paged_blobs_change(first, plain) == {"paged_blobs": False, "new_field": True}
    assert _pages.paged_blobs_change(first, imaged) == {"paged_blobs": True, "new_field": True}
    assert _pages.paged_blobs_change({"page_count": 2, "paged_blobs": False}, imaged) == {
        "paged_blobs": True
    }
    assert _pages.paged_blobs_change({"page_count": 2, "paged_blobs": True}, plain) == {}
    assert _pages.paged_blobs_change({"page_count": 2, "paged_blobs": False}, plain) == {}
    # Pages from before the field: unknown, and a deletion reads them.
    assert _pages.paged_blobs_change({"page_count": 2}, imaged) == {}


def test_a_new_paged_blobs_field_is_counted_in_the_size() -> None:
    _, plain = _updates.move_to_page(TID, 3, ["a"], 100, NOW)
    _, first = _updates.move_to_page(TID, 3, ["a"], 100, NOW, paged_blobs=False, new_field=True)
    _, raised = _updates.move_to_page(TID, 3, ["a"], 100, NOW, paged_blobs=True)
    assert "paged_blobs" not in plain["$set"]
    assert first["$set"]["paged_blobs"] is False
    assert first["$inc"]["size_bytes"] > plain["$inc"]["size_bytes"]
    assert raised["$inc"]["size_bytes"] == plain["$inc"]["size_bytes"]


def test_a_thread_made_with_pages_says_whether_they_hold_images() -> None:
    gridfs = "gridfs:" + "0" * 24
    messages = [make_message(id=f"00000000-0000-4000-8000-00000000000{i}") for i in range(3)]
    messages[0] = messages[0].model_copy(update={"images": [gridfs]})
    for paged, expected in ((1, True), (0, None)):
        state = make_state(messages=messages, page_count=paged, paged_count=paged)
        doc = _document.thread_to_document(state)
        assert doc.get("paged_blobs") is expected
