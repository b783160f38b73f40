"""The store: the one class that owns the ``threads`` collection and sends what the pure
core (:mod:`threadmem_mongo._updates`, :mod:`threadmem_mongo._document`) built.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_store.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from threadmem_mongo import _updates
from threadmem_mongo._driver import translated_errors
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES
from threadmem_mongo.errors import (
    InvalidInputError,
    ThreadNotFoundError,
    ThreadTooLargeError,
    VersionConflictError,
)

Document = dict[str, Any]

#: Indexes every store needs: listing a user's threads oldest first, and finding a
#: message by id without scanning threads.
INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    ("owner_created", [("owner_id", ASCENDING), ("created", ASCENDING)]),
    ("created", [("created", ASCENDING)]),
    ("message_id", [("messages.id", ASCENDING)]),
)


class AsyncThreadStore:
    """Reads and writes thread documents in one MongoDB collection.

    Apps that hold a pymongo ``AsyncMongoClient`` already can build a store on their own
    collection and pass it to :class:`~threadmem_mongo.aio.AsyncRoleThread` with
    ``store=``::

        store = AsyncThreadStore(client["myapp"]["threads"])
        await store.ensure_indexes()

    Args:
        collection: The collection holding one document per thread.
    """

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._indexes_ready = False
        self._index_lock = asyncio.Lock()

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The collection this store owns."""
        return self._collection

    async def ensure_indexes(self) -> None:
        """Create the indexes the library relies on. Idempotent; cheap after the first call.

        Raises:
            StoreUnavailableError: The server could not be reached.
        """
        if self._indexes_ready:
            return
        async with self._index_lock:
            if self._indexes_ready:
                return
            with translated_errors():
                for name, keys in INDEXES:
                    await self._collection.create_index(keys, name=name)
            self._indexes_ready = True

    # -- reads -------------------------------------------------------------------------

    async def load(self, thread_id: str) -> Document:
        """Return the whole document of ``thread_id``.

        Raises:
            ThreadNotFoundError: No such thread.
        """
        await self.ensure_indexes()
        with translated_errors(thread_id):
            doc = await self._collection.find_one(_updates.by_id(thread_id))
        if doc is None:
            raise ThreadNotFoundError(thread_id)
        return doc

    async def find(self, query: Mapping[str, Any]) -> list[Document]:
        """Return the documents matching ``query``, oldest first."""
        await self.ensure_indexes()
        with translated_errors():
            cursor = self._collection.find(dict(query)).sort([("created", 1), ("_id", 1)])
            return [doc async for doc in cursor]

    async def summaries(self, query: Mapping[str, Any], limit: int) -> list[Document]:
        """Return up to ``limit`` matching threads, newest first, without their messages."""
        await self.ensure_indexes()
        with translated_errors():
            cursor = (
                self._collection.find(dict(query), _updates.SUMMARY_PROJECTION)
                .sort([("created", -1), ("_id", -1)])
                .limit(limit)
            )
            return [doc async for doc in cursor]

    async def aggregate(self, pipeline: Sequence[Mapping[str, Any]]) -> list[Document]:
        """Return the results of an aggregation over the threads."""
        await self.ensure_indexes()
        with translated_errors():
            cursor = await self._collection.aggregate([dict(stage) for stage in pipeline])
            return [doc async for doc in cursor]

    # -- writes ------------------------------------------------------------------------

    async def insert(self, doc: Mapping[str, Any]) -> None:
        """Insert a new thread document.

        Raises:
            ThreadTooLargeError: The document is over the size budget.
            InvalidInputError: A thread with this id exists already.
        """
        await self.ensure_indexes()
        if doc["size_bytes"] > DOCUMENT_BUDGET_BYTES:
            raise ThreadTooLargeError(doc["_id"], doc["size_bytes"], DOCUMENT_BUDGET_BYTES)
        from pymongo.errors import DuplicateKeyError

        with translated_errors(doc["_id"]):
            try:
                await self._collection.insert_one(dict(doc))
            except DuplicateKeyError as exc:
                raise InvalidInputError(f"a thread with id {doc['_id']!r} exists already") from exc

    async def append(
        self, thread_id: str, message_doc: Mapping[str, Any], size: int, now: float
    ) -> tuple[int, bool]:
        """Append a message in one atomic update.

        Returns:
            ``(version, appended)``: the thread's version after the write, and False if
            the message had landed before (a retry), in which case nothing was written.

        Raises:
            ThreadNotFoundError: No such thread.
            ThreadTooLargeError: The message would push the thread over the size budget.
        """
        await self.ensure_indexes()
        if size > DOCUMENT_BUDGET_BYTES:
            raise ThreadTooLargeError(thread_id, size, DOCUMENT_BUDGET_BYTES)
        query, update = _updates.append_message(thread_id, message_doc, size, now)
        with translated_errors(thread_id):
            reply = await self._collection.find_one_and_update(
                query,
                update,
                projection=_updates.VERSION_PROJECTION,
                return_document=ReturnDocument.AFTER,
            )
            if reply is not None:
                return int(reply["version"]), True
            status = await self._collection.find_one(
                _updates.by_id(thread_id),
                _updates.append_status_projection(message_doc["id"]),
            )
        if status is None:
            raise ThreadNotFoundError(thread_id)
        if status.get("messages"):
            return int(status["version"]), False
        raise ThreadTooLargeError(
            thread_id, int(status.get("size_bytes", 0)) + size, DOCUMENT_BUDGET_BYTES
        )

    async def update_at_version(
        self,
        thread_id: str,
        version: int,
        built: tuple[Mapping[str, Any], Mapping[str, Any]],
        *,
        on_same_version: Callable[[], Exception] | None = None,
    ) -> int:
        """Apply a conditional update built by :mod:`threadmem_mongo._updates`.

        Args:
            thread_id: The thread to change.
            version: The version the change was based on; it is in the built filter.
            built: The ``(filter, update)`` pair.
            on_same_version: Builds the error to raise when the thread is still at
                ``version`` but the filter missed (a part the filter requires is gone).

        Returns:
            The new version, ``version + 1``.

        Raises:
            ThreadNotFoundError: No such thread.
            VersionConflictError: The thread is no longer at ``version``.
        """
        await self.ensure_indexes()
        query, update = built
        with translated_errors(thread_id):
            result = await self._collection.update_one(dict(query), dict(update))
            if result.matched_count == 1:
                return version + 1
            status = await self._collection.find_one(
                _updates.by_id(thread_id), _updates.STATUS_PROJECTION
            )
        if status is None:
            raise ThreadNotFoundError(thread_id)
        actual = int(status["version"])
        if actual == version and on_same_version is not None:
            raise on_same_version()
        raise VersionConflictError(thread_id, version, actual)

    async def delete(self, thread_id: str) -> bool:
        """Delete a thread; return whether it existed."""
        with translated_errors(thread_id):
            result = await self._collection.delete_one(_updates.by_id(thread_id))
            return result.deleted_count == 1
