"""The overflow pages of long threads: one collection, ``<threads collection>.pages``.

What a page is, and the rules that keep pages consistent with their thread document,
are in ``threadmem_mongo._pages``; this class only reads and writes page documents.
``AsyncThreadStore`` owns one and decides when it is used.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_page_store.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from threadmem_mongo import _pages
from threadmem_mongo._async_collection import AsyncGuardedCollection
from threadmem_mongo._driver import translated

Document = dict[str, Any]

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
    """Reads and writes the page documents of one threads collection.

    Args:
        collection: The pages collection (``<threads collection>.pages``).
    """

    def __init__(self, collection: AsyncGuardedCollection) -> None:
        self._collection = collection

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The pages collection."""
        return self._collection.raw

    async def ensure_indexes(self) -> None:
        """Create the pages collection's indexes. Idempotent."""
        for name, keys, options in PAGE_INDEXES:
            await self._collection.create_index(keys, name=name, **options)

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
        pages = await self._collection.find({"thread_id": thread_id}, {"messages.blobs": 1})
        return [
            blob_id
            for page in pages
            for message in page.get("messages") or []
            for blob_id in message.get("blobs") or []
        ]

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
            {"thread_id": thread_id, "n": {"$gte": page_count}, "written_at": {"$lt": cutoff}}
        )

    async def thread_ids(self) -> list[str]:
        """Return the ids of every thread that has pages."""
        return [str(value) for value in await self._collection.distinct("thread_id")]
