"""An asyncio face for mongomock, so the async API can be tested on it too.

mongomock has no async client. These classes wrap a ``mongomock.MongoClient`` and its
databases, collections and cursors, and present the part of pymongo's
``AsyncMongoClient`` / ``AsyncDatabase`` / ``AsyncCollection`` / ``AsyncCursor`` /
``AsyncCommandCursor`` interface that the library and its adapters use:

```python
client = AsyncMockClient(mongomock.MongoClient())
threads = client["app"]["threads"]
await threads.insert_one({"_id": "t1"})
docs = await threads.find({}).sort("_id", 1).limit(5).to_list()
```

Each wrapper exposes the mongomock object it wraps as ``__wrapped__``; that is how
``threadmem_mongo._capabilities`` recognises a mongomock collection behind the adapter
(no change streams, no ``$indexOfArray``). Every awaited call first yields to the event
loop once, as real network I/O would, so concurrent tasks interleave between operations
instead of running each to completion.

What mongomock lacks stays missing and fails the way it does on mongomock's own sync
client: ``watch()`` raises ``TypeError``, sessions raise ``NotImplementedError``, an
unknown aggregation operator raises ``NotImplementedError``, and ``bulk_write`` with an
``UpdateOne`` raises ``TypeError`` (mongomock 4.3 predates the ``sort`` option pymongo
passes it). A method this adapter does
not offer is looked up as a sub-collection (as pymongo does) and calling it raises
``TypeError`` naming it, so a missing piece shows up plainly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import mongomock

__all__ = [
    "AsyncMockClient",
    "AsyncMockCollection",
    "AsyncMockCommandCursor",
    "AsyncMockCursor",
    "AsyncMockDatabase",
]


async def _io_checkpoint() -> None:
    """Let other tasks run, where a real client would wait for the server."""
    await asyncio.sleep(0)


def _unwrapped(value: Any) -> Any:
    return value.__wrapped__ if isinstance(value, _Wrapper) else value


class _Wrapper:
    """Equality, hashing and repr by the wrapped mongomock object."""

    __wrapped__: Any

    def __eq__(self, other: object) -> bool:
        if isinstance(other, type(self)):
            return bool(self.__wrapped__ == other.__wrapped__)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self.__wrapped__)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__wrapped__!r})"


def _awaitable(name: str) -> Any:
    """An async method that runs the wrapped object's sync method of the same name."""

    async def method(self: _Wrapper, *args: Any, **kwargs: Any) -> Any:
        await _io_checkpoint()
        return getattr(self.__wrapped__, name)(*args, **kwargs)

    method.__name__ = name
    method.__qualname__ = name
    method.__doc__ = f"Await mongomock's ``{name}``."
    return method


class AsyncMockCursor(_Wrapper):
    """A ``find()`` cursor: chain ``sort``/``skip``/``limit``, then ``async for`` or
    ``await to_list()``.

    Args:
        cursor: The mongomock cursor.
        collection: The adapter collection it came from.
    """

    def __init__(self, cursor: Any, collection: AsyncMockCollection) -> None:
        self.__wrapped__ = cursor
        self._collection = collection

    @property
    def collection(self) -> AsyncMockCollection:
        return self._collection

    @property
    def alive(self) -> bool:
        return bool(self.__wrapped__.alive)

    def _chained(self, name: str, *args: Any, **kwargs: Any) -> AsyncMockCursor:
        getattr(self.__wrapped__, name)(*args, **kwargs)
        return self

    def sort(self, key_or_list: Any, direction: Any = None) -> AsyncMockCursor:
        return self._chained("sort", key_or_list, direction)

    def skip(self, skip: int) -> AsyncMockCursor:
        return self._chained("skip", skip)

    def limit(self, limit: int) -> AsyncMockCursor:
        return self._chained("limit", limit)

    def batch_size(self, batch_size: int) -> AsyncMockCursor:
        return self._chained("batch_size", batch_size)

    def hint(self, index: Any) -> AsyncMockCursor:
        return self._chained("hint", index)

    def max_time_ms(self, max_time_ms: int | None) -> AsyncMockCursor:
        return self._chained("max_time_ms", max_time_ms)

    def collation(self, collation: Any) -> AsyncMockCursor:
        return self._chained("collation", collation)

    def allow_disk_use(self, allow_disk_use: bool) -> AsyncMockCursor:
        return self._chained("allow_disk_use", allow_disk_use)

    async def rewind(self) -> AsyncMockCursor:
        return self._chained("rewind")

    def clone(self) -> AsyncMockCursor:
        return AsyncMockCursor(self.__wrapped__.clone(), self._collection)

    def __aiter__(self) -> AsyncMockCursor:
        return self

    async def __anext__(self) -> Any:
        await _io_checkpoint()
        try:
            return next(self.__wrapped__)
        except StopIteration:
            raise StopAsyncIteration from None

    async def next(self) -> Any:
        return await self.__anext__()

    async def to_list(self, length: int | None = None) -> list[Any]:
        await _io_checkpoint()
        if length is not None and length < 0:
            raise ValueError("to_list() length must be greater than or equal to 0")
        found: list[Any] = []
        for doc in self.__wrapped__:
            found.append(doc)
            if length is not None and len(found) >= length:
                break
        return found

    async def distinct(self, key: str) -> list[Any]:
        await _io_checkpoint()
        return list(self.__wrapped__.distinct(key))

    async def close(self) -> None:
        self.__wrapped__.close()

    async def __aenter__(self) -> AsyncMockCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncMockCommandCursor(_Wrapper):
    """The cursor ``await aggregate(...)`` and ``await list_indexes()`` return.

    Args:
        results: The wrapped mongomock command cursor, or any iterable of documents.
    """

    def __init__(self, results: Any) -> None:
        self.__wrapped__ = results
        self._iterator: Iterator[Any] = iter(results)
        self._alive = True

    @property
    def alive(self) -> bool:
        return self._alive

    def __aiter__(self) -> AsyncMockCommandCursor:
        return self

    async def __anext__(self) -> Any:
        await _io_checkpoint()
        try:
            return next(self._iterator)
        except StopIteration:
            self._alive = False
            raise StopAsyncIteration from None

    async def next(self) -> Any:
        return await self.__anext__()

    async def try_next(self) -> Any:
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return None

    async def to_list(self, length: int | None = None) -> list[Any]:
        await _io_checkpoint()
        if length is not None and length < 0:
            raise ValueError("to_list() length must be greater than or equal to 0")
        found: list[Any] = []
        for doc in self._iterator:
            found.append(doc)
            if length is not None and len(found) >= length:
                return found
        self._alive = False
        return found

    async def close(self) -> None:
        self._alive = False

    async def __aenter__(self) -> AsyncMockCommandCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncMockCollection(_Wrapper):
    """An ``AsyncCollection`` over a mongomock collection.

    Args:
        collection: The mongomock collection.
        database: The adapter database it belongs to (built from the collection's own
            database when omitted).
    """

    def __init__(self, collection: Any, database: AsyncMockDatabase | None = None) -> None:
        self.__wrapped__ = collection
        self._database = database or AsyncMockDatabase(collection.database)

    @property
    def name(self) -> str:
        return str(self.__wrapped__.name)

    @property
    def full_name(self) -> str:
        return str(self.__wrapped__.full_name)

    @property
    def database(self) -> AsyncMockDatabase:
        return self._database

    @property
    def codec_options(self) -> Any:
        return self.__wrapped__.codec_options

    def __getitem__(self, name: str) -> AsyncMockCollection:
        return AsyncMockCollection(self.__wrapped__[name], self._database)

    def __getattr__(self, name: str) -> AsyncMockCollection:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return self[name]

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            f"{self.full_name!r} is a collection, not a method: the mongomock async adapter "
            f"(tests/asyncmock.py) has no method {self.name.rsplit('.', 1)[-1]!r}"
        )

    def with_options(self, **options: Any) -> AsyncMockCollection:
        return AsyncMockCollection(self.__wrapped__.with_options(**options), self._database)

    def find(self, *args: Any, **kwargs: Any) -> AsyncMockCursor:
        return AsyncMockCursor(self.__wrapped__.find(*args, **kwargs), self)

    async def aggregate(self, pipeline: Any, *args: Any, **kwargs: Any) -> AsyncMockCommandCursor:
        await _io_checkpoint()
        return AsyncMockCommandCursor(self.__wrapped__.aggregate(pipeline, *args, **kwargs))

    async def list_indexes(self, *args: Any, **kwargs: Any) -> AsyncMockCommandCursor:
        await _io_checkpoint()
        return AsyncMockCommandCursor(self.__wrapped__.list_indexes(*args, **kwargs))

    async def watch(self, *args: Any, **kwargs: Any) -> Any:
        """Fails as on mongomock's sync client, which has no change streams."""
        return self.__wrapped__.watch(*args, **kwargs)

    find_one = _awaitable("find_one")
    insert_one = _awaitable("insert_one")
    insert_many = _awaitable("insert_many")
    replace_one = _awaitable("replace_one")
    update_one = _awaitable("update_one")
    update_many = _awaitable("update_many")
    delete_one = _awaitable("delete_one")
    delete_many = _awaitable("delete_many")
    find_one_and_update = _awaitable("find_one_and_update")
    find_one_and_replace = _awaitable("find_one_and_replace")
    find_one_and_delete = _awaitable("find_one_and_delete")
    count_documents = _awaitable("count_documents")
    estimated_document_count = _awaitable("estimated_document_count")
    distinct = _awaitable("distinct")
    bulk_write = _awaitable("bulk_write")
    create_index = _awaitable("create_index")
    create_indexes = _awaitable("create_indexes")
    drop_index = _awaitable("drop_index")
    drop_indexes = _awaitable("drop_indexes")
    index_information = _awaitable("index_information")
    options = _awaitable("options")
    rename = _awaitable("rename")
    drop = _awaitable("drop")


class AsyncMockDatabase(_Wrapper):
    """An ``AsyncDatabase`` over a mongomock database.

    Args:
        database: The mongomock database.
        client: The adapter client it belongs to (built from the database's own client
            when omitted).
    """

    def __init__(self, database: Any, client: AsyncMockClient | None = None) -> None:
        self.__wrapped__ = database
        self._client = client or AsyncMockClient(database.client)

    @property
    def name(self) -> str:
        return str(self.__wrapped__.name)

    @property
    def client(self) -> AsyncMockClient:
        return self._client

    @property
    def codec_options(self) -> Any:
        return self.__wrapped__.codec_options

    def __getitem__(self, name: str) -> AsyncMockCollection:
        return AsyncMockCollection(self.__wrapped__[name], self)

    def __getattr__(self, name: str) -> AsyncMockCollection:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return self[name]

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{self.name!r} is a database, not a method")

    def get_collection(self, name: str, **options: Any) -> AsyncMockCollection:
        return AsyncMockCollection(self.__wrapped__.get_collection(name, **options), self)

    def with_options(self, **options: Any) -> AsyncMockDatabase:
        return AsyncMockDatabase(self.__wrapped__.with_options(**options), self._client)

    async def create_collection(self, name: str, **kwargs: Any) -> AsyncMockCollection:
        await _io_checkpoint()
        return AsyncMockCollection(self.__wrapped__.create_collection(name, **kwargs), self)

    async def drop_collection(self, name_or_collection: Any, **kwargs: Any) -> None:
        await _io_checkpoint()
        self.__wrapped__.drop_collection(_unwrapped(name_or_collection), **kwargs)

    async def watch(self, *args: Any, **kwargs: Any) -> Any:
        """Fails as on mongomock's sync client, which has no change streams."""
        return self.__wrapped__.watch(*args, **kwargs)

    command = _awaitable("command")
    list_collection_names = _awaitable("list_collection_names")


class AsyncMockClient(_Wrapper):
    """An ``AsyncMongoClient`` over a ``mongomock.MongoClient``.

    Args:
        client: The mongomock client to wrap; a new one when omitted. Code holding the
            same mongomock client sees the same data through the sync interface.
    """

    def __init__(self, client: Any = None) -> None:
        self.__wrapped__ = client if client is not None else mongomock.MongoClient()

    @property
    def address(self) -> Any:
        return self.__wrapped__.address

    def __getitem__(self, name: str) -> AsyncMockDatabase:
        return AsyncMockDatabase(self.__wrapped__[name], self)

    def __getattr__(self, name: str) -> AsyncMockDatabase:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return self[name]

    def get_database(self, name: str | None = None, **options: Any) -> AsyncMockDatabase:
        return AsyncMockDatabase(self.__wrapped__.get_database(name, **options), self)

    def get_default_database(self, default: str | None = None, **options: Any) -> Any:
        return AsyncMockDatabase(self.__wrapped__.get_default_database(default, **options), self)

    def start_session(self, *args: Any, **kwargs: Any) -> Any:
        """Fails as on mongomock's sync client, which has no sessions."""
        return self.__wrapped__.start_session(*args, **kwargs)

    async def aconnect(self) -> None:
        await _io_checkpoint()

    async def drop_database(self, name_or_database: Any) -> None:
        await _io_checkpoint()
        self.__wrapped__.drop_database(_unwrapped(name_or_database))

    async def close(self) -> None:
        self.__wrapped__.close()

    async def __aenter__(self) -> AsyncMockClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    list_database_names = _awaitable("list_database_names")
    server_info = _awaitable("server_info")
