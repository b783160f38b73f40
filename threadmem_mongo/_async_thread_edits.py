"""Changes to messages already posted: ``update_message``, ``delete_message`` and
``remove_images``, part of ``AsyncRoleThread``.

Each finds the message (inline, or on an overflow page), asks ``threadmem_mongo._updates``
for the one conditional update, and commits it through ``AsyncRoleThread._commit``; a
message on a page is changed through a pending record (``threadmem_mongo._pages``).

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_thread_edits.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threadmem_mongo import _document, _pages, _updates, _validation
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._document import ThreadState
from threadmem_mongo._images import IMAGE_PLACEHOLDER
from threadmem_mongo._models import RoleMessage
from threadmem_mongo._state import changed_message, message_changes
from threadmem_mongo.errors import MessageNotFoundError, VersionConflictError


class AsyncThreadEdits:
    """The message-editing methods of ``AsyncRoleThread``."""

    if TYPE_CHECKING:
        # Provided by AsyncRoleThread, which this class is a part of.
        _store: AsyncThreadStore
        _state: ThreadState
        _lock: asyncio.Lock

        @property
        def id(self) -> str: ...

        @property
        def version(self) -> int: ...

        async def _load_whole(self) -> None: ...

        async def _commit(
            self,
            built: tuple[dict[str, Any], dict[str, Any]],
            *,
            on_same_version: Callable[[], Exception] | None = None,
            records: list[dict[str, Any]] | None = None,
        ) -> None: ...

    # -- message edits -------------------------------------------------------------------

    async def _find_message(self, message_id: str) -> tuple[int | None, RoleMessage, int | None]:
        """Return the message's index among the loaded ones (None if it is before the
        loaded ones, then read on its own), the message, and the number of the page
        holding it (None when it is inline)."""
        state = self._state
        for index, message in enumerate(state.messages):
            if message.id == message_id:
                if not state.is_paged(index):
                    return index, message, None
                break
        else:
            index = None
            if not state.offset:
                raise MessageNotFoundError(self.id, message_id)
        located = await self._store.locate(self.id, message_id)
        if located is None:
            raise MessageNotFoundError(self.id, message_id)
        page, doc = located
        if index is not None:
            return index, state.messages[index], page
        return None, _document.message_from_document(doc, self.id), page

    async def update_message(
        self,
        message_id: str,
        *,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        private: bool | None = None,
    ) -> RoleMessage:
        """Change a message's text, metadata or privacy, if nobody changed the thread since.

        Only the given fields change; at least one must be given. On an object loaded
        with ``get(..., last=N)``, a message before the loaded page is read on its own
        and changed in the store; the object keeps holding only its page.

        Args:
            message_id: The id of the message to change.
            text: The new text; may be empty only if the message has images.
            metadata: The new metadata, replacing the old as a whole (None leaves it
                unchanged; ``{}`` empties it).
            private: The new privacy flag.

        Returns:
            The updated message. Its images are as stored: a GridFS image appears as a
                ``gridfs:<id>`` reference (``messages()`` gives the data URI).

        Raises:
            MessageNotFoundError: No message with that id in this thread.
            InvalidInputError: Nothing to change, or a bad value.
            VersionConflictError: The thread changed since this object read it.
            ThreadNotFoundError: The thread was deleted.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
        """
        _validation.check_id("message_id", message_id)
        changes = message_changes(text=text, metadata=metadata, private=private)
        async with self._lock:
            index, old, page = await self._find_message(message_id)
            new = changed_message(old, changes)
            missing = lambda: MessageNotFoundError(self.id, message_id)  # noqa: E731
            if page is None:
                delta = _document.message_size_change(old, new)
                built = _updates.edit_message(
                    self.id, self.version, message_id, changes, delta, time.time()
                )
                await self._commit(built, on_same_version=missing)
            else:
                record = _pages.pending_record(
                    self.version + 1, page, set_fields={message_id: changes}
                )
                built = _updates.change_paged_messages(
                    self.id, self.version, [record], "message_updated", [message_id], 0, time.time()
                )
                await self._commit(built, on_same_version=missing, records=[record])
            if index is not None:
                self._state.messages[index] = new
            return new

    async def delete_message(self, message_id: str) -> None:
        """Delete a message, if nobody changed the thread since this object read it.

        Images in GridFS that no thread references any more are deleted with it. On an
        object loaded with ``get(..., last=N)``, a message before the loaded page can be
        deleted too.

        Args:
            message_id: The id of the message to delete.

        Raises:
            MessageNotFoundError: No message with that id in this thread.
            VersionConflictError: The thread changed since this object read it.
            ThreadNotFoundError: The thread was deleted.
        """
        _validation.check_id("message_id", message_id)
        async with self._lock:
            index, old, page = await self._find_message(message_id)
            missing = lambda: MessageNotFoundError(self.id, message_id)  # noqa: E731
            if page is None:
                size = _document.element_size(_document.message_to_document(old))
                built = _updates.delete_message(
                    self.id, self.version, message_id, size, time.time()
                )
                await self._commit(built, on_same_version=missing)
            else:
                record = _pages.pending_record(self.version + 1, page, pull=[message_id])
                built = _updates.change_paged_messages(
                    self.id, self.version, [record], "message_deleted", [message_id], 1, time.time()
                )
                await self._commit(built, on_same_version=missing, records=[record])
                self._state.paged_count -= 1
            if index is not None:
                del self._state.messages[index]
            self._state.message_count -= 1
        await self._store.release_blobs(_updates.blob_ids_of([_document.message_to_document(old)]))

    async def remove_images(self) -> None:
        """Strip the images from every ``user`` message, and persist it.

        Does nothing (and writes nothing) if no user message has images. Images stored in
        GridFS that no thread references any more are deleted. A message's ``<image>``
        placeholders are removed from its text, which is trimmed; a text left empty becomes
        ``"[image removed]"``. An object loaded with ``last=`` re-reads the whole thread
        first, which drops unsaved edits to ``name``, ``public`` and ``metadata``.

        Raises:
            VersionConflictError: The thread changed since this object read it.
        """
        async with self._lock:
            if self._state.offset:
                await self._load_whole()
            changed: dict[int, RoleMessage] = {}
            for index, message in enumerate(self._state.messages):
                if message.role == "user" and message.images:
                    text = message.text.replace(IMAGE_PLACEHOLDER, "").strip() or "[image removed]"
                    changed[index] = message.model_copy(update={"images": [], "text": text})
            if not changed:
                return
            state = self._state
            inline = {i: new for i, new in changed.items() if not state.is_paged(i)}
            paged = {new.id: new for i, new in changed.items() if state.is_paged(i)}
            delta = sum(
                _document.message_size_change(state.messages[i], new) for i, new in inline.items()
            )
            built = _updates.edit_messages_at(
                self.id,
                self.version,
                {
                    state.inline_index(i): {"images": [], "text": new.text}
                    for i, new in inline.items()
                },
                [new.id for new in changed.values()],
                delta,
                time.time(),
                # The references go with the images, so the blobs can be released.
                unset=["blobs"],
            )
            records = await self._image_removals(paged)
            if records:
                built = _updates.with_pending(built, records)
            await self._commit(built, records=records or None)
            dropped = [self._state.messages[index] for index in changed]
            for index, new in changed.items():
                self._state.messages[index] = new
        docs = [_document.message_to_document(message) for message in dropped]
        await self._store.release_blobs(_updates.blob_ids_of(docs))

    async def _image_removals(self, paged: dict[str, RoleMessage]) -> list[dict[str, Any]]:
        """One pending record per page, stripping the images of messages ``paged``."""
        if not paged:
            return []
        pages = await self._store.pages.numbers_of(self.id, self._state.page_count, list(paged))
        by_page: dict[int, list[str]] = {}
        for message_id in paged:
            if message_id not in pages:
                # Gone from the pages since this object read them: the version moved.
                raise VersionConflictError(self.id, self.version, self.version + 1)
            by_page.setdefault(pages[message_id], []).append(message_id)
        return [
            _pages.pending_record(
                self.version + 1,
                page,
                set_fields={i: {"images": [], "text": paged[i].text} for i in ids},
                unset_fields={i: ["blobs"] for i in ids},
            )
            for page, ids in sorted(by_page.items())
        ]
