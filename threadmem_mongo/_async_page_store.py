"""The overflow pages of long threads: one collection, ``<threads collection>.pages``.

What a page is, and the rules that keep pages consistent with their thread document,
are in ``threadmem_mongo._pages``; this class only reads and writes page documents.
``AsyncThreadStore`` owns one and decides when it is used; the moves of messages to pages
and the completion of pending changes, which write a page and then the thread document,
are here too.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_page_store.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from threadmem_mongo import _pages, _updates
from threadmem_mongo._async_collection import AsyncGuardedCollection
from threadmem_mongo._driver import translated
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES

Document = dict[str, Any]

#: How often a move re-reads the thread when others wrote in between.
MOVE_ATTEMPTS = 3

#: The server code of a write that met an existing key.
DUPLICATE_KEY = 11000

#: Indexes of the pages collection: a thread's pages in order (and unique), a message
#: by id, who references an image blob, and the TTL index expiring pages with threads.
PAGE_INDEXES: tuple[tuple[str, list[tuple[str, int]], dict[str, Any]], ...] = (
    ("thread_page", [("thread_id", ASCENDING), ("n", ASCENDING)], {"unique": True}),
    ("message_id", [("messages.id", ASCENDING)], {}),
    ("message_blobs", [("messages.blobs", ASCENDING)], {}),
    ("expires_at", [("expires_at", ASCENDING)], {"expireAfterSeconds": 0}),
)


class AsyncPageStore:
    """Reads and writes the page documents of one threads collection, and runs the
    overflow protocol with the thread documents: moves, pending changes, the sweep.

    Args:
        collection: The pages collection (``<threads collection>.pages``).
        threads: The threads collection whose documents count the pages.
        limits: The inline limits that decide when a thread moves messages.
    """

    def __init__(
        self,
        collection: AsyncGuardedCollection,
        threads: AsyncGuardedCollection,
        limits: _pages.Limits,
    ) -> None:
        self._collection = collection
        self._threads = threads
        self._limits = limits

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The pages collection."""
        return self._collection.raw

    async def ensure_indexes(self) -> None:
        """Create the pages collection's indexes. Idempotent."""
        await self._collection.create_indexes(
            [IndexModel(keys, name=name, **options) for name, keys, options in PAGE_INDEXES]
        )

    async def write(self, page: Mapping[str, Any]) -> bool:
        """Write a page built from the thread at ``page["version"]``.

        It replaces a leftover page of the same number written from an older (or the
        same) view, and gives way to one written from a newer view.

        Args:
            page: From ``threadmem_mongo._pages.page_document``.

        Returns:
            False when a page written from a newer view is there (nothing was written).
        """
        query = _pages.page_write_filter(page["thread_id"], page["n"], page["version"])
        try:
            await self._collection.replace_one(query, page, upsert=True, keep=(DuplicateKeyError,))
        except DuplicateKeyError:
            return False
        return True

    async def insert_new(self, pages: Sequence[Mapping[str, Any]]) -> bool:
        """Insert the pages of a thread being created, before its document commits them.

        Args:
            pages: Page documents of one new thread, at ``_pages.CREATION_VERSION``.

        Returns:
            False, having written nothing, when a page of that thread id exists already
                (the thread does).
        """
        if not pages:
            return True
        try:
            await self._collection.insert_many(pages, keep=(DuplicateKeyError, BulkWriteError))
        except (DuplicateKeyError, BulkWriteError) as exc:
            errors = exc.details.get("writeErrors", []) if exc.details else []
            if isinstance(exc, BulkWriteError) and not all(
                error.get("code") == DUPLICATE_KEY for error in errors
            ):
                raise translated(exc, pages[0]["thread_id"]) from exc
            return False
        return True

    async def delete_uncommitted(self, thread_id: str, count: int) -> None:
        """Delete the first ``count`` pages of a creation that failed, if still as written
        (a move may have replaced one meanwhile; that one is not deleted)."""
        await self._collection.delete_many(
            {"thread_id": thread_id, "n": {"$lt": count}, "version": _pages.CREATION_VERSION}
        )

    async def committed(
        self,
        thread_id: str,
        page_count: int,
        *,
        newest_first: bool = False,
        below: int | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        """Return the thread's committed pages, in page order (or newest first).

        Args:
            thread_id: The thread.
            page_count: How many pages its document counts.
            newest_first: Newest page first.
            below: Only pages numbered below this one.
            limit: At most this many pages.

        Returns:
            The page documents.
        """
        upto = page_count if below is None else min(page_count, below)
        if upto <= 0:
            return []
        query = _pages.committed_pages_filter(thread_id, upto)
        order = [("n", DESCENDING if newest_first else ASCENDING)]
        return await self._collection.find(query, sort=order, limit=limit or 0)

    async def page_of(self, thread_id: str, page_count: int, message_id: str) -> Document | None:
        """Return the committed page holding ``message_id``, or None."""
        if page_count <= 0:
            return None
        return await self._collection.find_one(
            _pages.page_of_message_filter(thread_id, page_count, message_id)
        )

    async def numbers_of(
        self, thread_id: str, page_count: int, message_ids: Sequence[str]
    ) -> dict[str, int]:
        """Return the committed page number of each of ``message_ids`` found in a page."""
        if page_count <= 0 or not message_ids:
            return {}
        query = {
            **_pages.committed_pages_filter(thread_id, page_count),
            "messages.id": {"$in": list(message_ids)},
        }
        wanted = set(message_ids)
        return {
            message["id"]: int(page["n"])
            for page in await self._collection.find(query, {"n": 1, "messages.id": 1})
            for message in page.get("messages") or []
            if message["id"] in wanted
        }

    async def apply(self, thread_id: str, record: Mapping[str, Any]) -> None:
        """Apply a pending change to its page. Idempotent.

        Args:
            thread_id: The thread.
            record: From ``threadmem_mongo._pages.pending_record``.
        """
        for query, update in _pages.page_change_updates(thread_id, record):
            await self._collection.update_one(query, update)

    async def blob_ids(self, thread_id: str) -> list[str]:
        """Return the image blob ids the thread's pages (committed or not) reference."""
        # Only pages holding an image are sent back, so a thread without images costs
        # an empty reply rather than a subdocument per paged message.
        pages = await self._collection.find(
            {"thread_id": thread_id, "messages.blobs": {"$exists": True}}, {"messages.blobs": 1}
        )
        return [
            blob_id
            for page in pages
            for message in page.get("messages") or []
            for blob_id in message.get("blobs") or []
        ]

    async def matching_messages(
        self, thread_id: str, numbers: Sequence[int], condition: Mapping[str, Any] | None
    ) -> dict[int, list[Document]]:
        """The messages of pages ``numbers`` that match ``condition`` (see
        ``AsyncThreadStore.count_matching``), by page number, in order."""
        if not numbers:
            return {}
        rows = await self._collection.aggregate(
            [
                {"$match": {"thread_id": thread_id, "n": {"$in": list(numbers)}}},
                _updates.matching_slice_projection(condition, 0, _updates.MAX_SLICE),
            ]
        )
        return {int(row["n"]): list(row.get("messages") or []) for row in rows}

    async def delete_thread(self, thread_id: str) -> None:
        """Delete every page of a thread (committed or not)."""
        await self._collection.delete_many({"thread_id": thread_id})

    async def holds_blob(self, blob_id: str) -> bool:
        """Return whether a page references image ``blob_id``."""
        return await self._collection.find_one({"messages.blobs": blob_id}, {"_id": 1}) is not None

    async def holds_message_ids(self, thread_id: str, message_ids: Iterable[str]) -> bool:
        """Return whether a page of another thread holds one of ``message_ids``."""
        ids = list(message_ids)
        if not ids:
            return False
        found = await self._collection.find_one(
            {"thread_id": {"$ne": thread_id}, "messages.id": {"$in": ids}}, {"_id": 1}
        )
        return found is not None

    async def thread_holds_message_ids(self, thread_id: str, message_ids: Iterable[str]) -> bool:
        """Return whether a page of the thread itself holds one of ``message_ids``."""
        ids = list(message_ids)
        if not ids:
            return False
        found = await self._collection.find_one(
            {"thread_id": thread_id, "messages.id": {"$in": ids}}, {"_id": 1}
        )
        return found is not None

    async def keep_until(self, thread_id: str, expires_at: datetime.datetime | None) -> None:
        """Make the thread's pages expire no earlier than ``expires_at`` (None: never)."""
        if expires_at is None:
            await self._collection.update_many(
                {"thread_id": thread_id}, {"$set": {"expires_at": None}}
            )
        else:
            await self._collection.update_many(
                {"thread_id": thread_id, "expires_at": {"$ne": None}},
                {"$max": {"expires_at": expires_at}},
            )

    async def find_messages(
        self, element: Mapping[str, Any], pre: Mapping[str, Any]
    ) -> list[Document]:
        """Return ``{"thread_id", "created", "n", "index", "message"}`` for each matching
        message of any page (committed or not: the caller keeps the committed ones).

        Args:
            element: Equality conditions on message fields.
            pre: Conditions on the page (``thread_id``).
        """
        query: Document = dict(pre)
        if element:
            query["messages"] = {"$elemMatch": dict(element)}
        found: list[Document] = []
        order = [("created", 1), ("thread_id", 1), ("n", 1)]
        for page in await self._collection.find(query, sort=order):
            for index, message in enumerate(page.get("messages") or []):
                if all(message.get(key) == value for key, value in element.items()):
                    found.append(
                        {
                            "thread_id": page["thread_id"],
                            "created": page.get("created"),
                            "n": page["n"],
                            "index": index,
                            "message": message,
                        }
                    )
        return found

    async def delete_uncounted(
        self, thread_id: str, page_count: int, cutoff: datetime.datetime
    ) -> None:
        """Delete the thread's pages numbered ``page_count`` or more (no thread document
        counts them) that were written before ``cutoff``."""
        await self._collection.delete_many(
            _pages.uncounted_pages_filter(thread_id, page_count, cutoff)
        )

    async def thread_ids(self) -> list[str]:
        """Return the ids of every thread that has pages."""
        return [str(value) for value in await self._collection.distinct("thread_id")]

    # -- the overflow protocol, with the thread documents -----------------------------

    async def older_messages(
        self, doc: Mapping[str, Any], *, want: int | None = None, below: int | None = None
    ) -> list[Document] | None:
        """Return the newest ``want`` (all, if None) messages of the committed pages
        numbered below ``below``, oldest first, with pending changes applied; None if a
        page changed after ``doc`` was read, or a page it counts is missing (the thread
        was deleted meanwhile): read again, never a thread with a gap."""
        version = int(doc.get("version", 0))
        pending = list(doc.get(_pages.PENDING) or [])
        collected: list[list[Document]] = []
        count = 0
        upto = int(doc.get(_pages.PAGE_COUNT, 0)) if below is None else below
        while upto > 0 and (want is None or count < want):
            # Enough pages for what is wanted, if no message was deleted from them.
            batch = None if want is None else (want - count) // self._limits.page_size() + 1
            pages = await self.committed(doc["_id"], upto, newest_first=True, limit=batch)
            if not pages:
                return None
            for expected, page in enumerate(pages, start=1):
                if int(page["n"]) != upto - expected or int(page.get("version", 0)) > version:
                    return None
                messages = _pages.apply_pending(
                    list(page.get("messages") or []), pending, page["n"]
                )
                collected.append(messages)
                count += len(messages)
            upto = int(pages[-1]["n"])
        older = [message for messages in reversed(collected) for message in messages]
        return older if want is None else older[max(0, len(older) - want) :]

    async def paged_message(
        self, doc: Mapping[str, Any], message_id: str
    ) -> tuple[int, Document] | None:
        """Find a message in the pages of thread ``doc``; see
        ``AsyncThreadStore.paged_message``."""
        holder = await self.page_of(doc["_id"], int(doc.get(_pages.PAGE_COUNT, 0)), message_id)
        if holder is None:
            return None
        messages = _pages.apply_pending(
            list(holder.get("messages") or []), doc.get(_pages.PENDING) or [], holder["n"]
        )
        for message in messages:
            if message["id"] == message_id:
                return int(holder["n"]), message
        return None

    async def move(self, thread_id: str, *, room: int = 0) -> Document | None:
        """Move the thread's oldest inline messages to a new page, if it is over the
        limits; see ``AsyncThreadStore.move_overflow``. With ``room``, move every inline
        message if one more of ``room`` bytes would not fit (``make_room``)."""
        size = _updates.MAX_SLICE if room else self._limits.page_size()
        for _ in range(MOVE_ATTEMPTS):
            head = await self._threads.find_one(
                _updates.by_id(thread_id), _pages.head_projection(size)
            )
            if head is None:
                return None
            inline = int(head.get("message_count", 0)) - int(head.get(_pages.PAGED_COUNT, 0))
            if room:
                if int(head.get("size_bytes", 0)) + room <= DOCUMENT_BUDGET_BYTES:
                    return None
                # The next message becomes the newest inline one.
                moving = list(head.get("messages") or [])[:inline]
            elif not self._limits.needs_move(inline, int(head.get("size_bytes", 0))):
                return None
            else:
                # At least one message stays inline: the newest is what catch-ups
                # look for.
                moving = list(head.get("messages") or [])[: max(0, inline - 1)]
            if not moving:
                return None
            version = int(head["version"])
            page = _pages.page_document(
                thread_id,
                int(head.get(_pages.PAGE_COUNT, 0)),
                moving,
                version,
                float(head["created"]),
                head.get("expires_at"),
            )
            if not await self.write(page):
                return None  # a mover with a newer view is at it
            moved = _pages.moved_bytes(moving)
            query, update = _updates.move_to_page(
                thread_id,
                version,
                [message["id"] for message in moving],
                moved,
                time.time(),
                **_pages.paged_blobs_change(head, moving),
            )
            result = await self._threads.update_one(query, update)
            if result.matched_count:
                left = inline - len(moving)
                # What the document shrank by: the messages, less a new paged_blobs field.
                shrunk = -int(update["$inc"]["size_bytes"])
                still_over = self._limits.needs_move(left, int(head.get("size_bytes", 0)) - shrunk)
                return {
                    "version": version,
                    "moved": len(moving),
                    "moved_bytes": shrunk,
                    "still_over": still_over,
                }
        return None

    async def complete(self, thread_id: str, records: Sequence[Mapping[str, Any]]) -> int:
        """Bring pages up to date with pending records, then remove the records; see
        ``AsyncThreadStore.complete_pending``."""
        removed = 0
        for record in sorted(records, key=lambda record: int(record["v"])):
            await self.apply(thread_id, record)
            result = await self._threads.update_one(*_updates.pending_applied(thread_id, record))
            if result.matched_count:
                removed += _pages.record_size(record)
        return removed

    async def sweep(self, cutoff: datetime.datetime) -> None:
        """Delete pages written before ``cutoff`` that no thread counts: those of
        deleted or expired threads, of moves and creations that did not finish.

        A page no thread counts may be one a move has written and is about to commit
        (its writer paused, or its clock behind). So before deleting the uncounted pages
        of a thread that exists, the sweep raises the thread's version: a move commits
        only at the version it read before writing its page, so none of the pages
        written so far can be counted any more, and only those are deleted (a move
        started since writes its page from the new version, and keeps it).
        """
        for thread_id in await self.thread_ids():
            doc = await self._threads.find_one(
                _updates.by_id(thread_id), {_pages.PAGE_COUNT: 1, "version": 1}
            )
            if doc is None:
                await self.delete_uncounted(thread_id, 0, cutoff)
                continue
            page_count = int(doc.get(_pages.PAGE_COUNT, 0))
            uncounted = _pages.uncounted_pages_filter(thread_id, page_count, cutoff)
            if await self._collection.find_one(uncounted, {"_id": 1}) is None:
                continue
            version = int(doc["version"])
            fenced = await self._threads.update_one(
                *_updates.fence_moves(thread_id, version, time.time())
            )
            if fenced.matched_count:
                # Pages from views up to ``version``: their moves can no longer commit.
                await self._collection.delete_many({**uncounted, "version": {"$lte": version}})
