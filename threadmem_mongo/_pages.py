"""Overflow pages: where a long thread's older messages live. Pure: no I/O.

A thread keeps its newest messages inline, in its own document. When the inline part
passes ``max_inline_messages`` (or ``max_inline_bytes``), the oldest inline messages move
to a page document in a second collection, ``<threads collection>.pages``:

```text
{
  "_id": "0b6f6c1e-...:0000000003",   # thread id and page number
  "thread_id": "0b6f6c1e-...",        # shard key: a thread's pages stay together
  "n": 3,                             # page number, from 0, oldest first
  "messages": [ ... ],                # contiguous messages, as in the thread document
  "version": 412,                     # the thread version its content was last written at
  "created": 1712140700.11,           # the thread's creation time, for ordering searches
  "expires_at": null,                 # the thread's expiry (never earlier than it)
  "written_at": ...                   # when the page was written (for sweeping leftovers)
}
```

The thread document stays the unit of atomicity and of the version:

- It counts the committed pages (``page_count``) and the messages in them
  (``paged_count``). A page counts only once the thread document says so: a page whose
  ``n`` is ``page_count`` or more is left over from a move that did not finish, and
  readers ignore it.
- A **move** writes the page first, then, in one update conditional on the version the
  mover read, removes those messages from the inline array and raises ``page_count``.
  The page is written only over an older (or equal) view of the thread, so a slow mover
  can never overwrite a newer page.
- An **edit or deletion of a paged message** is one conditional update of the thread
  document that raises the version and records the change in ``pending``; the change is
  then applied to the page and its record removed. Readers apply the records still
  pending over the pages they read, and every later writer completes them first, so a
  process that dies in between loses nothing.

A thread below the limits has none of these fields and looks as it always did.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bson

from threadmem_mongo import _validation
from threadmem_mongo._document import element_size

#: Messages a thread keeps inline by default before its oldest move to a page.
DEFAULT_MAX_INLINE_MESSAGES = 100
#: Bytes of inline messages a thread keeps by default before its oldest move to a page.
DEFAULT_MAX_INLINE_BYTES = 1024 * 1024

#: The suffix of the pages collection's name, after the threads collection's.
PAGES_SUFFIX = ".pages"

#: Sorts after every page number: where inline messages stand in a search's order.
INLINE_PAGE = 2**62

#: The ``version`` of the pages a thread is created with: older than any view of the
#: thread, so a move may replace them, and a failed creation deletes only these.
CREATION_VERSION = -1

#: Thread fields the overflow adds (absent until a thread first overflows).
PAGE_COUNT = "page_count"
PAGED_COUNT = "paged_count"
PENDING = "pending"
#: Whether a page of the thread may hold an image in GridFS: set with the first page and
#: raised by any move of an image, never lowered (absent from threads paged before it
#: existed, whose pages are then read to find out).
PAGED_BLOBS = "paged_blobs"

Document = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """When a thread's oldest inline messages move to a page.

    Attributes:
        max_messages: Inline messages allowed before a move; None never moves.
        max_bytes: Bytes of inline messages allowed before a move.
    """

    max_messages: int | None = DEFAULT_MAX_INLINE_MESSAGES
    max_bytes: int = DEFAULT_MAX_INLINE_BYTES

    @property
    def enabled(self) -> bool:
        """Whether messages ever move out of the thread document."""
        return self.max_messages is not None

    def page_size(self) -> int:
        """How many messages one move takes: half the inline limit (at least one).

        Half, so the inline part after a move still holds the newest half, and the
        newest ``N`` messages for ``N`` up to that are one read.
        """
        limit = DEFAULT_MAX_INLINE_MESSAGES if self.max_messages is None else self.max_messages
        return max(1, limit // 2)

    def needs_move(self, inline_messages: int, inline_bytes: int) -> bool:
        """Whether a thread with this much inline should move its oldest messages."""
        if self.max_messages is None or inline_messages <= 1:
            return False
        return inline_messages > self.max_messages or inline_bytes > self.max_bytes


def checked_limits(max_messages: object, max_bytes: object) -> Limits:
    """Return the ``Limits`` for the ``max_inline_messages`` and ``max_inline_bytes``
    settings, or raise ``InvalidInputError``."""
    if max_messages is not None:
        _validation.check_count("max_inline_messages", max_messages, minimum=2)
    _validation.check_count("max_inline_bytes", max_bytes, minimum=1)
    return Limits(max_messages, max_bytes)  # type: ignore[arg-type]


def page_id(thread_id: str, n: int) -> str:
    """The ``_id`` of page ``n`` of a thread: sorts in page order within the thread."""
    return f"{thread_id}:{n:010d}"


def page_document(
    thread_id: str,
    n: int,
    messages: Sequence[Mapping[str, Any]],
    version: int,
    created: float,
    expires_at: Any,
) -> Document:
    """Return the document of page ``n``, holding ``messages`` as of thread ``version``."""
    return {
        "_id": page_id(thread_id, n),
        "thread_id": thread_id,
        "n": n,
        "messages": [dict(message) for message in messages],
        "version": version,
        "created": created,
        "expires_at": expires_at,
        "written_at": datetime.datetime.now(datetime.timezone.utc),
    }


def page_write_filter(thread_id: str, n: int, version: int) -> Document:
    """Filter replacing page ``n`` only over a view of the thread no newer than ``version``.

    With ``upsert``, a page written from a newer view makes the replacement fail with a
    duplicate key, and the slower mover gives up instead of overwriting it.
    """
    return {"_id": page_id(thread_id, n), "version": {"$lte": version}}


def uncounted_pages_filter(thread_id: str, page_count: int, cutoff: datetime.datetime) -> Document:
    """Filter of a thread's pages numbered ``page_count`` or more (its document does not
    count them) written before ``cutoff``."""
    return {"thread_id": thread_id, "n": {"$gte": page_count}, "written_at": {"$lt": cutoff}}


def committed_pages_filter(thread_id: str, page_count: int) -> Document:
    """Filter of the pages a thread's document counts."""
    return {"thread_id": thread_id, "n": {"$lt": page_count}}


def page_of_message_filter(thread_id: str, page_count: int, message_id: str) -> Document:
    """Filter of the committed page holding message ``message_id``."""
    return {**committed_pages_filter(thread_id, page_count), "messages.id": message_id}


def paged_blobs_change(head: Mapping[str, Any], moving: Sequence[Mapping[str, Any]]) -> Document:
    """How a move of ``moving`` changes the thread's ``paged_blobs`` (``move_to_page``'s
    options), given what the mover read (``head_projection``)."""
    moves_blobs = any(message.get("blobs") for message in moving)
    if PAGED_BLOBS in head:
        if moves_blobs and not head[PAGED_BLOBS]:
            return {"paged_blobs": True}
        return {}
    if int(head.get(PAGE_COUNT, 0)) == 0:
        # The first page: from now on the field says whether any page holds an image.
        return {"paged_blobs": moves_blobs, "new_field": True}
    return {}  # pages from before the field: unknown, and left so


def head_projection(count: int) -> Document:
    """Projection of what a mover reads: counters, expiry and the oldest inline messages."""
    return {
        "version": 1,
        "created": 1,
        "expires_at": 1,
        "message_count": 1,
        "size_bytes": 1,
        PAGE_COUNT: 1,
        PAGED_COUNT: 1,
        PAGED_BLOBS: 1,
        "messages": {"$slice": count},
    }


# -- pending changes to paged messages -----------------------------------------------------


def pending_record(
    version: int,
    page: int,
    *,
    set_fields: Mapping[str, Mapping[str, Any]] | None = None,
    unset_fields: Mapping[str, Sequence[str]] | None = None,
    pull: Sequence[str] = (),
) -> Document:
    """A change to messages of page ``page``, made at thread ``version``.

    Args:
        version: The thread version the change makes.
        page: The page number.
        set_fields: Message id -> fields to set on that message.
        unset_fields: Message id -> fields to remove from that message.
        pull: Ids of messages to delete.
    """
    return {
        "v": version,
        "page": page,
        "set": {key: dict(value) for key, value in (set_fields or {}).items()},
        "unset": {key: list(value) for key, value in (unset_fields or {}).items()},
        "pull": list(pull),
    }


def record_size(record: Mapping[str, Any]) -> int:
    """The bytes a pending record adds to the thread document."""
    return len(bson.encode(dict(record))) + 32


def moved_bytes(messages: Iterable[Mapping[str, Any]]) -> int:
    """The bytes moved messages took in the thread document (as ``size_bytes`` counts)."""
    return sum(element_size(message) for message in messages)


def apply_pending(
    messages: list[Document], records: Iterable[Mapping[str, Any]], page: int
) -> list[Document]:
    """Return page ``page``'s messages with the pending records for it applied, in order.

    Applying a record twice gives the same result, so a record the page already holds
    (its writer applied it, then stopped before removing the record) changes nothing.
    """
    result = [dict(message) for message in messages]
    for record in sorted(records, key=lambda record: int(record["v"])):
        if int(record["page"]) != page:
            continue
        pulled = set(record.get("pull") or ())
        result = [message for message in result if message["id"] not in pulled]
        sets: Mapping[str, Mapping[str, Any]] = record.get("set") or {}
        unsets: Mapping[str, Sequence[str]] = record.get("unset") or {}
        for message in result:
            message.update(sets.get(message["id"], {}))
            for name in unsets.get(message["id"], ()):
                message.pop(name, None)
    return result


def page_change_updates(
    thread_id: str, record: Mapping[str, Any]
) -> list[tuple[Document, Document]]:
    """The page updates that apply a pending record, each idempotent.

    Each raises the page's ``version`` to the record's, so a mover holding an older view
    cannot overwrite the page afterwards; and each applies only to a page no newer than
    the record, so a writer completing a record another writer completed already (and
    followed with a newer change) cannot write the older change over the newer one.
    """
    page = {"_id": page_id(thread_id, int(record["page"])), "version": {"$lte": int(record["v"])}}
    raised = {"$max": {"version": int(record["v"])}}
    sets: Mapping[str, Mapping[str, Any]] = record.get("set") or {}
    unsets: Mapping[str, Sequence[str]] = record.get("unset") or {}
    updates: list[tuple[Document, Document]] = []
    for message_id in dict.fromkeys([*sets, *unsets]):
        change: Document = dict(raised)
        if sets.get(message_id):
            change["$set"] = {f"messages.$.{k}": v for k, v in sets[message_id].items()}
        if unsets.get(message_id):
            change["$unset"] = {f"messages.$.{name}": "" for name in unsets[message_id]}
        updates.append(({**page, "messages.id": message_id}, change))
    pulled = list(record.get("pull") or [])
    if pulled:
        updates.append((page, {**raised, "$pull": {"messages": {"id": {"$in": pulled}}}}))
    return updates


def split_for_pages(
    messages: Sequence[Mapping[str, Any]], limits: Limits
) -> tuple[list[list[Mapping[str, Any]]], list[Mapping[str, Any]]]:
    """Split a new thread's messages into full pages and the inline rest, oldest first.

    Used when a thread is created with more messages than fit inline (``copy``,
    ``from_v1``, imports): the pages are written before the thread document, which
    commits them.
    """
    if not limits.enabled or not messages:
        return [], list(messages)
    size = limits.page_size()
    sizes = [_bytes(message) for message in messages]
    inline_bytes = sum(sizes)
    pages: list[list[Mapping[str, Any]]] = []
    start = 0
    # Each message is measured once; the inline rest shrinks from the front.
    while limits.needs_move(len(messages) - start, inline_bytes):
        take = min(size, len(messages) - start - 1)
        pages.append(list(messages[start : start + take]))
        inline_bytes -= sum(sizes[start : start + take])
        start += take
    return pages, list(messages[start:])


def _bytes(message: Mapping[str, Any]) -> int:
    return len(bson.encode(dict(message)))


@dataclass(frozen=True)
class RegionCounts:
    """How many messages of each part of a thread there are, and how many match.

    Attributes:
        version: The thread's version when counted.
        regions: ``(region, total, matching)`` in the thread's order: each committed
            page by number, then the inline messages as region -1.
        pending: Whether the thread holds pending changes to paged messages, which the
            pages' counts do not show yet.
    """

    version: int
    regions: tuple[tuple[int, int, int], ...]
    pending: bool

    @property
    def total(self) -> int:
        """All the thread's messages."""
        return sum(total for _, total, _ in self.regions)

    @property
    def matching(self) -> int:
        """The thread's messages that match."""
        return sum(matching for _, _, matching in self.regions)


def plan_window(
    matching: Sequence[tuple[int, int]], offset: int, limit: int | None
) -> list[tuple[int, int, int]]:
    """Which matching messages of each region to read for one window of them.

    Args:
        matching: ``(region, count)`` in the thread's order: committed pages by number,
            then the inline messages (region -1), each with how many of its messages
            match.
        offset: Matching messages to skip from the oldest.
        limit: How many to take; None for all the rest.

    Returns:
        ``(region, skip, take)`` for each region the window reaches, in order: skip
            that many of the region's matching messages and take the next ``take``.
    """
    plan: list[tuple[int, int, int]] = []
    left = None if limit is None else max(limit, 0)
    skip = max(offset, 0)
    for region, count in matching:
        if left == 0:
            break
        if skip >= count:
            skip -= count
            continue
        available = count - skip
        take = available if left is None else min(available, left)
        plan.append((region, skip, take))
        skip = 0
        if left is not None:
            left -= take
    return plan
