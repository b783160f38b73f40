"""The store: the one class that owns the ``threads`` collection and sends what the pure
core (``threadmem_mongo._updates``, ``threadmem_mongo._document``) built.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_store.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from threadmem_mongo import _document, _pages, _updates, _validation
from threadmem_mongo._async_blobs import DEFAULT_BUCKET, AsyncBlobStore
from threadmem_mongo._async_changes import follow
from threadmem_mongo._async_collection import AsyncGuardedCollection
from threadmem_mongo._async_image_store import AsyncImageStore
from threadmem_mongo._async_page_store import AsyncPageStore
from threadmem_mongo._capabilities import (
    enforces_unique_array_keys,
    has_index_of_array,
)
from threadmem_mongo._driver import translated
from threadmem_mongo._images import DEFAULT_BLOB_THRESHOLD
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES

# synchro: begin async-only
from threadmem_mongo._loops import PerLoop

# synchro: end async-only
from threadmem_mongo._models import RoleMessage
from threadmem_mongo.errors import (
    ConfigurationError,
    InvalidInputError,
    MessageNotFoundError,
    StoreUnavailableError,
    ThreadMemError,
    ThreadNotFoundError,
    ThreadTooLargeError,
    VersionConflictError,
)

Document = dict[str, Any]

#: Indexes every store needs: listing a user's threads in creation order, and finding
#: who references an image blob.
INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    ("owner_created", [("owner_id", ASCENDING), ("created", ASCENDING)]),
    ("created", [("created", ASCENDING)]),
    ("message_blobs", [("messages.blobs", ASCENDING)]),
)

#: Finds a message by id without scanning threads, and keeps message ids unique across
#: threads. Partial, so threads without messages (which index no id) are not duplicates
#: of each other.
MESSAGE_ID_INDEX = "message_id_unique"
MESSAGE_ID_KEYS = [("messages.id", ASCENDING)]
MESSAGE_ID_PARTIAL = {"messages.id": {"$exists": True}}
#: The same key without uniqueness: where the server cannot enforce it (a sharded
#: cluster, mongomock), and as earlier releases made it.
LEGACY_MESSAGE_ID_INDEX = "message_id"

#: Server codes: an index build met duplicate keys; an index cannot be made here (a
#: unique index on a sharded collection that does not start with the shard key).
DUPLICATE_KEY = 11000
CANNOT_CREATE_INDEX = 67

#: How often a read of a long thread starts again when a page changed after the thread
#: document was read (an edit landed in between).
PAGED_READ_ATTEMPTS = 5
#: How often an append that fits but missed (the thread changed between its filter and
#: the read that tells why) is sent again.
APPEND_ATTEMPTS = 3

#: The TTL index: the server deletes a thread once its ``expires_at`` has passed.
TTL_INDEX: tuple[str, list[tuple[str, int]]] = ("expires_at", [("expires_at", ASCENDING)])


def _message_id_taken(thread_id: str, message_ids: Sequence[str]) -> InvalidInputError:
    return InvalidInputError(
        f"a message id of {message_ids!r} already belongs to another thread than "
        f"{thread_id!r}; message ids are unique across threads: post a new message (or copy "
        "the thread, which gives its messages new ids)"
    )


class AsyncThreadStore:
    """Reads and writes thread documents in one MongoDB collection.

    Apps that hold a pymongo ``AsyncMongoClient`` already can build a store on their own
    collection and pass it to ``AsyncRoleThread`` with ``store=``:

    ```python
    store = AsyncThreadStore(client["myapp"]["threads"])
    await store.ensure_indexes()
    ```

    What apps use directly is ``ensure_indexes``, ``sweep_blobs``, and the
    ``collection``, ``blobs`` and ``image_threshold`` properties. Most other methods are
    the low-level steps ``AsyncRoleThread`` is built on; apps normally call the
    ``AsyncRoleThread`` methods, which keep the object's state and the invariants.

    Args:
        collection: The collection holding one document per thread.
        image_threshold: Data URIs longer than this many characters are stored in
            GridFS and the message keeps a reference; 0 stores every data URI there.
        bucket: The GridFS bucket for images, in the collection's database.
        max_inline_messages: How many messages a thread document holds before its
            oldest move to an overflow page (in ``<collection>.pages``); None keeps
            every message in the thread document, as far as the 16 MB limit allows.
        max_inline_bytes: How many bytes a thread document may reach before its
            oldest messages move to a page (with ``max_inline_messages`` set).

    Raises:
        InvalidInputError: ``image_threshold`` is negative, or a limit is not a
            positive whole number.
    """

    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        image_threshold: int = DEFAULT_BLOB_THRESHOLD,
        bucket: str = DEFAULT_BUCKET,
        max_inline_messages: int | None = _pages.DEFAULT_MAX_INLINE_MESSAGES,
        max_inline_bytes: int = _pages.DEFAULT_MAX_INLINE_BYTES,
    ) -> None:
        if isinstance(image_threshold, bool) or not isinstance(image_threshold, int):
            raise InvalidInputError("image_threshold must be a whole number of characters")
        if image_threshold < 0:
            raise InvalidInputError("image_threshold must not be negative")
        self._limits = _pages.checked_limits(max_inline_messages, max_inline_bytes)
        self._collection = AsyncGuardedCollection(collection)
        self._pages = AsyncPageStore(
            self._collection.sibling(collection.name + _pages.PAGES_SUFFIX),
            self._collection,
            self._limits,
        )
        self._blobs = AsyncBlobStore(collection.database, bucket)
        self._images = AsyncImageStore(self._blobs, self._collection, self._pages, image_threshold)
        self._indexes_ready = False
        self._index_lock = asyncio.Lock()
        # synchro: begin async-only
        # An asyncio lock serves one event loop only, and this store may be used from
        # several at once: each gets a lock of its own.
        self._index_locks = PerLoop(lambda loop: asyncio.Lock())
        # synchro: end async-only
        # Whether the server keeps message ids unique across threads (decided by
        # ensure_indexes); until then, ids are checked by a read.
        self._unique_ids = False

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The collection this store owns (in the async API, as seen from the running
        event loop: see ``threadmem_mongo.aio``)."""
        return self._collection.raw

    @property
    def blobs(self) -> AsyncBlobStore:
        """The GridFS bucket holding large images."""
        return self._blobs

    @property
    def image_threshold(self) -> int:
        """Data URIs longer than this many characters are stored in GridFS."""
        return self._images.threshold

    @property
    def pages(self) -> AsyncPageStore:
        """The overflow pages of this store's long threads."""
        return self._pages

    @property
    def limits(self) -> _pages.Limits:
        """When a thread's oldest messages move to an overflow page."""
        return self._limits

    async def ensure_indexes(self) -> None:
        """Create the indexes the library relies on. Idempotent; cheap after the first call.

        Creates the indexes of the threads collection, the ``expires_at`` TTL index, and
        the GridFS bucket's indexes. Loading, finding and writing threads call it first,
        so calling it yourself is optional: do it at start-up to build the indexes
        before the first request.

        Raises:
            StoreUnavailableError: The server could not be reached.
        """
        if self._indexes_ready:
            return
        lock = self._index_lock
        # synchro: begin async-only
        lock = self._index_locks.get(asyncio.get_running_loop())
        # synchro: end async-only
        async with lock:
            if self._indexes_ready:
                return
            ttl_name, ttl_keys = TTL_INDEX
            await self._collection.create_indexes(
                [IndexModel(keys, name=name) for name, keys in INDEXES]
                + [IndexModel(ttl_keys, name=ttl_name, expireAfterSeconds=0)]
            )
            await self._ensure_message_id_index()
            await self._pages.ensure_indexes()
            await self._blobs.ensure_indexes()
            self._indexes_ready = True

    async def _ensure_message_id_index(self) -> None:
        """Index message ids, unique across threads where the server can enforce it.

        A sharded cluster cannot (a unique index must start with the shard key), nor can
        mongomock, and a collection made by an earlier release has a non-unique index:
        there the ids of a message that is not new are checked by a read instead (see
        ``_check_ids_elsewhere``).
        """
        existing = await self._collection.index_information()
        if MESSAGE_ID_INDEX in existing:
            self._unique_ids = True
            return
        if LEGACY_MESSAGE_ID_INDEX in existing or not enforces_unique_array_keys(self._collection):
            await self._collection.create_index(MESSAGE_ID_KEYS, name=LEGACY_MESSAGE_ID_INDEX)
            self._unique_ids = False
            return
        try:
            await self._collection.create_index(
                MESSAGE_ID_KEYS,
                name=MESSAGE_ID_INDEX,
                unique=True,
                partialFilterExpression=MESSAGE_ID_PARTIAL,
                keep=(OperationFailure,),
            )
            self._unique_ids = True
        except OperationFailure as exc:
            if exc.code == DUPLICATE_KEY:
                raise ConfigurationError(
                    f"{self._collection.full_name} holds message ids that appear in more "
                    "than one thread, so the unique index on messages.id cannot be built; "
                    "give those messages new ids (for example by copying the threads) and "
                    "try again"
                ) from exc
            if exc.code != CANNOT_CREATE_INDEX:
                raise translated(exc) from exc
            await self._collection.create_index(MESSAGE_ID_KEYS, name=LEGACY_MESSAGE_ID_INDEX)
            self._unique_ids = False

    # -- reads -------------------------------------------------------------------------

    async def load(self, thread_id: str, last: int | None = None) -> Document:
        """Return the document of ``thread_id``, with only its last ``last`` messages if given.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            thread_id: The thread's id.
            last: Read only the last ``last`` messages (0: none); None reads them all.

        Returns:
            The thread document as stored, ``_id`` included.

        Raises:
            ThreadNotFoundError: No such thread.
            InvalidInputError: ``thread_id`` is not a string.
        """
        _validation.check_id("thread_id", thread_id)
        await self.ensure_indexes()
        for _ in range(PAGED_READ_ATTEMPTS):
            doc = await self._collection.find_one(
                _updates.by_id(thread_id), _updates.window_projection(last)
            )
            if doc is None:
                raise ThreadNotFoundError(thread_id)
            if await self._with_paged(doc, last):
                return doc
        raise StoreUnavailableError(
            f"thread {thread_id!r} kept changing while its pages were read; try again"
        )

    async def _with_paged(self, doc: Document, last: int | None) -> bool:
        """Put the paged messages a window of ``last`` (None: all) reaches in front of
        the inline ones of ``doc``, as read; False if the thread changed meanwhile."""
        inline = list(doc.get("messages") or [])
        if not doc.get(_pages.PAGE_COUNT) or (last is not None and len(inline) >= last):
            return True
        want = None if last is None else last - len(inline)
        older = await self._pages.older_messages(doc, want=want)
        if older is None:
            return False
        doc["messages"] = older + inline
        return True

    async def find(
        self,
        query: Mapping[str, Any],
        *,
        newest_first: bool = False,
        limit: int | None = None,
        last: int | None = None,
    ) -> list[Document]:
        """Return the documents matching ``query`` in creation order.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        The ``query`` is sent as it is, unchecked: build it with
        ``threadmem_mongo._updates.thread_search_filter``, never from client input.

        Args:
            query: The filter, from ``threadmem_mongo._updates.thread_search_filter``.
            newest_first: Newest thread first instead of oldest.
            limit: At most this many.
            last: Load only each thread's last ``last`` messages (0: none).

        Returns:
            The thread documents, ordered by ``created`` (ties by ``_id``), oldest first
                unless ``newest_first``, each with its paged messages as ``load`` reads
                them: all of them, or as many as ``last`` reaches. A thread deleted
                while its pages were read is left out.
        """
        await self.ensure_indexes()
        docs = await self._collection.find(
            query,
            _updates.window_projection(last),
            sort=_updates.creation_order(newest_first),
            limit=limit or 0,
        )
        found = []
        for doc in docs:
            if not await self._with_paged(doc, last):
                try:
                    doc = await self.load(doc["_id"], last=last)
                except ThreadNotFoundError:
                    continue
            found.append(doc)
        return found

    async def history(self, thread_id: str, before: str | None, limit: int) -> list[Document]:
        """Return up to ``limit`` message subdocuments that come before message ``before``
        (or the last ``limit`` if ``before`` is None), oldest first.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            thread_id: The thread to read.
            before: A message id of the thread, or None for the last messages.
            limit: At most this many messages.

        Returns:
            The message subdocuments as stored (images may be ``gridfs:<id>``
                references), oldest first.

        Raises:
            ThreadNotFoundError: No such thread.
            MessageNotFoundError: ``before`` is not in the thread.
        """
        if before is None:
            return list((await self.load(thread_id, last=limit)).get("messages") or [])
        await self.ensure_indexes()
        for _ in range(PAGED_READ_ATTEMPTS):
            found = await self._inline_before(thread_id, before, limit)
            page = list(found["page"])
            page_count = int(found.get(_pages.PAGE_COUNT, 0))
            if found["index"] >= 0 and (len(page) >= limit or not page_count):
                return page
            below = None
            if found["index"] < 0:
                holder = await self._pages.page_of(thread_id, page_count, before)
                if holder is None:
                    raise MessageNotFoundError(thread_id, before)
                if int(holder.get("version", 0)) > int(found.get("version", 0)):
                    continue
                messages = _pages.apply_pending(
                    list(holder.get("messages") or []), found.get(_pages.PENDING) or [], holder["n"]
                )
                ids = [message["id"] for message in messages]
                if before not in ids:
                    raise MessageNotFoundError(thread_id, before)
                position = ids.index(before)
                page = messages[max(0, position - limit) : position]
                below = int(holder["n"])
            if len(page) >= limit:
                return page
            older = await self._pages.older_messages(found, want=limit - len(page), below=below)
            if older is not None:
                return older + page
        raise StoreUnavailableError(
            f"thread {thread_id!r} kept changing while its pages were read; try again"
        )

    async def _inline_before(self, thread_id: str, before: str, limit: int) -> Document:
        """Return the inline messages before ``before`` (``index`` -1 if not inline) and
        what reading on into the pages needs."""
        if has_index_of_array(self._collection):
            found = await self._collection.aggregate(
                _updates.history_pipeline(thread_id, before, limit)
            )
        else:
            found = await self._history_from_ids(thread_id, before, limit)
        if not found:
            raise ThreadNotFoundError(thread_id)
        return found[0]

    async def _history_from_ids(self, thread_id: str, before: str, limit: int) -> list[Document]:
        paging = {field: 1 for field in _updates.PAGING_FIELDS}
        doc = await self._collection.find_one(
            _updates.by_id(thread_id), {**paging, "messages.id": 1}
        )
        if doc is None:
            return []
        ids = [message["id"] for message in doc.get("messages") or []]
        index = ids.index(before) if before in ids else -1
        if index <= 0:
            return [{**doc, "index": index, "page": []}]
        start = max(0, index - limit)
        page = await self._collection.find_one(
            _updates.by_id(thread_id), {"messages": {"$slice": [start, index - start]}}
        )
        return [{**doc, "index": index, "page": (page or {}).get("messages") or []}]

    async def find_messages(self, pipeline: Sequence[Mapping[str, Any]]) -> list[Document]:
        """Return ``{"_id": thread id, "messages": subdocument}`` for each matching message.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            pipeline: The aggregation, from
                ``threadmem_mongo._updates.message_search_pipeline``; it is sent as it
                is, unchecked.

        Returns:
            One document per matching message, in the pipeline's order.
        """
        await self.ensure_indexes()
        return await self._collection.aggregate(pipeline)

    # -- writes ------------------------------------------------------------------------

    async def insert(self, doc: Mapping[str, Any], pages: Sequence[Mapping[str, Any]] = ()) -> None:
        """Insert a new thread document, and the overflow pages it starts with.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        The pages are written first; the thread document, which counts them, commits
        them. If the document cannot be inserted the pages are deleted again (a crash
        in between leaves them to ``sweep_blobs``).

        Args:
            doc: The whole document, from ``threadmem_mongo._document.thread_to_document``
                (it must have ``_id`` and ``size_bytes``).
            pages: Its first pages, from ``threadmem_mongo._pages.page_document``.

        Raises:
            ThreadTooLargeError: The document is over the size budget.
            InvalidInputError: A thread with this id exists already, or a message id is
                already in another thread.
        """
        await self.ensure_indexes()
        if doc["size_bytes"] > DOCUMENT_BUDGET_BYTES:
            raise ThreadTooLargeError(doc["_id"], doc["size_bytes"], DOCUMENT_BUDGET_BYTES)
        message_ids = [
            message["id"] for source in (*pages, doc) for message in source.get("messages") or []
        ]
        await self._check_ids_elsewhere(doc["_id"], message_ids, in_pages=True)
        if pages and not await self._pages.insert_new(pages):
            raise InvalidInputError(f"a thread with id {doc['_id']!r} exists already")
        try:
            try:
                await self._collection.insert_one(doc, keep=(DuplicateKeyError,))
            except DuplicateKeyError as exc:
                if await self._collection.find_one(_updates.by_id(doc["_id"]), {"_id": 1}):
                    raise InvalidInputError(
                        f"a thread with id {doc['_id']!r} exists already"
                    ) from exc
                raise _message_id_taken(doc["_id"], message_ids) from exc
        except BaseException:
            if pages:
                with contextlib.suppress(ThreadMemError):
                    await self._pages.delete_uncommitted(doc["_id"], len(pages))
            raise

    async def _check_ids_elsewhere(
        self, thread_id: str, message_ids: Sequence[str], *, in_pages: bool = False
    ) -> None:
        """Refuse message ids another thread holds, where no index does it: in thread
        documents on a server that does not enforce the unique ``messages.id`` index, and
        (with ``in_pages``) in other threads' overflow pages, which the threads
        collection's index does not see."""
        if not message_ids:
            return
        if not self._unique_ids:
            holder = await self._collection.find_one(
                _updates.message_ids_elsewhere(thread_id, message_ids), {"_id": 1}
            )
            if holder is not None:
                raise _message_id_taken(thread_id, message_ids)
        if in_pages and await self._pages.holds_message_ids(thread_id, message_ids):
            raise _message_id_taken(thread_id, message_ids)

    async def append(
        self,
        thread_id: str,
        message_doc: Mapping[str, Any],
        size: int,
        now: float,
        known_version: int,
        known_size: int = 0,
        *,
        new_id: bool = False,
    ) -> tuple[bool, bool]:
        """Append a message in one atomic update (two when others wrote in between).

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            thread_id: The thread to append to.
            message_doc: The message subdocument.
            size: Its size in the document, from ``_document.element_size``.
            now: The time to stamp as ``updated``.
            known_version: The version the caller's object holds.
            known_size: The document size the caller's object last knew of. If the
                message would not fit in it, the current size is read first (others may
                have deleted messages), so an oversized message is never sent.
            new_id: The message's id was just made (a uuid4), so no other thread can
                hold it and no read checks it.

        Returns:
            ``(appended, in_sequence)``: ``appended`` is False if the message had landed
                before (a retry), in which case nothing was written; ``in_sequence`` is True
                if the thread was still at ``known_version``, so it is now at
                ``known_version + 1`` holding exactly the caller's state plus this message.

        Raises:
            ThreadNotFoundError: No such thread.
            ThreadTooLargeError: The message would push the thread over the size budget.
        """
        await self.ensure_indexes()
        if size > DOCUMENT_BUDGET_BYTES:
            raise ThreadTooLargeError(thread_id, size, DOCUMENT_BUDGET_BYTES)
        if known_size + size > DOCUMENT_BUDGET_BYTES:
            status = await self._collection.find_one(
                _updates.by_id(thread_id), _updates.STATUS_PROJECTION
            )
            if status is None:
                raise ThreadNotFoundError(thread_id)
            current = int(status.get("size_bytes", 0))
            if current + size > DOCUMENT_BUDGET_BYTES:
                raise ThreadTooLargeError(thread_id, current + size, DOCUMENT_BUDGET_BYTES)
        if not new_id:
            await self._check_ids_elsewhere(thread_id, [message_doc["id"]], in_pages=True)
        built = _updates.append_message(thread_id, message_doc, size, now)
        if not new_id and not await self._guard_from_moves(thread_id, built[0], message_doc):
            return False, False
        appended, in_sequence = await self._commutative_update(thread_id, built, known_version)
        for _ in range(APPEND_ATTEMPTS):
            if appended:
                return True, in_sequence
            status = await self._collection.find_one(
                _updates.by_id(thread_id), _updates.append_status_projection(message_doc["id"])
            )
            if status is None:
                raise ThreadNotFoundError(thread_id)
            if status.get("messages"):
                return False, False
            current = int(status.get("size_bytes", 0))
            if current + size > DOCUMENT_BUDGET_BYTES:
                raise ThreadTooLargeError(thread_id, current + size, DOCUMENT_BUDGET_BYTES)
            if not new_id and not await self._guard_from_moves(thread_id, built[0], message_doc):
                return False, False
            # It fits and is not there: the thread changed between the filter and this
            # read (deleted and made again under the same id, emptied, or a move since
            # the guard): send it again.
            result = await self._collection.update_one(*built)
            appended, in_sequence = bool(result.matched_count), False
        raise StoreUnavailableError(
            f"thread {thread_id!r} kept changing under an append; try again"
        )

    async def _guard_from_moves(
        self, thread_id: str, query: dict[str, Any], message_doc: Mapping[str, Any]
    ) -> bool:
        """Make an append of a message that may have landed before safe from moves.

        A retried message may have moved to one of this thread's pages since it
        landed, out of the append filter's sight: look there, and add to ``query`` that
        the thread still has the pages seen, so that a move made since (which raises
        ``page_count``) makes the append miss, and the caller look again.

        Returns:
            False if a page of the thread holds the message (it landed): do not append.

        Raises:
            ThreadNotFoundError: No such thread.
        """
        status = await self._collection.find_one(_updates.by_id(thread_id), {_pages.PAGE_COUNT: 1})
        if status is None:
            raise ThreadNotFoundError(thread_id)
        pages = int(status.get(_pages.PAGE_COUNT) or 0)
        if pages and await self._pages.thread_holds_message_ids(thread_id, [message_doc["id"]]):
            return False
        query.update(_updates.page_count_is(pages))
        return True

    async def append_if_room(
        self,
        thread_id: str,
        message: RoleMessage,
        *,
        thread_metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Append a message to a thread known only by id, in one update, if it has room.

        Low-level: the one-command append the framework adapters use, which hold no
        loaded thread. It lands only if the thread exists, holds ``thread_metadata``,
        does not hold the message's id inline, and stays within its inline limits with
        the message (so no move to an overflow page is due); otherwise nothing is
        written and the caller takes the path that loads the thread. Large images go to
        GridFS first, as with ``AsyncRoleThread.post``, and are deleted again on a miss.
        The message's id must be new (a uuid4 made for it): ids in overflow pages are
        not checked.

        Args:
            thread_id: The thread to append to.
            message: The message, built for this thread.
            thread_metadata: Thread metadata entries the thread must hold.

        Returns:
            Whether the message landed.

        Raises:
            InvalidInputError: Another thread holds the message's id; nothing was written.
            StoreUnavailableError: The server could not be reached; the message may have
                landed.
        """
        await self.ensure_indexes()
        images, written = await self.offload_images(message.images)
        doc = _document.message_to_document(
            message.model_copy(update={"images": images}) if written else message
        )
        size = _document.element_size(doc)
        built = _updates.append_message_with_room(
            thread_id, doc, size, time.time(), self._limits, thread_metadata
        )
        try:
            if built is None:
                landed = False
            else:
                result = await self._collection.update_one(
                    built[0], built[1], keep=(DuplicateKeyError,)
                )
                landed = bool(result.matched_count)
        except DuplicateKeyError as exc:
            await self.discard_blobs(written)
            raise _message_id_taken(thread_id, [doc["id"]]) from exc
        except StoreUnavailableError:
            raise
        except BaseException:
            await self.discard_blobs(written)
            raise
        if not landed:
            await self.discard_blobs(written)
        return landed

    async def count_matching(
        self, thread_id: str, condition: Mapping[str, Any] | None
    ) -> _pages.RegionCounts | None:
        """Count the thread's messages, and those matching ``condition``, on the server.

        Low-level: for adapters that filter a thread's messages (LlamaIndex's statuses).
        One aggregation, whose reply holds counts only: the thread's inline messages and
        each committed page's.

        Args:
            thread_id: The thread.
            condition: An aggregation condition on ``$$this``, one message subdocument
                (``_updates.metadata_match``); None counts every message as matching.

        Returns:
            The counts, or None if there is no such thread. With ``pending`` set, the
                pages' counts may miss pending changes: read the thread instead.
        """
        pipeline = _updates.match_counts_pipeline(thread_id, self._pages.collection.name, condition)
        grouped = await self._collection.aggregate(pipeline)
        rows: list[Document] = grouped[0]["rows"] if grouped else []
        thread = next((row for row in rows if row.get("_id") == thread_id), None)
        if thread is None:
            return None
        page_count = int(thread.get(_pages.PAGE_COUNT) or 0)
        pages = sorted(
            (row for row in rows if row is not thread and 0 <= int(row["n"]) < page_count),
            key=lambda row: int(row["n"]),
        )
        regions = tuple(
            (int(row["n"]), int(row["total"]), int(row["matching"])) for row in [*pages, thread]
        )
        return _pages.RegionCounts(
            int(thread.get("version", 0)), regions, bool(thread.get(_pages.PENDING))
        )

    async def read_matching(
        self,
        thread_id: str,
        condition: Mapping[str, Any] | None,
        counts: _pages.RegionCounts,
        plan: Sequence[tuple[int, int, int]],
    ) -> list[RoleMessage] | None:
        """Read the window ``plan`` of the thread's matching messages.

        Low-level: the second step after ``count_matching``. The pages the window
        reaches are read in one aggregation (their matching messages only), the inline
        part in another, pinned to the version counted.

        Args:
            thread_id: The thread.
            condition: The condition given to ``count_matching``.
            counts: What ``count_matching`` returned.
            plan: ``(region, skip, take)`` from ``_pages.plan_window``.

        Returns:
            The messages in order, images not resolved; None if the thread changed since
                it was counted (count again).
        """
        paged = [region for region, _, _ in plan if region >= 0]
        by_page = await self._pages.matching_messages(thread_id, paged, condition)
        inline: list[dict[str, Any]] = []
        for region, skip, take in plan:
            if region == -1:
                rows = await self._collection.aggregate(
                    [
                        {"$match": _updates.at_version(thread_id, counts.version)},
                        _updates.matching_slice_projection(condition, skip, take),
                    ]
                )
                if not rows:
                    return None
                inline = list(rows[0].get("messages") or [])[:take]
        docs: list[dict[str, Any]] = []
        for region, skip, take in plan:
            if region == -1:
                docs.extend(inline)
                continue
            found = by_page.get(region)
            if found is None:
                return None
            docs.extend(found[skip : skip + take])
        return [_document.message_from_document(doc, thread_id) for doc in docs]

    async def _commutative_update(
        self,
        thread_id: str,
        built: tuple[Mapping[str, Any], Mapping[str, Any]],
        known_version: int,
    ) -> tuple[bool, bool]:
        """Apply an update that needs no version (it commutes with every other change).

        It is first tried pinned to ``known_version``: when that matches, the caller
        knows the result exactly without reading anything back. Only if someone else
        wrote in between is it sent again unpinned. (Reading the version back from a
        findAndModify reply would also be one round trip, but not every server that
        speaks the protocol returns that reply atomically with the write.)

        Returns:
            ``(matched, in_sequence)``.
        """
        query, update = built
        keep = (DuplicateKeyError,)
        try:
            pinned = await self._collection.update_one(
                _updates.pinned(query, known_version), dict(update), keep=keep
            )
            if pinned.matched_count:
                return True, True
            result = await self._collection.update_one(query, dict(update), keep=keep)
        except DuplicateKeyError as exc:
            # Only an append adds a key to a unique index: its message id is taken.
            raise _message_id_taken(thread_id, _updates.pushed_message_ids(update)) from exc
        return bool(result.matched_count), False

    async def update_at_version(
        self,
        thread_id: str,
        version: int,
        built: tuple[Mapping[str, Any], Mapping[str, Any]],
        *,
        on_same_version: Callable[[], Exception] | None = None,
    ) -> int:
        """Apply a conditional update built by ``threadmem_mongo._updates``.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

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
            InvalidInputError: The update appends a message whose id another thread
                holds; nothing was written.
        """
        await self.ensure_indexes()
        query, update = built
        pushed = _updates.pushed_message_ids(update)
        await self._check_ids_elsewhere(thread_id, pushed)
        try:
            result = await self._collection.update_one(
                query, dict(update), keep=(DuplicateKeyError,)
            )
        except DuplicateKeyError as exc:
            # Only an append adds a key to a unique index: its message id is taken.
            raise _message_id_taken(thread_id, pushed) from exc
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

    async def touch(
        self,
        thread_id: str,
        built: tuple[Mapping[str, Any], Mapping[str, Any]],
        known_version: int,
        page_count: int = 0,
    ) -> bool:
        """Apply an update that needs no version, such as a new expiry.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            thread_id: The thread to change.
            built: The ``(filter, update)`` pair, from ``threadmem_mongo._updates``.
            known_version: The version the caller's object holds.
            page_count: The overflow pages the caller's object knows of; a new expiry
                reaches them first.

        Returns:
            Whether the thread was still at ``known_version`` (see ``append``).

        Raises:
            ThreadNotFoundError: No such thread.
        """
        await self.ensure_indexes()
        expiry = built[1].get("$set", {})
        if page_count and "expires_at" in expiry:
            # Pages first, so they never expire before the thread that counts them.
            await self._pages.keep_until(thread_id, expiry["expires_at"])
        matched, in_sequence = await self._commutative_update(thread_id, built, known_version)
        if not matched:
            raise ThreadNotFoundError(thread_id)
        if not in_sequence and "expires_at" in expiry:
            # Others wrote since the caller read the thread: pages may have come since.
            await self._pages.keep_until(thread_id, expiry["expires_at"])
        return in_sequence

    async def delete(self, thread_id: str, *, version: int | None = None) -> bool:
        """Delete a thread and the images only it referenced, in one step by id.

        Unlike ``AsyncRoleThread.delete`` it needs no loaded object, and no access check
        is made: the app decides who may delete.

        Args:
            thread_id: The thread to delete.
            version: Delete it only if it is still at this version, so a deletion
                decided on what was read cannot remove a change made since.

        Returns:
            Whether the thread was deleted (False: it did not exist, or was no longer at
                ``version``; nothing was deleted).

        Its overflow pages go with it. Once the thread is deleted the call succeeds: if
        deleting its pages or releasing its images fails (the server became
        unreachable), they are left for ``sweep_blobs``.

        Raises:
            InvalidInputError: ``thread_id`` is not a string, or ``version`` is not a
                whole number.
            StoreUnavailableError: The server could not be reached before the thread
                was deleted.
        """
        _validation.check_id("thread_id", thread_id)
        query = _updates.by_id(thread_id)
        if version is not None:
            query = _updates.at_version(
                thread_id, _validation.check_count("version", version, minimum=0)
            )
        doc = await self._collection.find_one_and_delete(query, _updates.BLOBS_PROJECTION)
        if doc is None:
            return False
        with contextlib.suppress(ThreadMemError):
            blob_ids = _updates.blob_ids_of(doc.get("messages") or [])
            if doc.get(_pages.PAGE_COUNT) and doc.get(_pages.PAGED_BLOBS, True):
                blob_ids += await self._pages.blob_ids(thread_id)
            await self._pages.delete_thread(thread_id)
            await self.release_blobs(blob_ids)
        return True

    async def message(self, thread_id: str, message_id: str) -> Document | None:
        """Return one message subdocument by id, or None if it is not in the thread.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            thread_id: The thread to read.
            message_id: The message's id.

        Returns:
            The message subdocument as stored, or None if the thread or the message does
                not exist.
        """
        doc = await self._collection.find_one(
            _updates.by_id(thread_id), _updates.one_message_projection(message_id)
        )
        messages = (doc or {}).get("messages") or []
        if messages or doc is None or not doc.get(_pages.PAGE_COUNT):
            return messages[0] if messages else None
        located = await self.paged_message(doc, message_id)
        return None if located is None else located[1]

    async def locate(self, thread_id: str, message_id: str) -> tuple[int | None, Document] | None:
        """Return where a message is: ``(None, message)`` inline, ``(page number,
        message)`` in a page (pending changes applied), or None if it is not in the thread.

        Low-level: ``AsyncRoleThread`` uses it to choose how to edit a message.
        """
        doc = await self._collection.find_one(
            _updates.by_id(thread_id),
            {
                **_updates.one_message_projection(message_id),
                _pages.PAGE_COUNT: 1,
                _pages.PENDING: 1,
            },
        )
        if doc is None:
            return None
        messages = doc.get("messages") or []
        if messages:
            return None, messages[0]
        located = await self.paged_message(doc, message_id)
        return None if located is None else (located[0], located[1])

    async def paged_message(
        self, doc: Mapping[str, Any], message_id: str
    ) -> tuple[int, Document] | None:
        """Return ``(page number, message)`` of a message in the thread's pages, with
        pending changes applied, or None if no committed page holds it.

        Args:
            doc: The thread document, with at least ``page_count`` and ``pending``.
            message_id: The message's id.
        """
        return await self._pages.paged_message(doc, message_id)

    async def messages_after(self, thread_id: str, message_id: str) -> tuple[int, list[Document]]:
        """Return the thread's version and the messages after ``message_id``, in order.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            thread_id: The thread to read.
            message_id: A message id of the thread.

        Returns:
            ``(version, message subdocuments)``, both read in one step.

        Raises:
            ThreadNotFoundError: No such thread.
            MessageNotFoundError: ``message_id`` is not in the thread.
        """
        found = await self._collection.aggregate(
            _updates.messages_after_pipeline(thread_id, message_id)
        )
        if not found:
            raise ThreadNotFoundError(thread_id)
        if found[0]["index"] >= 0:
            return int(found[0]["version"]), list(found[0]["page"])
        if found[0].get(_pages.PAGE_COUNT):
            # Older than the inline messages: read the thread whole (a rare catch-up).
            whole = await self.load(thread_id)
            ids = [message["id"] for message in whole.get("messages") or []]
            if message_id in ids:
                return int(whole["version"]), whole["messages"][ids.index(message_id) + 1 :]
        raise MessageNotFoundError(thread_id, message_id)

    async def catch_up(self, thread_id: str, message_id: str) -> Document | None:
        """Return the thread's counters and the messages after ``message_id``, in one read.

        Low-level: a step ``AsyncRoleThread`` uses to pick up what others appended
        without reading the whole thread; apps call ``refresh`` instead.

        Args:
            thread_id: The thread to read.
            message_id: The last message the caller holds.

        Returns:
            ``{"version", "message_count", "size_bytes", "updated", "index", "page"}``
            (``index`` -1 when the message is gone), or None when the thread is gone or
            this server cannot run the aggregation (mongomock).
        """
        if not has_index_of_array(self._collection):
            return None
        found = await self._collection.aggregate(
            _updates.messages_after_pipeline(thread_id, message_id)
        )
        return found[0] if found else None

    # -- overflow pages -----------------------------------------------------------------

    async def make_room(self, thread_id: str, size: int) -> bool:
        """Move every inline message to a page, so that one more of ``size`` bytes fits.

        Low-level: ``AsyncRoleThread`` calls it when a post would take the thread
        document past MongoDB's limit although the message alone fits: a few large
        messages are a long thread in bytes. The move follows the same protocol as
        ``move_overflow``.

        Args:
            thread_id: The thread.
            size: The bytes the next message needs.

        Returns:
            Whether a move committed (False: overflow pages are off, nothing was inline,
                or another writer changed the thread first).
        """
        if not self._limits.enabled:
            return False
        await self.ensure_indexes()
        return await self._pages.move(thread_id, room=size) is not None

    async def move_overflow(self, thread_id: str) -> Document | None:
        """Move the thread's oldest inline messages to a new page, if it is over the limits.

        Low-level: ``AsyncRoleThread`` calls it after a post that took the thread over
        ``max_inline_messages`` or ``max_inline_bytes``; ``threadmem compact`` calls it
        for threads written before the limits existed. The page is written first, then
        one update conditional on the version read commits it; readers never see a
        message twice or miss one, and a process that dies in between leaves a page
        the next move replaces.

        Args:
            thread_id: The thread.

        Returns:
            ``{"version", "moved", "moved_bytes", "still_over"}`` of the move this call
                committed (the version it was based on; whether the thread is still over
                its limits after it), or None when none was needed or another writer
                came first.
        """
        if not self._limits.enabled:
            return None
        await self.ensure_indexes()
        return await self._pages.move(thread_id)

    async def compact(self, thread_id: str | None = None) -> dict[str, int]:
        """Bring threads within the inline limits, and their pages up to date.

        For threads written before the limits existed (or under larger ones): moves
        their oldest messages to pages until they fit, and completes changes to paged
        messages a stopped process left pending. Safe to run while others write; a
        thread changed meanwhile is moved by its next post instead.

        Args:
            thread_id: Only this thread; None for every thread in the store.

        Returns:
            ``{"threads": looked at, "moves": pages written, "pending": changes completed}``.

        Raises:
            ThreadNotFoundError: ``thread_id`` is given and there is no such thread.
        """
        await self.ensure_indexes()
        query: Document = (
            {}
            if thread_id is None
            else _updates.by_id(_validation.check_id("thread_id", thread_id))
        )
        found = await self._collection.find(query, {_pages.PENDING: 1})
        if thread_id is not None and not found:
            raise ThreadNotFoundError(thread_id)
        totals = {"threads": len(found), "moves": 0, "pending": 0}
        for doc in found:
            pending = list(doc.get(_pages.PENDING) or [])
            if pending:
                await self.complete_pending(doc["_id"], pending)
                totals["pending"] += len(pending)
            while await self.move_overflow(doc["_id"]) is not None:
                totals["moves"] += 1
        return totals

    async def complete_pending(self, thread_id: str, records: Sequence[Mapping[str, Any]]) -> int:
        """Bring pages up to date with pending records, then remove the records.

        Low-level: a step ``AsyncRoleThread`` uses after a change to messages in pages
        (see ``_updates.change_paged_messages``) has landed, and before its next one.
        Idempotent: safe to call with records another writer completed already.

        Args:
            thread_id: The thread.
            records: Its pending records, oldest first.

        Returns:
            The bytes the records removed here took in the thread document (those
                another writer removed already count nothing).

        Raises:
            StoreUnavailableError: The server could not be reached; the records not yet
                removed stay pending, and readers apply them.
        """
        return await self._pages.complete(thread_id, records)

    async def search_messages(self, filters: Mapping[str, object]) -> list[Document]:
        """Return ``{"_id": thread id, "messages": message}`` for each message matching
        ``filters`` by equality, inline or in pages, in thread creation order and then
        position.

        Low-level: ``RoleThread.find_messages`` and ``RoleMessage.find`` call it.

        Raises:
            InvalidInputError: An unknown field or a value that is not a scalar.
        """
        pipeline = _updates.message_search_pipeline(filters)
        inline = await self.find_messages(pipeline)
        element, pre = _updates.message_search_conditions(filters)
        paged = await self._pages.find_messages(element, pre)
        if "text" in element:
            paged = await self._with_pending_pages(paged, pre)
        if not paged:
            return inline
        return await self._merge_paged_results(inline, paged, element)

    async def _with_pending_pages(
        self, paged: list[Document], pre: Mapping[str, Any]
    ) -> list[Document]:
        """Add every message of the pages that changes still pending will edit.

        An edit not yet applied to its page may give a message the text searched for,
        which the page itself does not hold: such pages are read whole, and the merge
        applies the pending changes before matching.
        """
        query: Document = {f"{_pages.PENDING}.0": {"$exists": True}}
        if "thread_id" in pre:
            query["_id"] = pre["thread_id"]
        touched = {
            (doc["_id"], int(record["page"]))
            for doc in await self._collection.find(query, {_pages.PENDING: 1})
            for record in doc.get(_pages.PENDING) or []
        }
        if not touched:
            return paged
        kept = [hit for hit in paged if (hit["thread_id"], hit["n"]) not in touched]
        for thread_id, n in sorted(touched):
            kept += await self._pages.find_messages({}, {"thread_id": thread_id, "n": n})
        return kept

    async def _merge_paged_results(
        self, inline: list[Document], paged: list[Document], element: Mapping[str, Any]
    ) -> list[Document]:
        thread_ids = list(
            dict.fromkeys([hit["thread_id"] for hit in paged] + [hit["_id"] for hit in inline])
        )
        found = await self._collection.find(
            {"_id": {"$in": thread_ids}}, {"created": 1, _pages.PAGE_COUNT: 1, _pages.PENDING: 1}
        )
        threads = {doc["_id"]: doc for doc in found}
        # (thread created, thread id, page number, position, message); inline messages
        # come after every page of their thread.
        merged: list[tuple[float, str, int, int, Document]] = []
        for position, hit in enumerate(inline):
            created = float(threads.get(hit["_id"], {}).get("created", 0.0))
            merged.append((created, hit["_id"], _pages.INLINE_PAGE, position, hit["messages"]))
        for hit in paged:
            doc = threads.get(hit["thread_id"])
            if doc is None or hit["n"] >= int(doc.get(_pages.PAGE_COUNT, 0)):
                continue  # a leftover page, or a thread gone meanwhile
            current = _pages.apply_pending(
                [hit["message"]], doc.get(_pages.PENDING) or [], hit["n"]
            )
            if current and all(current[0].get(k) == v for k, v in element.items()):
                merged.append(
                    (float(doc["created"]), doc["_id"], hit["n"], hit["index"], current[0])
                )
        merged.sort(key=lambda item: item[:4])
        # A move that committed between the inline and the paged read shows its
        # messages in both: ids are unique in a thread, so keep the first, the paged one.
        seen: set[tuple[str, str]] = set()
        results = []
        for _, thread_id, _, _, message in merged:
            key = (thread_id, str(message.get("id")))
            if key not in seen:
                seen.add(key)
                results.append({"_id": thread_id, "messages": message})
        return results

    # -- change streams ----------------------------------------------------------------

    async def changes(
        self,
        pipeline: Sequence[Mapping[str, Any]],
        *,
        resume_after: Mapping[str, Any] | None = None,
        full_document: str | None = None,
        idle_timeout: float | None = None,
        reconnect_timeout: float = 30.0,
    ) -> AsyncGenerator[Document | None, None]:
        """Yield change-stream documents; first ``None`` once the stream is open.

        A dropped connection or a restarting server does not end it: the stream is
        reopened from the last resume token, so nothing is missed or repeated, until
        ``reconnect_timeout`` seconds pass without success. With ``idle_timeout`` it ends
        after that many seconds without a change.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            pipeline: The change-stream pipeline, from ``threadmem_mongo._events``.
            resume_after: A resume token to start after.
            full_document: Passed to the server's change stream (``"updateLookup"``).
            idle_timeout: End after this many seconds without a change (None: never).
            reconnect_timeout: Give up after this many seconds of failed reopening.

        Yields:
            ``None`` once, when the stream is first open, then each change document.

        Raises:
            ConfigurationError: The server has no change streams (standalone, mongomock).
            StoreUnavailableError: The server stayed unreachable for ``reconnect_timeout``.
            ThreadMemError: The server ended the stream with an error that cannot be
                resumed (for example, the resume token has left the oplog).
        """
        stream = follow(
            self._collection.raw,
            pipeline,
            resume_after=resume_after,
            full_document=full_document,
            idle_timeout=idle_timeout,
            reconnect_timeout=reconnect_timeout,
        )
        async with contextlib.aclosing(stream):
            async for change in stream:
                yield change

    # -- images ------------------------------------------------------------------------

    async def offload_images(self, images: Sequence[str]) -> tuple[list[str], list[str]]:
        """Store large data URIs in GridFS, before any message references them.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        A data URI is stored when it is longer than ``image_threshold`` characters and
        its base64 re-encodes to the same text; other images are kept as they are. If a
        write fails, the blobs already written are deleted.

        Args:
            images: The message's images, in their stored form (URLs and data URIs).

        Returns:
            ``(images, new blob ids)``: the images with large data URIs replaced by
                references, and the ids written, for clean-up if the message is refused.
        """
        return await self._images.offload(images)

    async def resolve_images(self, images: Sequence[str]) -> list[str]:
        """Return ``images`` with every GridFS reference replaced by its data URI.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Args:
            images: Images as stored: URLs, data URIs and ``gridfs:<id>`` references.

        Returns:
            The images in the same order; URLs and data URIs unchanged.

        Raises:
            ImageNotFoundError: A referenced image is missing or incomplete.
        """
        return await self._images.resolve(images)

    async def discard_blobs(self, blob_ids: Sequence[str]) -> None:
        """Delete blobs no message was written with; errors are left to the sweep.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        It does not check for references: pass only ids no stored message holds.

        Args:
            blob_ids: The GridFS file ids to delete.
        """
        await self._images.discard(blob_ids)

    async def release_blobs(self, blob_ids: Iterable[str]) -> list[str]:
        """Delete those of ``blob_ids`` that no thread references any more.

        Low-level: a step ``AsyncRoleThread`` uses; apps normally call the ``AsyncRoleThread``
        methods instead, which keep the object's state and the invariants.

        Each image is first marked as being released, then looked for in the threads;
        it is deleted only if no thread holds it, and unmarked otherwise. A ``copy`` that
        took the image checks the mark after it is stored (see ``blobs_intact``), so
        either this finds the copy holding the image, or the copy sees the mark and is
        made again: no copy is left pointing at a deleted image.

        Args:
            blob_ids: GridFS file ids; repeated ids are checked once.

        Returns:
            The ids deleted.
        """
        return await self._images.release(blob_ids)

    async def blobs_intact(self, blob_ids: Iterable[str]) -> bool:
        """Return whether every one of ``blob_ids`` is stored and not being released.

        Low-level: ``copy`` calls it after storing a thread that shares these images.

        Args:
            blob_ids: GridFS file ids.

        Returns:
            False when an image is gone or ``release_blobs`` is deciding about it.
        """
        return await self._images.intact(blob_ids)

    async def sweep_blobs(self, older_than: datetime.timedelta) -> list[str]:
        """Delete images uploaded more than ``older_than`` ago that no thread references.

        They are left by a process that stopped between writing an image and the
        message, or by threads the TTL index expired. Overflow pages no thread counts
        (left by a crash, or by a thread deleted or expired) are deleted too, and so are
        chunks whose image was never completed (a write failed after some chunks), once they are
        ``older_than``; their ids are returned with the others. A mark left on a held
        image by a release that stopped half-way is cleared. Run it now and then (for
        example daily); ``older_than`` should be well above the time a post takes, so an
        image whose message is still being written is not taken. Pages of a thread that
        exists are safe at any ``older_than``: before deleting its uncounted pages, the
        sweep raises its version, so a move that wrote one of them can no longer commit
        it (it writes its page again from the new version). The first pages of a thread
        being created are written before its document, and are kept only while younger
        than ``older_than``.

        Args:
            older_than: Only images uploaded at least this long ago are considered.

        Returns:
            The ids of the images deleted.

        Raises:
            StoreUnavailableError: The server could not be reached.
        """
        cutoff = datetime.datetime.now(datetime.timezone.utc) - older_than
        await self._pages.sweep(cutoff)
        return await self._images.sweep(cutoff)
