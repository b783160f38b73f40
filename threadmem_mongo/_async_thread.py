"""``AsyncRoleThread`` and, generated from it, ``RoleThread``: the object API over a store.

Each method validates its input, asks ``threadmem_mongo._updates`` for the one update
it needs, sends it through the store, and applies the same change to the local state.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_thread.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from threadmem_mongo import (
    _document,
    _pages,
    _updates,
    _validation,
)
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._async_thread_edits import AsyncThreadEdits
from threadmem_mongo._async_thread_formats import AsyncThreadFormats
from threadmem_mongo._async_thread_lookup import AsyncThreadLookup
from threadmem_mongo._async_thread_watch import AsyncThreadWatch
from threadmem_mongo._config import async_default_store, local_images_allowed
from threadmem_mongo._document import ThreadState
from threadmem_mongo._images import ImageInput, is_blob_ref, normalize_images
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES
from threadmem_mongo._models import (
    RoleMessage,
    V1Role,
    new_id,
)
from threadmem_mongo._state import appended_batch, apply_catch_up, check_expiry, new_state, utc
from threadmem_mongo.errors import (
    InvalidInputError,
    StoreUnavailableError,
    ThreadMemError,
    ThreadNotFoundError,
    ThreadTooLargeError,
    VersionConflictError,
)

T = TypeVar("T")

# Replaced by True in the generated synchronous twin.
_IS_SYNC = False

#: How often ``AsyncRoleThread.apply`` re-reads and retries before giving up.
DEFAULT_APPLY_ATTEMPTS = 5

#: At most this many pages are moved after one write (see ``_move_overflow``).
MOVES_PER_WRITE = 8

#: How often ``AsyncRoleThread.copy`` starts again when a shared image was released
#: while it copied (its message was deleted meanwhile).
COPY_ATTEMPTS = 5


class AsyncRoleThread(AsyncThreadEdits, AsyncThreadLookup, AsyncThreadWatch, AsyncThreadFormats):
    """A persistent thread of messages posted under role names.

    Creating one stores it at once: ``RoleThread(...)`` in the sync API, or the awaited
    ``aio.AsyncRoleThread.create(...)`` in the async API. Every later change is one atomic
    MongoDB update: posts are appends that never conflict; changes based on what this
    object read (``save``, roles, ``update_message``, ``delete_message``,
    ``remove_images``) land only if nobody changed the thread since, else they raise
    ``threadmem_mongo.errors.VersionConflictError`` and write nothing.

    One object may be shared by the threads (or tasks) of one process; each process or
    worker may also hold its own object for the same thread id.

    Args:
        owner_id: Who owns the thread; scoping access by owner is the app's job.
        public: Whether the thread is public.
        name: A display name.
        metadata: Free-form data; keys must not start with ``$`` or contain ``.``.
        role_mapping: Roles of the thread, by name; each key must be its role's name.
        ttl: Delete the thread this long after creation (or after the last
            ``touch``); the server's TTL index does it.
        expires_at: Delete the thread at this (timezone-aware) time. Pass either
            ``ttl`` or ``expires_at``, not both.
        store: The store to use; the configured default if omitted.

    Raises:
        InvalidInputError: An argument is not acceptable; nothing was written.
        StoreUnavailableError: The server could not be reached.
    """

    def __init__(
        self,
        owner_id: str | None = None,
        public: bool = False,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        role_mapping: dict[str, V1Role] | None = None,
        *,
        ttl: datetime.timedelta | None = None,
        expires_at: datetime.datetime | None = None,
        store: AsyncThreadStore | None = None,
    ) -> None:
        if not _IS_SYNC:
            raise TypeError("AsyncRoleThread(...) cannot store a thread; use .create(...)")
        state = new_state(
            owner_id, public, name, metadata, role_mapping, ttl=ttl, expires_at=expires_at
        )
        self._attach(store if store is not None else async_default_store(), state)
        self._insert()  # type: ignore[unused-coroutine]

    @classmethod
    async def create(
        cls,
        owner_id: str | None = None,
        public: bool = False,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        role_mapping: dict[str, V1Role] | None = None,
        *,
        ttl: datetime.timedelta | None = None,
        expires_at: datetime.datetime | None = None,
        store: AsyncThreadStore | None = None,
    ) -> AsyncRoleThread:
        """Create and store a new thread, in one write.

        The same as calling the class in the sync API; in the ``aio`` API, whose
        constructor cannot write, it is the only way to create a thread.

        Args:
            owner_id: Who owns the thread; scoping access by owner is the app's job.
            public: Whether the thread is public.
            name: A display name.
            metadata: Free-form data; keys must not start with ``$`` or contain ``.``.
            role_mapping: Roles of the thread, by name; each key must be its role's name.
            ttl: Delete the thread this long after creation (or after the last
                ``touch``); the server's TTL index does it.
            expires_at: Delete the thread at this (timezone-aware) time. Pass either
                ``ttl`` or ``expires_at``, not both.
            store: The store to use; the configured default if omitted.

        Returns:
            The new thread, at version 0, with no messages.

        Raises:
            InvalidInputError: An argument is not acceptable, or ``ttl`` and
                ``expires_at`` are both given; nothing was written.
            StoreUnavailableError: The server could not be reached.
        """
        state = new_state(
            owner_id, public, name, metadata, role_mapping, ttl=ttl, expires_at=expires_at
        )
        return await cls._create(state, store)

    # -- construction helpers ------------------------------------------------------------

    def _attach(self, store: AsyncThreadStore, state: ThreadState) -> None:
        self._store = store
        self._state = state
        self._saved_fields = copy.deepcopy(_document.editable_fields(state))
        self._lock = asyncio.Lock()
        self._window: int | None = None
        self._resolved: dict[str, str] = {}
        # Set when a write landed but reading what others wrote around it failed: the
        # state lacks messages, so the next read of the messages re-reads the thread.
        self._stale = False

    async def _insert(self) -> None:
        _validation.check_unique_ids(message.id for message in self._state.messages)
        written: list[str] = []
        try:
            for index, message in enumerate(self._state.messages):
                images, new = await self._store.offload_images(message.images)
                written.extend(new)
                if new:
                    self._state.messages[index] = message.model_copy(update={"images": images})
            pages = self._first_pages()
            doc = _document.thread_to_document(self._state)
            await self._store.insert(doc, pages)
        except BaseException:
            await self._store.discard_blobs(written)
            raise
        self._state.size_bytes = doc["size_bytes"]
        self._state.message_count = doc["message_count"]

    def _first_pages(self) -> list[dict[str, Any]]:
        """Split a new thread's messages into the pages it starts with and its inline
        part (when it starts with more than fit inline), and count them in the state."""
        state = self._state
        docs = [_document.message_to_document(message) for message in state.messages]
        pages, _ = _pages.split_for_pages(docs, self._store.limits)
        state.page_count = len(pages)
        state.paged_count = sum(len(page) for page in pages)
        return [
            _pages.page_document(
                state.id, n, page, _pages.CREATION_VERSION, state.created, state.expires_at
            )
            for n, page in enumerate(pages)
        ]

    @classmethod
    def _from_document(
        cls, doc: Mapping[str, Any], store: AsyncThreadStore, window: int | None = None
    ) -> AsyncRoleThread:
        thread = cls.__new__(cls)
        thread._attach(store, _document.thread_from_document(doc))
        thread._window = window
        return thread

    @classmethod
    async def _create(cls, state: ThreadState, store: AsyncThreadStore | None) -> AsyncRoleThread:
        thread = cls.__new__(cls)
        thread._attach(store if store is not None else async_default_store(), state)
        await thread._insert()
        return thread

    # -- properties ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The thread id (a uuid4 string); the document's ``_id``."""
        return self._state.id

    @property
    def owner_id(self) -> str | None:
        """Who owns the thread."""
        return self._state.owner_id

    @property
    def public(self) -> bool:
        """Whether the thread is public. Settable; ``save`` persists it."""
        return self._state.public

    @public.setter
    def public(self, value: bool) -> None:
        self._state.public = _validation.check_bool("public", value)

    @property
    def name(self) -> str | None:
        """The display name. Settable; ``save`` persists it."""
        return self._state.name

    @name.setter
    def name(self, value: str | None) -> None:
        self._state.name = _validation.check_optional_str("name", value)

    @property
    def metadata(self) -> dict[str, Any] | None:
        """Free-form data. Settable, or edit the dict in place; ``save`` persists it."""
        return self._state.metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any] | None) -> None:
        self._state.metadata = _validation.check_metadata(value)

    @property
    def role_mapping(self) -> dict[str, V1Role]:
        """The thread's roles by name (a copy: change roles with ``add_role``)."""
        return dict(self._state.roles)

    @property
    def version(self) -> int:
        """The version this object has read: 0 at creation, +1 with every change that lands."""
        return self._state.version

    @property
    def created(self) -> float:
        """Creation time, epoch seconds."""
        return self._state.created

    @property
    def updated(self) -> float:
        """Time of the last change this object knows of, epoch seconds."""
        return self._state.updated

    @property
    def message_count(self) -> int:
        """How many messages the thread has, also when only a page of them is loaded."""
        return self._state.message_count

    @property
    def is_partial(self) -> bool:
        """Whether only the last messages are loaded (see ``get(..., last=N)``)."""
        return self._state.offset > 0

    @property
    def expires_at(self) -> datetime.datetime | None:
        """When the store deletes the thread (UTC), or None if it never expires."""
        return self._state.expires_at

    @property
    def ttl(self) -> datetime.timedelta | None:
        """The time to live ``touch`` extends the expiry by, if one was set."""
        return None if self._state.ttl is None else datetime.timedelta(seconds=self._state.ttl)

    @property
    def cursor(self) -> str:
        """This thread's place in a listing: pass it as ``find(..., after=cursor)``."""
        return _updates.page_cursor(self._state.created, self._state.id)

    @property
    def store(self) -> AsyncThreadStore:
        """The store this thread lives in."""
        return self._store

    def __repr__(self) -> str:
        return (
            f"AsyncRoleThread(id={self.id!r}, owner_id={self.owner_id!r}, name={self.name!r}, "
            f"public={self.public!r}, messages={len(self._state.messages)}, "
            f"version={self.version})"
        )

    # -- messages ------------------------------------------------------------------------

    async def post(
        self,
        role: str,
        msg: str,
        images: Iterable[ImageInput] | None = None,
        private: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> RoleMessage:
        """Post a message: one atomic append, whatever the thread's length.

        Appends never conflict. If others changed the thread in between, this object
        re-reads it afterwards, so it holds their messages too. That re-read replaces
        the object's state: unsaved edits to ``name``, ``public`` and ``metadata`` are
        dropped, so call ``save()`` before posting to keep them.

        Data URIs longer than the store's ``image_threshold`` are written to GridFS
        first, and the stored message refers to them.

        **Security:** a string image that is neither an ``http://``/``https://`` URL nor
        a ``data:`` URI is read as the path of a local file, and that file is stored in
        the thread. Never pass strings from untrusted clients (request bodies, form
        fields) as ``images``: accept only URLs and data URIs from them (see "Images
        from users" on the Security page), or a client can make the server store and
        return its files.

        Args:
            role: The role name posting the message; any non-empty string.
            msg: The text; may hold ``<image>`` placeholders (see ``to_openai``), one per
                image, or none. May be empty only if there are images.
            images: Each an ``http(s)`` URL or a data URI (kept as given), a local file
                path (string or ``os.PathLike``, read and stored as a data URI), the
                ``bytes`` of a PNG, JPEG, GIF, BMP or WebP file, or a PIL image (stored as
                PNG).
            private: Leave the message out of ``messages(include_private=False)``.
            metadata: Free-form data stored with the message; keys must not start with
                ``$`` or contain ``.``.

        Returns:
            The new message, with its id and ``thread_id`` set and its images as URLs or
                data URIs (never GridFS references).

        Raises:
            InvalidInputError: Bad role, text, placeholders or metadata, or an image of
                no accepted kind (``ImageFormatError``); nothing was written.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit;
                nothing was written.
            ThreadNotFoundError: The thread was deleted.
            StoreUnavailableError: The server could not be reached, and the append may
                or may not have landed: the message is ``exc.unsent``, and
                ``add_msg(exc.unsent)`` retries it without duplicating it. Once the
                append has landed this is never raised: if reading others' changes
                afterwards fails, the post returns and the next ``messages()`` re-reads.
        """
        _validation.check_role(role)
        message = RoleMessage(
            role=role,
            text=msg,
            thread_id=self.id,
            images=normalize_images(images, allow_local_files=local_images_allowed(_IS_SYNC)),
            private=_validation.check_bool("private", private),
            metadata=metadata,
        )
        return await self._append(message, new_id=True)

    async def add_msg(self, message: RoleMessage) -> RoleMessage:
        """Append an existing message object, keeping its id, in one atomic append.

        Adding a message whose id is already in the thread changes nothing, so a failed
        post can be retried safely with the same message. As with ``post``, when others
        changed the thread in between (or the message was already there) this object
        re-reads it, dropping unsaved edits to ``name``, ``public`` and ``metadata``.

        Args:
            message: The message to append. Its ``thread_id`` must be None or this
                thread's id. Its images must be URLs or data URIs (``RoleMessage`` reads
                no files); large data URIs go to GridFS as with ``post``.

        Returns:
            ``message``, with ``thread_id`` set to this thread's id; also when it was
                already in the thread and nothing was written.

        Raises:
            InvalidInputError: ``message`` is not a RoleMessage, or belongs to another thread.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
            ThreadNotFoundError: The thread was deleted.
            StoreUnavailableError: The server could not be reached; as for ``post``, the
                message may be in ``exc.unsent``.
        """
        if not isinstance(message, RoleMessage):
            raise InvalidInputError(f"add_msg() takes a RoleMessage, got {type(message).__name__}")
        if message.thread_id not in (None, self.id):
            raise InvalidInputError(
                f"message {message.id!r} belongs to thread {message.thread_id!r}; post a new "
                "message instead of moving it"
            )
        if message.thread_id is None:
            message = message.model_copy(update={"thread_id": self.id})
        return await self._append(message)

    async def _append(self, message: RoleMessage, *, new_id: bool = False) -> RoleMessage:
        # Images go to GridFS first: a crash before the append leaves at most an
        # unreferenced blob (removed by sweep_blobs), never a message pointing at nothing.
        images, written = await self._store.offload_images(message.images)
        stored = message.model_copy(update={"images": images}) if written else message
        doc = _document.message_to_document(stored)
        size = _document.element_size(doc)
        async with self._lock:
            now = time.time()
            send = functools.partial(
                self._store.append,
                self.id,
                doc,
                size,
                now,
                self._state.version,
                self._state.size_bytes,
                new_id=new_id,
            )
            try:
                try:
                    appended, in_sequence = await send()
                except ThreadTooLargeError:
                    # The message fits, but not beside the inline ones (a few large
                    # messages): move those to a page if that makes room, and send again.
                    if size > DOCUMENT_BUDGET_BYTES or not await self._store.make_room(
                        self.id, size
                    ):
                        raise
                    appended, in_sequence = await send()
            except StoreUnavailableError as exc:
                # The append may have landed: keep the blobs, and hand the message back
                # for a retry, which lands once.
                exc.unsent = message
                exc.args = (
                    f"{exc}. The post may or may not have landed: retry it with "
                    "thread.add_msg(exc.unsent), which stores it once",
                )
                raise
            except BaseException:
                await self._store.discard_blobs(written)
                raise
            if not appended:
                await self._store.discard_blobs(written)
            if in_sequence:
                state = self._state
                state.messages.append(stored)
                state.version += 1
                state.size_bytes += size
                state.message_count += 1
                state.updated = now
                # The posted data URIs are at hand: messages() need not read them back.
                self._resolved.update(
                    (ref, posted)
                    for ref, posted in zip(images, message.images, strict=True)
                    if is_blob_ref(ref)
                )
            else:
                await self._follow_others()
            await self._move_overflow()
        return message

    async def _move_overflow(self) -> None:
        """Move the oldest inline messages to a page once the thread is over its limits.

        A step after a write that landed, so it never raises: if it fails, the next
        write past the limits moves them.
        """
        state = self._state
        if not self._store.limits.needs_move(state.inline_count, state.size_bytes):
            return
        # More than one page when others' posts outran earlier moves (moves give way to
        # concurrent writers), so the thread gets back within its limits.
        for _ in range(MOVES_PER_WRITE):
            try:
                moved = await self._store.move_overflow(self.id)
            except ThreadMemError:
                # Any failure of the move (unreachable server, an error the server
                # reported, the thread gone): the write before it stands.
                return
            if moved is None:
                return
            if moved["version"] == state.version:
                state.version += 1
                state.page_count += 1
                state.paged_count += int(moved["moved"])
                state.size_bytes -= int(moved["moved_bytes"])
            if not moved["still_over"]:
                return

    async def _follow_others(self) -> None:
        """After a write that landed among others' changes, read what they changed.

        Only the new messages are read when only appends happened; otherwise (or when
        this message had landed before) the whole thread. If that read fails, the write
        still stands: raising would invite a retry, so the object is marked stale and
        its next ``messages()`` reads the thread again.
        """
        try:
            if not await self._catch_up():
                await self._reload()
        except ThreadMemError:
            self._stale = True

    async def _catch_up(self) -> bool:
        """Pick up what others appended since this object's state, reading only that.

        Returns:
            False, changing nothing, unless every change since this object's version
            was an append: then the object holds the store's state again.
        """
        state = self._state
        if not state.messages:
            return False
        found = await self._store.catch_up(self.id, state.messages[-1].id)
        return found is not None and apply_catch_up(state, self._saved_fields, found)

    async def messages(
        self, include_private: bool = True, *, resolve_images: bool = True
    ) -> list[RoleMessage]:
        """Return the loaded messages in posting order (all, unless loaded with ``last=``).

        Images stored in GridFS are read when asked for here, and come back as the data
        URIs that were posted, byte for byte. Nothing else is read: the messages are
        those this object holds (call ``refresh`` to see others' posts).

        Args:
            include_private: Also return messages posted with ``private=True``.
            resolve_images: False leaves GridFS images as ``gridfs:<id>`` references, for
                apps that serve images themselves (see ``AsyncThreadStore.blobs``).

        Returns:
            The messages, oldest first.

        Raises:
            ImageNotFoundError: An image stored in GridFS is missing.
            StoreUnavailableError: The server could not be reached while reading images.
        """
        if self._stale:
            async with self._lock:
                if self._stale:
                    await self._reload()
        chosen = [m for m in self._state.messages if include_private or not m.private]
        if not resolve_images:
            return chosen
        return [await self._resolve(message) for message in chosen]

    async def _resolve(self, message: RoleMessage) -> RoleMessage:
        if not any(is_blob_ref(image) for image in message.images):
            return message
        images = []
        for image in message.images:
            if image not in self._resolved:
                self._resolved[image] = (await self._store.resolve_images([image]))[0]
            images.append(self._resolved[image])
        return message.model_copy(update={"images": images})

    async def history(self, before: str | None = None, limit: int = 50) -> list[RoleMessage]:
        """Return up to ``limit`` messages before message ``before``, oldest first.

        Pages backwards through a thread without loading it: start with ``before=None``
        (the last ``limit`` messages), then pass the id of the first message of each
        page. Pages stay stable while others append. The messages are read from the
        store, not from this object, which is left unchanged.

        Args:
            before: The id of a message of the thread; None for the last messages.
            limit: At most this many messages (a whole number of at least 1).

        Returns:
            The page, oldest first, private messages included, with images resolved
                as by ``messages()``; empty once ``before`` is the thread's first message.

        Raises:
            ThreadNotFoundError: The thread was deleted.
            MessageNotFoundError: ``before`` is not in the thread.
            InvalidInputError: ``limit`` is not a positive whole number, or ``before``
                is not a string.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        _validation.check_positive_int("limit", limit)
        _validation.check_optional_id("before", before)
        docs = await self._store.history(self.id, before, limit)
        return [await self._resolve(_document.message_from_document(doc, self.id)) for doc in docs]

    async def extend(
        self, messages: Iterable[RoleMessage], *, metadata: dict[str, Any] | None = None
    ) -> None:
        """Append messages, and replace the thread's metadata, in one atomic update, if
        nobody changed the thread since this object read it.

        Unlike ``post`` and ``add_msg``, which never conflict, this lands whole or not at
        all: for a change decided on what the object read, such as a batch that must
        follow a given state, or messages and a thread field that must change together.
        Large data URIs go to GridFS first, as with ``post``.

        Args:
            messages: The messages to append, in order, built as for ``add_msg``; their
                ids must differ from each other and from the loaded messages'.
            metadata: The thread's new metadata, replacing the old as a whole; None
                leaves it unchanged.

        Raises:
            InvalidInputError: A message is not a RoleMessage, belongs to another thread,
                or repeats an id (of another message of the batch, or of one the thread
                holds inline, loaded or not); or the metadata is not acceptable; or
                there is nothing to write. Nothing was written.
            VersionConflictError: The thread changed since this object read it; nothing
                was written.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
            ThreadNotFoundError: The thread was deleted.
        """
        known = (message.id for message in self._state.messages)
        batch = appended_batch(messages, self.id, known)
        checked = None if metadata is None else _validation.check_metadata(metadata)
        if not batch and metadata is None:
            raise InvalidInputError("extend() needs messages or metadata")
        written: list[str] = []
        try:
            stored: list[RoleMessage] = []
            for message in batch:
                images, new = await self._store.offload_images(message.images)
                written.extend(new)
                stored.append(message.model_copy(update={"images": images}) if new else message)
            docs = [_document.message_to_document(message) for message in stored]
            size = sum(_document.element_size(doc) for doc in docs)
            async with self._lock:
                fields = None
                if checked is not None:
                    fields = {"metadata": checked}
                    size += _document.fields_size(fields) - _document.fields_size(
                        {"metadata": self._saved_fields["metadata"]}
                    )
                built = _updates.append_messages(
                    self.id, self.version, docs, size, time.time(), fields
                )
                await self._commit(
                    built,
                    on_same_version=lambda: InvalidInputError(
                        f"a message with one of the ids {[doc['id'] for doc in docs]!r} is "
                        f"in thread {self.id!r} already; nothing was written"
                    ),
                )
                self._state.messages.extend(stored)
                self._state.message_count += len(stored)
                if checked is not None:
                    self._state.metadata = checked
                    self._saved_fields["metadata"] = copy.deepcopy(checked)
                await self._move_overflow()
        except StoreUnavailableError:
            # The update may have landed: keep the blobs its messages may refer to.
            raise
        except BaseException:
            await self._store.discard_blobs(written)
            raise

    # -- roles ---------------------------------------------------------------------------

    async def add_role(self, role: V1Role) -> None:
        """Add a role, if nobody changed the thread since this object read it.

        Args:
            role: The role to add; no role of the thread may have its name yet.

        Raises:
            InvalidInputError: ``role`` is not a V1Role, or a role of that name exists.
            VersionConflictError: The thread changed since this object read it.
        """
        if not isinstance(role, V1Role):
            raise InvalidInputError(f"add_role() takes a V1Role, got {type(role).__name__}")
        async with self._lock:
            if role.name in self._state.roles:
                raise InvalidInputError(f"role {role.name!r} already exists in this thread")
            roles = {**self._state.roles, role.name: role}
            await self._commit_roles(roles)

    async def remove_role(self, name: str) -> None:
        """Remove the role called ``name``, if nobody changed the thread since.

        Messages posted under that role name are kept.

        Args:
            name: The name of the role to remove.

        Raises:
            InvalidInputError: No role of that name in this thread.
            VersionConflictError: The thread changed since this object read it.
        """
        async with self._lock:
            role = self._state.roles.get(name)
            if role is None:
                raise InvalidInputError(f"role {name!r} does not exist in this thread")
            roles = {key: value for key, value in self._state.roles.items() if key != name}
            await self._commit_roles(roles)

    async def _commit_roles(self, roles: dict[str, V1Role]) -> None:
        docs = [_document.role_to_document(role) for role in roles.values()]
        old = [_document.role_to_document(role) for role in self._state.roles.values()]
        delta = _document.fields_size({"roles": docs}) - _document.fields_size({"roles": old})
        await self._commit(_updates.set_roles(self.id, self.version, docs, delta, time.time()))
        self._state.roles = roles

    # -- whole-thread changes ------------------------------------------------------------

    async def save(self, *, append: RoleMessage | None = None) -> None:
        """Persist ``public``, ``name`` and ``metadata``, if nobody changed the thread since.

        Writes nothing when they are unchanged and no message is given. With ``append``,
        the message is appended in the same atomic update: the fields and the message
        land together, only if nobody changed the thread since this object read it, or
        neither does. The version rises by one.

        Args:
            append: A message to append together with the fields, as ``add_msg`` takes
                it (its ``thread_id`` None or this thread's id); large data URIs go to
                GridFS first, as with ``post``.

        Raises:
            InvalidInputError: ``metadata`` was edited in place into something unstorable,
                ``append`` is not a RoleMessage of this thread, or a message with its id
                is in the thread already; nothing was written.
            VersionConflictError: The thread changed since this object read it.
            ThreadTooLargeError: The message would push the thread past MongoDB's
                document size limit.
            ThreadNotFoundError: The thread was deleted.
        """
        message = None if append is None else self._own_message(append, "save(append=...)")
        async with self._lock:
            _validation.check_metadata(self._state.metadata)
            fields = _document.editable_fields(self._state)
            if message is not None:
                await self._save_and_append(fields, message)
                await self._move_overflow()
            elif fields == self._saved_fields:
                return
            else:
                delta = _document.fields_size(fields) - _document.fields_size(self._saved_fields)
                built = _updates.set_fields(self.id, self.version, fields, delta, time.time())
                await self._commit(built)
            self._saved_fields = copy.deepcopy(fields)

    def _own_message(self, message: object, caller: str) -> RoleMessage:
        if not isinstance(message, RoleMessage):
            raise InvalidInputError(f"{caller} takes a RoleMessage, got {type(message).__name__}")
        if message.thread_id not in (None, self.id):
            raise InvalidInputError(
                f"message {message.id!r} belongs to thread {message.thread_id!r}; post a new "
                "message instead of moving it"
            )
        if message.thread_id is None:
            return message.model_copy(update={"thread_id": self.id})
        return message

    async def _save_and_append(self, fields: dict[str, Any], message: RoleMessage) -> None:
        images, written = await self._store.offload_images(message.images)
        stored = message.model_copy(update={"images": images}) if written else message
        doc = _document.message_to_document(stored)
        size = _document.element_size(doc)
        delta = _document.fields_size(fields) - _document.fields_size(self._saved_fields)
        built = _updates.set_fields_and_append(
            self.id, self.version, fields, doc, delta + size, time.time()
        )
        try:
            await self._commit(
                built,
                on_same_version=lambda: InvalidInputError(
                    f"message {message.id!r} is in thread {self.id!r} already"
                ),
            )
        except StoreUnavailableError:
            # The update may have landed: its message would refer to the blobs.
            raise
        except BaseException:
            await self._store.discard_blobs(written)
            raise
        self._state.messages.append(stored)
        self._state.message_count += 1
        self._resolved.update(
            (ref, posted)
            for ref, posted in zip(images, message.images, strict=True)
            if is_blob_ref(ref)
        )

    async def _commit(
        self,
        built: tuple[dict[str, Any], dict[str, Any]],
        *,
        on_same_version: Callable[[], Exception] | None = None,
        records: list[dict[str, Any]] | None = None,
    ) -> None:
        """Send a change conditional on this object's version, and account for it.

        With ``records`` (changes to messages in pages) the changes still pending from
        earlier writers are completed first, so pages take changes in order. The change
        lands with the thread document's update; if its pages cannot be brought up to
        date afterwards, its records stay pending (readers apply them) and this object
        completes them before its next change to a page.
        """
        update = built[1]
        last_change_bytes = _updates.account_last_change(update, self._state.last_change_bytes)
        grown = int(update["$inc"].get("size_bytes", 0))
        total = self._state.size_bytes + grown
        if total > DOCUMENT_BUDGET_BYTES:
            raise ThreadTooLargeError(self.id, total, DOCUMENT_BUDGET_BYTES)
        if records and self._state.pending:
            await self._complete(self._state.pending)
        self._state.version = await self._store.update_at_version(
            self.id, self.version, built, on_same_version=on_same_version
        )
        self._state.updated = update["$set"]["updated"]
        self._state.size_bytes += grown
        self._state.last_change_bytes = last_change_bytes
        if records:
            # The change landed: if its pages cannot be brought up to date now, its
            # records stay pending (readers apply them) and are completed later.
            with contextlib.suppress(ThreadMemError):
                await self._complete(records)

    async def _complete(self, records: list[dict[str, Any]]) -> None:
        """Complete pending ``records`` one by one, in order, keeping the object's size
        as the store's; those left when the pages cannot be reached stay in ``pending``."""
        left = [dict(record) for record in records]
        self._state.pending = left
        while left:
            self._state.size_bytes -= await self._store.complete_pending(self.id, left[:1])
            del left[0]

    async def apply(
        self,
        change: Callable[[AsyncRoleThread], Awaitable[T]],
        *,
        attempts: int = DEFAULT_APPLY_ATTEMPTS,
    ) -> T:
        """Run ``change(self)`` until it commits, re-reading the thread after each conflict.

        ``change`` should make its edits and write them (``save()``, ``update_message``,
        ...); it may run more than once, each time on fresh state, so it must not have
        other side effects:

        ```python
        async def rename(thread):
            thread.name = "Renamed"
            await thread.save()

        await thread.apply(rename)
        ```

        The first attempt runs on the state this object holds; each later one follows a
        ``refresh()``, which drops unsaved edits, so ``change`` must make all its edits
        itself. Errors other than ``VersionConflictError`` propagate at once.

        Args:
            change: Called with this object; makes the edits and writes them.
            attempts: How many times to run ``change`` at most (at least 1).

        Returns:
            What ``change`` returned on the attempt that committed.

        Raises:
            VersionConflictError: Every attempt met a conflict.
            InvalidInputError: ``attempts`` is not a positive whole number.
        """
        _validation.check_positive_int("attempts", attempts)
        for attempt in range(attempts):
            try:
                return await change(self)
            except VersionConflictError:
                if attempt == attempts - 1:
                    raise
                await self.refresh()
        raise AssertionError("unreachable")  # pragma: no cover

    async def refresh(self) -> None:
        """Re-read the thread from the store, dropping unsaved local edits.

        Raises:
            ThreadNotFoundError: The thread was deleted.
        """
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:
        doc = await self._store.load(self.id, last=self._window)
        self._state = _document.thread_from_document(doc)
        self._saved_fields = copy.deepcopy(_document.editable_fields(self._state))
        self._stale = False

    async def _load_whole(self) -> None:
        self._window = None
        await self._reload()

    async def touch(self, ttl: datetime.timedelta | None = None) -> None:
        """Push the thread's expiry to ``ttl`` from now (default: the ``ttl`` it was made with).

        Like a post, this never conflicts and raises the version by one; and like a post,
        if others changed the thread in between, this object re-reads it, dropping
        unsaved edits to ``name``, ``public`` and ``metadata``.

        Args:
            ttl: The new time to live, a positive ``timedelta``. It also replaces the
                thread's ``ttl``, so later calls without one extend by it. None uses the
                thread's own ``ttl``.

        Raises:
            InvalidInputError: No ``ttl`` given and the thread has none.
            ThreadNotFoundError: The thread was deleted (or has expired).
        """
        seconds = self._state.ttl if ttl is None else check_expiry(ttl, None, 0)[0]
        if seconds is None:
            raise InvalidInputError("this thread has no ttl; call touch(ttl=timedelta(...))")
        async with self._lock:
            now = time.time()
            expires_at = utc(now + seconds)
            old = _document.expiry_fields(self._state.expires_at, self._state.ttl)
            new = _document.expiry_fields(expires_at, seconds)
            delta = _document.fields_size(new) - _document.fields_size(old)
            built = _updates.set_expiry(self.id, expires_at, seconds, delta, now)
            if not await self._store.touch(
                self.id, built, self._state.version, self._state.page_count
            ):
                await self._follow_others()
                return
            self._state.version += 1
            self._state.expires_at = expires_at
            self._state.ttl = seconds
            self._state.size_bytes += delta
            self._state.updated = now

    async def delete(self) -> None:
        """Delete the thread and its messages from the store.

        Images in GridFS that no other thread references are deleted too. This object
        is not changed; any later write through it raises ``ThreadNotFoundError``.

        Raises:
            ThreadNotFoundError: The thread was already deleted.
        """
        if not await self._store.delete(self.id):
            raise ThreadNotFoundError(self.id)

    async def copy(self) -> AsyncRoleThread:
        """Return a new, stored thread with this one's fields, roles and messages.

        The copy has a new id, and its messages have new ids, so ``RoleMessage.find(id=...)``
        stays unambiguous. Images in GridFS are shared, not duplicated: deleting either
        thread leaves the other's images in place. A thread with a ``ttl`` gives the copy
        the same ``ttl`` from now; one with only ``expires_at`` gives it that date.

        The messages, roles and expiry are copied from the thread as stored, read whole
        when the copy is made, whatever this object has loaded; ``name``, ``public`` and
        ``metadata`` are taken as this object holds them, unsaved edits included. This
        object is not changed. Should a message be deleted (and its images released)
        while the copy is made, the copy is dropped and made again from a new read, so
        no copy ever refers to an image that is gone.

        Returns:
            The new thread, at version 0, stored in the same store.

        Raises:
            ThreadTooLargeError: The copy would exceed MongoDB's document size limit.
            ThreadNotFoundError: The thread has been deleted.
            VersionConflictError: Images kept being released while copying, on every
                one of ``COPY_ATTEMPTS`` attempts.
        """
        for _ in range(COPY_ATTEMPTS):
            source = _document.thread_from_document(await self._store.load(self.id))
            thread_id = new_id()
            state = new_state(
                self.owner_id,
                self.public,
                self.name,
                copy.deepcopy(self.metadata),
                source.roles,
                _document.renumbered_messages(source.messages, thread_id),
                thread_id,
                ttl=None if source.ttl is None else datetime.timedelta(seconds=source.ttl),
                expires_at=source.expires_at if source.ttl is None else None,
            )
            made = await AsyncRoleThread._create(state, self._store)
            shared = _updates.blob_ids_of(
                _document.message_to_document(message) for message in state.messages
            )
            if await self._store.blobs_intact(shared):
                return made
            await self._store.delete(made.id)
        raise VersionConflictError(self.id, self.version, source.version)
