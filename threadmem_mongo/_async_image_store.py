"""The life of a store's images: stored in GridFS before a message refers to them, read
back as the data URIs that were posted, released once no thread holds them, and swept
when a crash or an expiry left them behind.

``AsyncBlobStore`` (``threadmem_mongo._async_blobs``) reads and writes the bucket; this
class decides when, looking for holders in the thread documents and the overflow pages.
``AsyncThreadStore`` owns one and offers its methods.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_image_store.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Sequence

from threadmem_mongo import _updates
from threadmem_mongo._async_blobs import AsyncBlobStore
from threadmem_mongo._async_collection import AsyncGuardedCollection
from threadmem_mongo._async_page_store import AsyncPageStore
from threadmem_mongo._images import blob_id_of, blob_ref, is_blob_ref, split_data_uri
from threadmem_mongo.errors import ThreadMemError


class AsyncImageStore:
    """Offloads, resolves, releases and sweeps the images of one threads collection.

    Args:
        blobs: The GridFS bucket.
        threads: The threads collection, where messages hold ``gridfs:<id>`` references.
        pages: The overflow pages, whose messages hold them too.
        threshold: Data URIs longer than this many characters go to GridFS.
    """

    def __init__(
        self,
        blobs: AsyncBlobStore,
        threads: AsyncGuardedCollection,
        pages: AsyncPageStore,
        threshold: int,
    ) -> None:
        self._blobs = blobs
        self._threads = threads
        self._pages = pages
        self.threshold = threshold

    async def offload(self, images: Sequence[str]) -> tuple[list[str], list[str]]:
        """Store large data URIs in GridFS; see ``AsyncThreadStore.offload_images``."""
        stored: list[str] = []
        written: list[str] = []
        try:
            for image in images:
                parts = None
                if len(image) > self.threshold and image.startswith("data:"):
                    parts = split_data_uri(image)
                if parts is None:
                    stored.append(image)
                    continue
                blob_id = await self._blobs.put(*parts)
                written.append(blob_id)
                stored.append(blob_ref(blob_id))
        except BaseException:
            await self.discard(written)
            raise
        return stored, written

    async def resolve(self, images: Sequence[str]) -> list[str]:
        """Replace GridFS references by data URIs; see ``AsyncThreadStore.resolve_images``."""
        return [
            await self._blobs.data_uri(blob_id_of(image)) if is_blob_ref(image) else image
            for image in images
        ]

    async def discard(self, blob_ids: Sequence[str]) -> None:
        """Delete blobs no message was written with; see ``AsyncThreadStore.discard_blobs``."""
        with contextlib.suppress(ThreadMemError):
            await self._blobs.delete(blob_ids)

    async def release(self, blob_ids: Iterable[str]) -> list[str]:
        """Delete those of ``blob_ids`` no thread holds; see ``AsyncThreadStore.release_blobs``."""
        candidates = list(dict.fromkeys(blob_ids))
        if not candidates:
            return []
        await self._blobs.mark_releasing(candidates)
        released: list[str] = []
        held: list[str] = []
        for blob_id in candidates:
            holder = await self._threads.find_one(_updates.blob_holder(blob_id), {"_id": 1})
            if holder is None and await self._pages.holds_blob(blob_id):
                holder = {"page": blob_id}
            (held if holder is not None else released).append(blob_id)
        await self._blobs.unmark_releasing(held)
        await self._blobs.delete(released)
        return released

    async def intact(self, blob_ids: Iterable[str]) -> bool:
        """Return whether every image is stored and unmarked; see
        ``AsyncThreadStore.blobs_intact``."""
        return await self._blobs.all_present_and_unmarked(blob_ids)

    async def sweep(self, cutoff: datetime.datetime) -> list[str]:
        """Release the images uploaded before ``cutoff`` that no thread holds, and delete
        the chunks of images never completed before it; return the ids deleted."""
        released = await self.release(await self._blobs.ids_older_than(cutoff))
        return released + await self._blobs.delete_orphan_chunks(cutoff)
