"""Every MongoDB filter and update document the stores send is built here. Pure: no I/O.

Two kinds of write exist:

* **Appends** (``append_message``) need no version: ``$push`` is atomic and appends
  commute. The filter excludes a message with the same id, so a retried post lands once,
  and checks the size budget, so concurrent appends cannot push past it together.
* **Conditional changes** (everything else) carry ``{"_id": id, "version": v}`` in the
  filter: they land only if nobody changed the thread since the object read version ``v``.

Every write increments ``version`` by one and sets ``updated``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from threadmem_mongo import _validation
from threadmem_mongo._document import THREAD_FIELDS, fields_size
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES
from threadmem_mongo._pages import (
    PAGE_COUNT,
    PAGED_BLOBS,
    PAGED_COUNT,
    PENDING,
    Limits,
    record_size,
)
from threadmem_mongo.errors import InvalidInputError

Filter = dict[str, Any]
Update = dict[str, Any]

#: Projection of the small read that tells a missed write's cause apart.
STATUS_PROJECTION: dict[str, Any] = {"_id": 1, "version": 1, "size_bytes": 1}


def append_status_projection(message_id: str) -> dict[str, Any]:
    """Projection telling why an append missed: gone, already landed, or too large."""
    return {**STATUS_PROJECTION, "messages": {"$elemMatch": {"id": message_id}}}


#: Projection returning the image references of a thread's messages, and whether its
#: pages may hold more.
BLOBS_PROJECTION: dict[str, Any] = {"_id": 1, "messages.blobs": 1, PAGE_COUNT: 1, PAGED_BLOBS: 1}

THREAD_FILTER_FIELDS = ("id", "owner_id", "public", "name")

#: The largest count sent in a ``$slice``: servers take only 32-bit counts there, and no
#: thread holds that many messages, so a larger count means the same.
MAX_SLICE = 2**31 - 1


def literal(value: object) -> dict[str, object]:
    """``value`` as an aggregation constant: a string such as ``"$_id"`` stays a string
    instead of being read as a field path, and a dict is never run as an expression."""
    return {"$literal": value}


MESSAGE_FILTER_FIELDS = ("id", "role", "thread_id", "text")


def _stamp(now: float, *, size_delta: int = 0, count_delta: int = 0) -> Update:
    increments: dict[str, int] = {"version": 1}
    if size_delta:
        increments["size_bytes"] = size_delta
    if count_delta:
        increments["message_count"] = count_delta
    return {"$inc": increments, "$set": {"updated": now}}


def window_projection(last: int | None) -> dict[str, Any] | None:
    """Projection loading a thread with only its last ``last`` messages (all if None)."""
    if last is None:
        return None
    if last == 0:
        return {"messages": 0}
    # Every field named: servers differ on whether a lone $slice includes the others.
    projection: dict[str, Any] = {field: 1 for field in THREAD_FIELDS}
    projection["messages"] = {"$slice": -min(last, MAX_SLICE)}
    return projection


def creation_order(newest_first: bool) -> list[tuple[str, int]]:
    """Sort of thread listings: by creation time, ties broken by id."""
    direction = -1 if newest_first else 1
    return [("created", direction), ("_id", direction)]


def history_pipeline(thread_id: str, before: str, limit: int) -> list[dict[str, Any]]:
    """Aggregation returning the ``limit`` messages before message ``before``.

    The page is cut on the server, so only it travels; ``index`` is -1 when ``before``
    is not in the thread. Anchoring on a message id keeps pages stable while others
    append.
    """
    # $map rather than "$messages.id": the same list, and some servers only take this form.
    ids = {"$map": {"input": "$messages", "in": "$$this.id"}}
    index = {"$indexOfArray": [ids, literal(before)]}
    limit = min(limit, MAX_SLICE)
    start = {"$max": [0, {"$subtract": ["$index", limit]}]}
    paging = {field: 1 for field in PAGING_FIELDS}
    return [
        {"$match": by_id(thread_id)},
        {"$project": {**paging, "index": index, "messages": 1}},
        {
            "$project": {
                **paging,
                "index": 1,
                "page": {
                    "$cond": [
                        {"$gt": ["$index", 0]},
                        {"$slice": ["$messages", start, {"$min": [limit, "$index"]}]},
                        [],
                    ]
                },
            }
        },
    ]


def one_message_projection(message_id: str) -> dict[str, Any]:
    """Projection returning one message by id, and the version."""
    return {"version": 1, "messages": {"$elemMatch": {"id": message_id}}}


#: What a read of part of the inline messages also returns, to go on into the pages.
PAGING_FIELDS = ("version", "page_count", "paged_count", "pending")

#: Counters returned with the messages after a given one, to tell whether only appends
#: (and moves to pages) happened since (see ``AsyncThreadStore.catch_up``).
CATCH_UP_FIELDS = (
    "version",
    "message_count",
    "size_bytes",
    "updated",
    "page_count",
    "paged_count",
    "pending",
    "public",
    "name",
    "metadata",
    "roles",
    "expires_at",
    "ttl",
)


def messages_after_pipeline(thread_id: str, message_id: str) -> list[dict[str, Any]]:
    """Aggregation returning the messages after ``message_id`` (``index`` -1 if absent),
    with the thread's version, message count, size and update time."""
    ids = {"$map": {"input": "$messages", "in": "$$this.id"}}
    counters = {field: 1 for field in CATCH_UP_FIELDS}
    return [
        {"$match": by_id(thread_id)},
        {
            "$project": {
                **counters,
                "messages": 1,
                "index": {"$indexOfArray": [ids, literal(message_id)]},
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


def message_ids_elsewhere(thread_id: str, message_ids: Iterable[str]) -> Filter:
    """Filter matching a thread other than ``thread_id`` that holds one of ``message_ids``."""
    return {"_id": {"$ne": thread_id}, "messages.id": {"$in": list(message_ids)}}


def pushed_message_ids(update: Mapping[str, Any]) -> list[str]:
    """Return the ids of the messages an update appends (none for other updates)."""
    pushed = update.get("$push", {}).get("messages")
    if pushed is None:
        return []
    each = pushed.get("$each", [pushed]) if isinstance(pushed, Mapping) else []
    return [str(doc["id"]) for doc in each]


def blob_holder(blob_id: str) -> Filter:
    """Filter matching any thread with a message that references image ``blob_id``."""
    return {"messages.blobs": blob_id}


def blob_ids_of(message_docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the image blob ids the message subdocuments reference."""
    return [blob_id for doc in message_docs for blob_id in doc.get("blobs") or []]


def after_cursor(cursor: str, newest_first: bool) -> Filter:
    """Filter continuing a creation-ordered listing after ``cursor`` (see ``page_cursor``).

    Raises:
        InvalidInputError: The cursor is not one this library made.
    """
    created_text, _, thread_id = cursor.partition("|") if isinstance(cursor, str) else ("", "", "")
    try:
        created = float(created_text)
    except ValueError:
        created = float("nan")
    if not thread_id or created != created:
        raise InvalidInputError(f"after={cursor!r} is not a cursor from RoleThread.cursor")
    beyond = "$lt" if newest_first else "$gt"
    return {
        "$or": [{"created": {beyond: created}}, {"created": created, "_id": {beyond: thread_id}}]
    }


def page_cursor(created: float, thread_id: str) -> str:
    """Return the cursor of a thread in a creation-ordered listing."""
    return f"{created!r}|{thread_id}"


def set_expiry(
    thread_id: str,
    expires_at: datetime.datetime | None,
    ttl: float | None,
    size_delta: int,
    now: float,
) -> tuple[Filter, Update]:
    """Set when the thread expires (unconditional, like an append)."""
    update = _stamp(now, size_delta=size_delta)
    update["$set"].update({"expires_at": expires_at, "ttl": ttl})
    return by_id(thread_id), update


def by_id(thread_id: str) -> Filter:
    """Filter for one thread."""
    return {"_id": thread_id}


def at_version(thread_id: str, version: int) -> Filter:
    """Filter for one thread, only if it is still at ``version``."""
    return {"_id": thread_id, "version": version}


def append_message(
    thread_id: str, message_doc: Mapping[str, Any], size: int, now: float
) -> tuple[Filter, Update]:
    """Append one message: idempotent by message id, bounded by the size budget."""
    query: Filter = {
        "_id": thread_id,
        "messages.id": {"$ne": message_doc["id"]},
        "size_bytes": {"$lte": DOCUMENT_BUDGET_BYTES - size},
    }
    update = _stamp(now, size_delta=size, count_delta=1)
    update["$push"] = {"messages": dict(message_doc)}
    return query, update


def append_message_with_room(
    thread_id: str,
    message_doc: Mapping[str, Any],
    size: int,
    now: float,
    limits: Limits,
    thread_metadata: Mapping[str, Any] | None = None,
) -> tuple[Filter, Update] | None:
    """Append one message only if the thread keeps within its inline limits after it.

    The append of ``append_message``, for a writer that holds no view of the thread (an
    adapter appending by thread id): the filter also requires room for the message
    inline (fewer than ``max_messages`` inline messages, the inline bytes within
    ``max_bytes``), so a thread that lands it needs no move to an overflow page, and
    ``thread_metadata`` entries, compared as values. A miss means: no such thread, no
    room, the id is there already, or the metadata differs; the caller then takes the
    path that reads the thread first.

    Returns:
        The ``(filter, update)`` pair, or None if the message can never fit inline.
    """
    query, update = append_message(thread_id, message_doc, size, now)
    room = min(limits.max_bytes, DOCUMENT_BUDGET_BYTES) - size
    if room < 0:
        return None
    query["size_bytes"] = {"$lte": room}
    if limits.max_messages is not None:
        # Index max_messages - 1 absent: at most max_messages - 1 inline before the push.
        query[f"messages.{limits.max_messages - 1}"] = {"$exists": False}
    for key, value in (thread_metadata or {}).items():
        query[f"metadata.{_path_key(key)}"] = {"$eq": value}
    return query, update


def _path_key(key: str) -> str:
    """``key``, if it can stand in a field path as itself (no ``$``, no ``.``)."""
    if not key or key.startswith("$") or "." in key:
        raise InvalidInputError(f"invalid metadata path key {key!r}")
    return key


def page_count_is(pages: int) -> Filter:
    """Filter entries matching a thread that still has ``pages`` counted pages (no move
    since: every move raises ``page_count``)."""
    if pages:
        return {PAGE_COUNT: pages}
    return {PAGE_COUNT: {"$in": [0, None]}}


def pinned(query: Mapping[str, Any], version: int) -> Filter:
    """``query``, matching only while the thread is still at ``version``."""
    return {**query, "version": version}


def set_fields(
    thread_id: str, version: int, fields: Mapping[str, Any], size_delta: int, now: float
) -> tuple[Filter, Update]:
    """Replace top-level ``fields`` (public, name, metadata) if still at ``version``."""
    update = _stamp(now, size_delta=size_delta)
    update["$set"].update(fields)
    return at_version(thread_id, version), update


def set_fields_and_append(
    thread_id: str,
    version: int,
    fields: Mapping[str, Any],
    message_doc: Mapping[str, Any],
    size_delta: int,
    now: float,
) -> tuple[Filter, Update]:
    """Replace ``fields`` and append one message together, if still at ``version``.

    One change, like any other: a writer catching up on others' appends compares the
    fields too, so it sees that they changed and re-reads them. The filter excludes a
    message with the same id, so a miss at the same version means the message is there
    already.
    """
    query = at_version(thread_id, version)
    query["messages.id"] = {"$ne": message_doc["id"]}
    update = _stamp(now, size_delta=size_delta, count_delta=1)
    update["$set"].update(fields)
    update["$push"] = {"messages": dict(message_doc)}
    return query, update


def set_roles(
    thread_id: str,
    version: int,
    role_docs: Iterable[Mapping[str, Any]],
    size_delta: int,
    now: float,
) -> tuple[Filter, Update]:
    """Replace the role list if still at ``version``.

    The whole list is written (it is small, and the version pins what it was), so a
    change stream shows watchers the new list as it is.
    """
    update = _stamp(now, size_delta=size_delta)
    update["$set"]["roles"] = [dict(doc) for doc in role_docs]
    return at_version(thread_id, version), update


def account_last_change(update: Update, previous_bytes: int) -> int:
    """Count a new ``last_change`` in the update's size increment; return its size.

    The field replaces the previous one, whose size the caller read with the version.
    """
    new = update["$set"].get("last_change")
    if new is None:
        return previous_bytes
    new_bytes = fields_size({"last_change": new})
    update["$inc"]["size_bytes"] = update["$inc"].get("size_bytes", 0) + new_bytes - previous_bytes
    return new_bytes


def _last_change(op: str, message_ids: Iterable[str], version: int) -> dict[str, Any]:
    """The ``last_change`` field: which messages an edit or deletion touched, for watchers.

    It holds the version the change makes, so it differs from the previous value even
    when the same message is edited twice (a server omits unchanged fields from the
    change it reports).
    """
    return {"op": op, "ids": list(message_ids), "version": version + 1}


def edit_message(
    thread_id: str,
    version: int,
    message_id: str,
    changes: Mapping[str, Any],
    size_delta: int,
    now: float,
) -> tuple[Filter, Update]:
    """Set ``changes`` (text, metadata, private, images) on one message if still at ``version``.

    The positional ``$`` operator addresses the message the filter matched by id.
    """
    query = at_version(thread_id, version)
    query["messages.id"] = message_id
    update = _stamp(now, size_delta=size_delta)
    update["$set"].update({f"messages.$.{key}": value for key, value in changes.items()})
    update["$set"]["last_change"] = _last_change("message_updated", [message_id], version)
    return query, update


def edit_messages_at(
    thread_id: str,
    version: int,
    changes_by_index: Mapping[int, Mapping[str, Any]],
    message_ids: Iterable[str],
    size_delta: int,
    now: float,
    unset: Iterable[str] = (),
) -> tuple[Filter, Update]:
    """Set fields on several messages by position if still at ``version``.

    Positions are safe because the version pins the array the caller read. The fields
    named in ``unset`` are removed from each of those messages.
    """
    update = _stamp(now, size_delta=size_delta)
    update["$set"]["last_change"] = _last_change("message_updated", message_ids, version)
    removed = list(unset)
    for index, changes in changes_by_index.items():
        for key, value in changes.items():
            update["$set"][f"messages.{index}.{key}"] = value
        for key in removed:
            update.setdefault("$unset", {})[f"messages.{index}.{key}"] = ""
    return at_version(thread_id, version), update


def delete_message(
    thread_id: str, version: int, message_id: str, size: int, now: float
) -> tuple[Filter, Update]:
    """Remove one message if still at ``version``."""
    query = at_version(thread_id, version)
    query["messages.id"] = message_id
    update = _stamp(now, size_delta=-size, count_delta=-1)
    update["$pull"] = {"messages": {"id": message_id}}
    update["$set"]["last_change"] = _last_change("message_deleted", [message_id], version)
    return query, update


def append_messages(
    thread_id: str,
    version: int,
    message_docs: Iterable[Mapping[str, Any]],
    size_delta: int,
    now: float,
    fields: Mapping[str, Any] | None = None,
) -> tuple[Filter, Update]:
    """Append several messages, and set top-level ``fields``, if still at ``version``.

    Unlike ``append_message`` this is a conditional change: the caller decided on what
    it read, so the batch lands whole or not at all. ``last_change`` names the new
    messages, so a watcher told only the whole new array knows how many were added.
    """
    docs = [dict(doc) for doc in message_docs]
    query = at_version(thread_id, version)
    update = _stamp(now, size_delta=size_delta, count_delta=len(docs))
    if docs:
        ids = [doc["id"] for doc in docs]
        # A miss at the same version: one of the ids is inline already.
        query["messages.id"] = {"$nin": ids}
        update["$push"] = {"messages": {"$each": docs}}
        update["$set"]["last_change"] = _last_change("messages_added", ids, version)
    if fields:
        update["$set"].update(fields)
    return query, update


def thread_search_filter(filters: Mapping[str, object]) -> Filter:
    """Filter for ``RoleThread.find``: equality on thread fields and metadata entries.

    Raises:
        InvalidInputError: An unknown field, a non-scalar value, or a bad metadata key.
    """
    query: Filter = {}
    for field, value in filters.items():
        if field == "metadata":
            query.update(_metadata_filter(value))
        elif field in THREAD_FILTER_FIELDS:
            key = "_id" if field == "id" else field
            query[key] = _validation.check_filter_value(field, value)
        else:
            raise InvalidInputError(
                f"cannot filter threads on {field!r}; use one of "
                f"{', '.join(THREAD_FILTER_FIELDS)} or metadata"
            )
    return query


def _metadata_filter(value: object) -> Filter:
    checked = _validation.check_metadata(value, name="metadata filter")
    if not checked:
        raise InvalidInputError("metadata filter must be a non-empty dict of key/value pairs")
    query: Filter = {}
    for key, item in checked.items():
        query[f"metadata.{key}"] = _validation.check_filter_value(f"metadata[{key!r}]", item)
    return query


def message_search_conditions(filters: Mapping[str, object]) -> tuple[Filter, Filter]:
    """The equality conditions of a message search: ``(on the message, on the page)``.

    Raises:
        InvalidInputError: An unknown field or a non-scalar value.
    """
    element: Filter = {}
    page: Filter = {}
    for field, value in filters.items():
        if field not in MESSAGE_FILTER_FIELDS:
            raise InvalidInputError(
                f"cannot filter messages on {field!r}; use one of "
                f"{', '.join(MESSAGE_FILTER_FIELDS)}"
            )
        checked = _validation.check_filter_value(field, value)
        if field == "thread_id":
            page["thread_id"] = checked
        else:
            element[field] = checked
    return element, page


def message_search_pipeline(filters: Mapping[str, object]) -> list[dict[str, Any]]:
    """Aggregation for ``RoleMessage.find``: unwind only the threads that hold a match.

    The first ``$match`` runs on the ``_id`` and ``messages.id`` indexes; only matching
    messages leave the server, each as ``{"_id": thread_id, "messages": message}``.

    Raises:
        InvalidInputError: An unknown field or a non-scalar value.
    """
    element, pages_pre = message_search_conditions(filters)
    pre: Filter = {}
    if "thread_id" in pages_pre:
        pre["_id"] = pages_pre["thread_id"]
    if element:
        pre["messages"] = {"$elemMatch": element}
    return [
        {"$match": pre},
        {"$sort": {"created": 1, "_id": 1}},
        {"$project": {"messages": 1}},
        {"$unwind": "$messages"},
        {"$match": {f"messages.{key}": value for key, value in element.items()}},
    ]


# -- overflow pages (the page documents themselves are built in _pages) ------------------


def move_to_page(
    thread_id: str,
    version: int,
    message_ids: Sequence[str],
    moved: int,
    now: float,
    *,
    paged_blobs: bool | None = None,
    new_field: bool = False,
) -> tuple[Filter, Update]:
    """Commit a move: the messages now in page ``page_count`` leave the inline array.

    Conditional on ``version``: only the mover whose view is current commits, so the
    page it wrote holds exactly the messages it removes. No ``last_change``: nothing
    changed for a reader, and watchers skip an update that raises ``page_count``.

    Args:
        paged_blobs: The thread's ``paged_blobs`` after the move; None leaves it as it
            is.
        new_field: ``paged_blobs`` is not in the document yet: its bytes are counted.
    """
    update: Update = {
        "$pull": {"messages": {"id": {"$in": list(message_ids)}}},
        "$inc": {"version": 1, PAGE_COUNT: 1, PAGED_COUNT: len(message_ids), "size_bytes": -moved},
        "$set": {"updated": now},
    }
    if paged_blobs is not None:
        update["$set"][PAGED_BLOBS] = paged_blobs
        if new_field:
            update["$inc"]["size_bytes"] += fields_size({PAGED_BLOBS: paged_blobs})
    return at_version(thread_id, version), update


def fence_moves(thread_id: str, version: int, now: float) -> tuple[Filter, Update]:
    """Raise the version of a thread still at ``version``, changing nothing else, so no
    move that read the thread at ``version`` or before can commit (a sweep's fence
    before it deletes pages no thread counts)."""
    return at_version(thread_id, version), _stamp(now)


def change_paged_messages(
    thread_id: str,
    version: int,
    records: Sequence[Mapping[str, Any]],
    op: str,
    message_ids: Iterable[str],
    removed: int,
    now: float,
) -> tuple[Filter, Update]:
    """Record changes to messages in pages, if the thread is still at ``version``.

    The records (from ``_pages.pending_record``) enter ``pending`` in the same update
    that raises the version, so the change lands atomically with the thread document;
    the pages are brought up to date afterwards (``pending_applied``).

    Args:
        thread_id: The thread.
        version: The version the change is based on.
        records: One pending record per page changed.
        op: ``message_updated`` or ``message_deleted``, for watchers.
        message_ids: The messages changed, for watchers.
        removed: How many messages the change deletes.
        now: The time to stamp as ``updated``.
    """
    update = _stamp(
        now,
        size_delta=sum(record_size(record) for record in records),
        count_delta=-removed,
    )
    if removed:
        update["$inc"][PAGED_COUNT] = -removed
    update["$push"] = {PENDING: {"$each": [dict(record) for record in records]}}
    update["$set"]["last_change"] = _last_change(op, message_ids, version)
    return at_version(thread_id, version), update


def pending_applied(thread_id: str, record: Mapping[str, Any]) -> tuple[Filter, Update]:
    """Remove a pending record its page now holds. No version change: the change it
    records counted when it landed. Matches only while the record is there, so its
    bytes are taken off ``size_bytes`` once.

    A change to messages of several pages makes one record per page, all at the same
    version: each is told apart by its page too, so removing one never drops another
    whose page has not taken the change yet.
    """
    key = {"v": record["v"], "page": record["page"]}
    query: Filter = {"_id": thread_id, PENDING: {"$elemMatch": key}}
    update: Update = {
        "$pull": {PENDING: key},
        "$inc": {"size_bytes": -record_size(record)},
    }
    return query, update


def with_pending(
    built: tuple[Filter, Update], records: Sequence[Mapping[str, Any]]
) -> tuple[Filter, Update]:
    """``built`` (a change conditional on the version) that also records changes to
    messages in pages, landing together with it (see ``change_paged_messages``)."""
    query, update = built
    merged: Update = {key: dict(value) for key, value in update.items()}
    merged["$inc"]["size_bytes"] = merged["$inc"].get("size_bytes", 0) + sum(
        record_size(record) for record in records
    )
    merged["$push"] = {PENDING: {"$each": [dict(record) for record in records]}}
    return dict(query), merged


# -- counting and reading messages that match, on the server ----------------------------------


def metadata_match(path: Sequence[str], value: object, default: object) -> dict[str, Any]:
    """An aggregation condition on ``$$this``, one message subdocument: its metadata at
    ``path`` equals ``value``, a message without it counting as holding ``default``.

    ``path`` is the caller's constant (keys without ``$`` or ``.``); the values are
    ``$literal``s, never evaluated.
    """
    field = "$$this.metadata." + ".".join(_path_key(key) for key in path)
    return {"$eq": [{"$ifNull": [field, literal(default)]}, literal(value)]}


def _counts(condition: Mapping[str, Any] | None) -> dict[str, Any]:
    total = {"$size": {"$ifNull": ["$messages", []]}}
    if condition is None:
        return {"total": total, "matching": total}
    matching = {"$filter": {"input": {"$ifNull": ["$messages", []]}, "cond": dict(condition)}}
    return {"total": total, "matching": {"$size": matching}}


def match_counts_pipeline(
    thread_id: str, pages: str, condition: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """One aggregation on the threads collection: the thread's counts (how many inline
    messages, how many match ``condition``) with its ``version``, ``page_count`` and
    ``pending``, then the same counts of each of its pages (collection ``pages``).

    The result is one document whose ``rows`` are those counts. The thread's row has
    ``n`` -1 (none if there is no such thread); pages the thread does not count (``n``
    at or past its ``page_count``) are among the rows and are the caller's to leave out.
    """
    counts = _counts(condition)
    return [
        {"$match": {"_id": thread_id}},
        {
            "$project": {
                "n": literal(-1),
                "version": 1,
                PAGE_COUNT: 1,
                PENDING: 1,
                **counts,
            }
        },
        {
            "$unionWith": {
                "coll": pages,
                "pipeline": [
                    {"$match": {"thread_id": thread_id}},
                    {"$project": {"_id": 0, "n": 1, **counts}},
                ],
            }
        },
        # One document, so a thread of many pages is one reply, not a cursor to page.
        {"$group": {"_id": None, "rows": {"$push": "$$ROOT"}}},
    ]


def matching_slice_projection(
    condition: Mapping[str, Any] | None, skip: int, take: int
) -> dict[str, Any]:
    """A ``$project`` stage keeping ``messages``' matching elements ``skip`` to
    ``skip + take``, in order."""
    source: Any = "$messages"
    if condition is not None:
        source = {"$filter": {"input": {"$ifNull": ["$messages", []]}, "cond": dict(condition)}}
    return {
        "$project": {
            "n": 1,
            "messages": {"$slice": [source, min(skip, MAX_SLICE), min(max(take, 1), MAX_SLICE)]},
        }
    }
