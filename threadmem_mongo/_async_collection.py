"""The one boundary every collection call crosses: ``AsyncGuardedCollection``.

The stores never call a pymongo collection directly. They hold this wrapper, whose every
method sends one command and raises the library's errors (``threadmem_mongo._driver``
decides which) instead of pymongo's. Cursors are read to the end inside the call, so no
driver error can surface later from a half-read cursor. A caller that decides on a
driver error itself (a duplicate key, an index that cannot be built) names its class in
``keep``: that error is raised as it is, for the caller to read its structured fields.

The GridFS bucket's two collections and the overflow pages go through it too. Change
streams are opened on ``raw`` by ``threadmem_mongo._async_changes``, which must tell a
resumable error from a final one before translating it with the same
``_driver.translated``.

In the async twin, ``raw`` is the collection of the running event loop: pymongo binds a
client to one loop, so on any other loop the same collection of a copy of the client is
used (``threadmem_mongo._loops`` makes the copies and closes them with their loop).

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_collection.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.results import DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from threadmem_mongo._capabilities import builds_index_models
from threadmem_mongo._driver import translated_errors

# synchro: begin async-only
from threadmem_mongo._loops import collections, running_loop

# synchro: end async-only

Document = dict[str, Any]
Keep = tuple[type[BaseException], ...]


def _thread_of(*documents: Mapping[str, Any] | None) -> str | None:
    """The thread a filter or document is about, for the context of an error."""
    for document in documents:
        if not isinstance(document, Mapping):
            continue
        for field in ("thread_id", "_id"):
            value = document.get(field)
            if isinstance(value, str):
                return value
    return None


def _guarded(keep: Keep, *documents: Mapping[str, Any] | None) -> translated_errors:
    return translated_errors(_thread_of(*documents), keep=keep)


class AsyncGuardedCollection:
    """A collection whose calls raise ``threadmem_mongo.errors`` instead of pymongo's.

    Args:
        collection: The pymongo collection (or an adapter over one) to send through.
    """

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._given = collection
        # ``_capabilities`` looks through adapters by this name.
        self.__wrapped__ = collection
        # synchro: begin async-only
        self._on_loops = collections(collection)
        # synchro: end async-only

    @property
    def raw(self) -> AsyncCollection[Document]:
        """The pymongo collection the calls go to."""
        # synchro: begin async-only
        # The one given, or, on an event loop its client does not serve, the same
        # collection of that loop's copy of the client.
        on_loops = self._on_loops
        if on_loops is not None:
            loop = running_loop()
            if loop is not None:
                found = on_loops.values.get(loop)
                return found if found is not None else on_loops.add(loop)
        # synchro: end async-only
        return self._given

    @property
    def name(self) -> str:
        """The collection's name."""
        return self._given.name

    @property
    def full_name(self) -> str:
        """``database.collection``."""
        return self._given.full_name

    def sibling(self, name: str) -> AsyncGuardedCollection:
        """Return the collection ``name`` of the same database, guarded too."""
        return AsyncGuardedCollection(self._given.database[name])

    # -- reads -------------------------------------------------------------------------

    async def find_one(
        self, query: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> Document | None:
        """Return the first document matching ``query``, or None."""
        with _guarded((), query):
            return await self.raw.find_one(dict(query), projection)

    async def find(
        self,
        query: Mapping[str, Any],
        projection: Mapping[str, Any] | None = None,
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[Document]:
        """Return every document matching ``query``, in ``sort`` order, at most ``limit``
        (0: no limit)."""
        with _guarded((), query):
            cursor = self.raw.find(dict(query), projection)
            if sort:
                cursor = cursor.sort(list(sort))
            if limit:
                cursor = cursor.limit(limit)
            return [doc async for doc in cursor]

    async def aggregate(self, pipeline: Sequence[Mapping[str, Any]]) -> list[Document]:
        """Return the results of the aggregation ``pipeline``."""
        with _guarded((), *[stage.get("$match") for stage in pipeline[:1]]):
            cursor = await self.raw.aggregate([dict(stage) for stage in pipeline])
            return [doc async for doc in cursor]

    async def distinct(self, key: str, query: Mapping[str, Any] | None = None) -> list[Any]:
        """Return the distinct values of ``key`` among the documents matching ``query``."""
        with _guarded((), query):
            return list(await self.raw.distinct(key, None if query is None else dict(query)))

    async def count_documents(self, query: Mapping[str, Any]) -> int:
        """Return how many documents match ``query``."""
        with _guarded((), query):
            return await self.raw.count_documents(dict(query))

    async def index_information(self) -> dict[str, Any]:
        """Return the collection's indexes by name."""
        with _guarded(()):
            return dict(await self.raw.index_information())

    # -- writes ------------------------------------------------------------------------

    async def insert_one(self, doc: Mapping[str, Any], *, keep: Keep = ()) -> InsertOneResult:
        """Insert ``doc``."""
        with _guarded(keep, doc):
            return await self.raw.insert_one(dict(doc))

    async def insert_many(
        self, docs: Sequence[Mapping[str, Any]], *, ordered: bool = True, keep: Keep = ()
    ) -> InsertManyResult:
        """Insert ``docs``; with ``ordered`` the first failure stops the rest."""
        with _guarded(keep, *docs[:1]):
            return await self.raw.insert_many([dict(doc) for doc in docs], ordered=ordered)

    async def replace_one(
        self,
        query: Mapping[str, Any],
        doc: Mapping[str, Any],
        *,
        upsert: bool = False,
        keep: Keep = (),
    ) -> UpdateResult:
        """Replace the document matching ``query`` with ``doc``."""
        with _guarded(keep, query, doc):
            return await self.raw.replace_one(dict(query), dict(doc), upsert=upsert)

    async def update_one(
        self, query: Mapping[str, Any], update: Any, *, keep: Keep = (), **options: Any
    ) -> UpdateResult:
        """Apply ``update`` (a document or a pipeline) to the first match of ``query``."""
        with _guarded(keep, query):
            return await self.raw.update_one(dict(query), update, **options)

    async def update_many(self, query: Mapping[str, Any], update: Any) -> UpdateResult:
        """Apply ``update`` to every document matching ``query``."""
        with _guarded((), query):
            return await self.raw.update_many(dict(query), update)

    async def delete_many(self, query: Mapping[str, Any]) -> DeleteResult:
        """Delete every document matching ``query``."""
        with _guarded((), query):
            return await self.raw.delete_many(dict(query))

    async def find_one_and_delete(
        self, query: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> Document | None:
        """Delete the first document matching ``query`` and return it (None if none)."""
        with _guarded((), query):
            return await self.raw.find_one_and_delete(dict(query), projection)

    async def create_indexes(self, indexes: Sequence[IndexModel]) -> list[str]:
        """Create the ``indexes`` that do not exist, in one command; return their names."""
        with _guarded(()):
            if builds_index_models(self.raw):
                return await self.raw.create_indexes(list(indexes))
            names = []
            for model in indexes:
                options = dict(model.document)
                keys = list(options.pop("key").items())
                names.append(await self.raw.create_index(keys, **options))
            return names

    async def create_index(
        self, keys: Sequence[tuple[str, int]], *, keep: Keep = (), **options: Any
    ) -> str:
        """Create the index on ``keys`` unless it exists; return its name."""
        with _guarded(keep):
            return await self.raw.create_index(list(keys), **options)
