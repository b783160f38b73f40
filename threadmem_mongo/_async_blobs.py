"""Image blobs in GridFS: written before the message that references them.

Blobs are stored in the GridFS layout (``<bucket>.files`` and ``<bucket>.chunks``, chunks
of 255 KiB), written with plain collection operations so that the same code runs on every
backend; any GridFS tool, such as pymongo's ``GridFSBucket``, reads them.

Each file's ``metadata.prefix`` keeps the data URI's head (``data:image/png;base64,``)
so the URI comes back byte for byte.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_blobs.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from threadmem_mongo._async_collection import AsyncGuardedCollection
from threadmem_mongo._images import join_data_uri
from threadmem_mongo.errors import ImageNotFoundError

DEFAULT_BUCKET = "threadmem_images"
#: Set on a file document while ``AsyncThreadStore.release_blobs`` decides whether to
#: delete it; a copy that shares a marked image is made again.
RELEASING_FIELD = "releasing"
CHUNK_SIZE = 255 * 1024

Document = dict[str, Any]


def _object_id(blob_id: str) -> ObjectId:
    try:
        return ObjectId(blob_id)
    except (InvalidId, TypeError) as exc:
        raise ImageNotFoundError(blob_id, "is not a stored image id") from exc


class AsyncBlobStore:
    """Reads and writes image blobs in one GridFS bucket.

    A store's bucket is its ``AsyncThreadStore.blobs``. An app that serves images itself
    (after ``messages(resolve_images=False)``) reads them there by the id in each
    ``gridfs:<id>`` reference.

    Args:
        database: The database holding the bucket's two collections.
        bucket: The bucket name.
    """

    def __init__(self, database: AsyncDatabase[Document], bucket: str = DEFAULT_BUCKET) -> None:
        self._files = AsyncGuardedCollection(database[f"{bucket}.files"])
        self._chunks = AsyncGuardedCollection(database[f"{bucket}.chunks"])

    async def ensure_indexes(self) -> None:
        """Create the indexes GridFS readers expect. Idempotent."""
        await self._files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])
        await self._chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)

    async def put(self, prefix: str, data: bytes) -> str:
        """Store ``data`` (an image's bytes) and return its id.

        Chunks are written before the file document, as GridFS requires, so a reader
        never sees a file whose chunks are missing.

        Args:
            prefix: The data URI's head, up to and including ``base64,``.
            data: The image's bytes.

        Returns:
            The new file's id (an ObjectId as a hex string).
        """
        file_id = ObjectId()
        chunks = [
            {"files_id": file_id, "n": n, "data": data[offset : offset + CHUNK_SIZE]}
            for n, offset in enumerate(range(0, max(len(data), 1), CHUNK_SIZE))
        ]
        for chunk in chunks:
            # One chunk per insert: a batch of chunks could exceed a message's size.
            await self._chunks.insert_one(chunk)
        await self._files.insert_one(
            {
                "_id": file_id,
                "length": len(data),
                "chunkSize": CHUNK_SIZE,
                "uploadDate": datetime.datetime.now(datetime.timezone.utc),
                "filename": str(file_id),
                "metadata": {"prefix": prefix},
            }
        )
        return str(file_id)

    async def data_uri(self, blob_id: str) -> str:
        """Return the data URI of a stored image.

        Args:
            blob_id: The file id (the part of a ``gridfs:<id>`` reference after the colon).

        Returns:
            The data URI, byte for byte as it was posted.

        Raises:
            ImageNotFoundError: No such image (it was deleted, or never stored).
        """
        prefix, data = await self.read(blob_id)
        return join_data_uri(prefix, data)

    async def read(self, blob_id: str) -> tuple[str, bytes]:
        """Return ``(data URI prefix, bytes)`` of a stored image.

        Args:
            blob_id: The file id.

        Returns:
            The data URI's head (such as ``data:image/png;base64,``), whose media type
                says the image's format, and the image's bytes.

        Raises:
            ImageNotFoundError: No such image, or its chunks are incomplete.
        """
        file_id = _object_id(blob_id)
        meta = await self._files.find_one({"_id": file_id})
        if meta is None:
            raise ImageNotFoundError(blob_id)
        chunks = await self._chunks.find({"files_id": file_id}, sort=[("n", ASCENDING)])
        data = b"".join([bytes(chunk["data"]) for chunk in chunks])
        if len(data) != meta["length"]:
            raise ImageNotFoundError(blob_id, "is incomplete")
        return str(meta["metadata"]["prefix"]), data

    async def delete(self, blob_ids: Iterable[str]) -> None:
        """Delete stored images; the file document goes first, then its chunks.

        References are not checked: ``AsyncThreadStore.release_blobs`` deletes only
        images no thread refers to. Ids that are not stored are ignored.

        Args:
            blob_ids: The file ids.

        Raises:
            ImageNotFoundError: An id is not an ObjectId string.
        """
        ids = [_object_id(blob_id) for blob_id in blob_ids]
        if not ids:
            return
        await self._files.delete_many({"_id": {"$in": ids}})
        await self._chunks.delete_many({"files_id": {"$in": ids}})

    async def mark_releasing(self, blob_ids: Iterable[str]) -> None:
        """Mark images as being released (see ``AsyncThreadStore.release_blobs``).

        Args:
            blob_ids: The file ids.
        """
        ids = [_object_id(blob_id) for blob_id in blob_ids]
        if ids:
            await self._files.update_many({"_id": {"$in": ids}}, {"$set": {RELEASING_FIELD: True}})

    async def unmark_releasing(self, blob_ids: Iterable[str]) -> None:
        """Clear the mark of images found still in use.

        Args:
            blob_ids: The file ids.
        """
        ids = [_object_id(blob_id) for blob_id in blob_ids]
        if ids:
            await self._files.update_many({"_id": {"$in": ids}}, {"$unset": {RELEASING_FIELD: ""}})

    async def all_present_and_unmarked(self, blob_ids: Iterable[str]) -> bool:
        """Return whether every image is stored and not marked as being released.

        Args:
            blob_ids: The file ids.

        Returns:
            True when all are there and unmarked (also when there are none).
        """
        ids = list({_object_id(blob_id) for blob_id in blob_ids})
        if not ids:
            return True
        intact = await self._files.count_documents(
            {"_id": {"$in": ids}, RELEASING_FIELD: {"$exists": False}}
        )
        return intact == len(ids)

    async def delete_orphan_chunks(self, cutoff: datetime.datetime) -> list[str]:
        """Delete chunks written before ``cutoff`` whose file document does not exist.

        A write that failed after some chunks leaves them: the file document, written
        last, never came. A chunk's age is its file id's, an ObjectId made when the
        write began.

        Args:
            cutoff: A timezone-aware time.

        Returns:
            The file ids whose chunks were deleted, as hex strings.
        """
        chunked = await self._chunks.distinct(
            "files_id", {"files_id": {"$lt": ObjectId.from_datetime(cutoff)}}
        )
        if not chunked:
            return []
        files = await self._files.find({"_id": {"$in": chunked}}, {"_id": 1})
        complete = {doc["_id"] for doc in files}
        orphans = [file_id for file_id in chunked if file_id not in complete]
        if orphans:
            await self._chunks.delete_many({"files_id": {"$in": orphans}})
        return [str(file_id) for file_id in orphans]

    async def ids_older_than(self, cutoff: datetime.datetime) -> list[str]:
        """Return the ids of images uploaded before ``cutoff``.

        Args:
            cutoff: A timezone-aware time.

        Returns:
            The file ids, as hex strings.
        """
        files = await self._files.find({"uploadDate": {"$lt": cutoff}}, {"_id": 1})
        return [str(doc["_id"]) for doc in files]
