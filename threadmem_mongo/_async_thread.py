"""``AsyncRoleThread`` and, generated from it, ``AsyncRoleThread``: the object API over a store.

Each method validates its input, asks :mod:`threadmem_mongo._updates` for the one update
it needs, sends it through the store, and applies the same change to the local state.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_thread.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from threadmem_mongo import _document, _updates, _validation
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._config import async_default_store
from threadmem_mongo._document import ThreadState
from threadmem_mongo._images import ImageInput, normalize_images
from threadmem_mongo._limits import DOCUMENT_BUDGET_BYTES
from threadmem_mongo._models import RoleMessage, V1Role, V1RoleThread, new_id
from threadmem_mongo._openai import message_fields_from_openai
from threadmem_mongo.errors import (
    InvalidInputError,
    MessageNotFoundError,
    ThreadTooLargeError,
    VersionConflictError,
)

T = TypeVar("T")

# Replaced by True in the generated synchronous twin.
_IS_SYNC = False

#: How often :meth:`AsyncRoleThread.apply` re-reads and retries before giving up.
DEFAULT_APPLY_ATTEMPTS = 5


def _new_state(
    owner_id: object,
    public: object,
    name: object,
    metadata: object,
    role_mapping: object,
    messages: list[RoleMessage] | None = None,
    thread_id: str | None = None,
) -> ThreadState:
    now = time.time()
    return ThreadState(
        id=thread_id or new_id(),
        owner_id=_validation.check_optional_str("owner_id", owner_id),
        public=_validation.check_bool("public", public),
        name=_validation.check_optional_str("name", name),
        metadata=_validation.check_metadata(metadata),
        roles=_check_role_mapping(role_mapping),
        messages=messages or [],
        version=0,
        created=now,
        updated=now,
    )


def _check_role_mapping(value: object) -> dict[str, V1Role]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"role_mapping must be a dict of role name -> V1Role, got {type(value).__name__}"
        )
    roles: dict[str, V1Role] = {}
    for key, role in value.items():
        if not isinstance(role, V1Role):
            raise InvalidInputError(f"role_mapping[{key!r}] must be a V1Role")
        if key != role.name:
            raise InvalidInputError(
                f"role_mapping key {key!r} differs from the role's name {role.name!r}"
            )
        roles[key] = role
    return roles


class AsyncRoleThread:
    """A persistent thread of messages posted under role names.

    Creating one stores it at once: ``RoleThread(...)`` in the sync API, or the awaited
    ``aio.AsyncRoleThread.create(...)`` in the async API. Every later change is one atomic
    MongoDB update: posts are appends that never conflict; changes based on what this
    object read (:meth:`save`, roles, :meth:`update_message`, :meth:`delete_message`,
    :meth:`remove_images`) land only if nobody changed the thread since, else they raise
    :class:`~threadmem_mongo.errors.VersionConflictError` and write nothing.

    One object may be shared by the threads (or tasks) of one process; each process or
    worker may also hold its own object for the same thread id.

    Args:
        owner_id: Who owns the thread; scoping access by owner is the app's job.
        public: Whether the thread is public.
        name: A display name.
        metadata: Free-form data; keys must not start with ``$`` or contain ``.``.
        role_mapping: Roles of the thread, by name.
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
        store: AsyncThreadStore | None = None,
    ) -> None:
        if not _IS_SYNC:
            raise TypeError("AsyncRoleThread(...) cannot store a thread; use .create(...)")
        state = _new_state(owner_id, public, name, metadata, role_mapping)
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
        store: AsyncThreadStore | None = None,
    ) -> AsyncRoleThread:
        """Create and store a new thread; the arguments are those of the class."""
        state = _new_state(owner_id, public, name, metadata, role_mapping)
        return await cls._create(state, store)

    # -- construction helpers ------------------------------------------------------------

    def _attach(self, store: AsyncThreadStore, state: ThreadState) -> None:
        self._store = store
        self._state = state
        self._saved_fields = copy.deepcopy(_document.editable_fields(state))
        self._lock = asyncio.Lock()

    async def _insert(self) -> None:
        doc = _document.thread_to_document(self._state)
        await self._store.insert(doc)
        self._state.size_bytes = doc["size_bytes"]
        self._state.message_count = doc["message_count"]

    @classmethod
    def _from_document(cls, doc: Mapping[str, Any], store: AsyncThreadStore) -> AsyncRoleThread:
        thread = cls.__new__(cls)
        thread._attach(store, _document.thread_from_document(doc))
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
        """Whether the thread is public. Settable; :meth:`save` persists it."""
        return self._state.public

    @public.setter
    def public(self, value: bool) -> None:
        self._state.public = _validation.check_bool("public", value)

    @property
    def name(self) -> str | None:
        """The display name. Settable; :meth:`save` persists it."""
        return self._state.name

    @name.setter
    def name(self, value: str | None) -> None:
        self._state.name = _validation.check_optional_str("name", value)

    @property
    def metadata(self) -> dict[str, Any] | None:
        """Free-form data. Settable, or edit the dict in place; :meth:`save` persists it."""
        return self._state.metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any] | None) -> None:
        self._state.metadata = _validation.check_metadata(value)

    @property
    def role_mapping(self) -> dict[str, V1Role]:
        """The thread's roles by name (a copy: change roles with :meth:`add_role`)."""
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
        re-reads it afterwards, so it holds their messages too.

        Args:
            role: The role name posting the message.
            msg: The text; may hold ``<image>`` placeholders (see ``to_openai``).
            images: URLs, data URIs, local file paths, bytes, or PIL images.
            private: Leave the message out of ``messages(include_private=False)``.
            metadata: Free-form data stored with the message.

        Returns:
            The stored message.

        Raises:
            InvalidInputError: Bad role, text, image or metadata; nothing was written.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
            ThreadNotFoundError: The thread was deleted.
            StoreUnavailableError: The server could not be reached. Retrying with
                ``add_msg(message)`` of the same message cannot duplicate it.
        """
        _validation.check_role(role)
        stored_images = normalize_images(images)
        message = RoleMessage(
            role=role,
            text=msg,
            thread_id=self.id,
            images=stored_images,
            private=_validation.check_bool("private", private),
            metadata=metadata,
        )
        return await self._append(message)

    async def add_msg(self, message: RoleMessage) -> RoleMessage:
        """Append an existing message object, keeping its id.

        Adding a message whose id is already in the thread changes nothing, so a failed
        post can be retried safely with the same message.

        Raises:
            InvalidInputError: ``message`` is not a RoleMessage, or belongs to another thread.
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

    async def _append(self, message: RoleMessage) -> RoleMessage:
        doc = _document.message_to_document(message)
        size = _document.element_size(doc)
        async with self._lock:
            now = time.time()
            version, appended = await self._store.append(self.id, doc, size, now)
            if appended and version == self._state.version + 1:
                state = self._state
                state.messages.append(message)
                state.version = version
                state.size_bytes += size
                state.message_count += 1
                state.updated = now
            else:
                # Someone else changed the thread in between (or this message had landed
                # before): read it again so this object holds what the store holds.
                await self._reload()
        return message

    def messages(self, include_private: bool = True) -> list[RoleMessage]:
        """Return the messages in posting order.

        Args:
            include_private: Also return messages posted with ``private=True``.
        """
        if include_private:
            return list(self._state.messages)
        return [message for message in self._state.messages if not message.private]

    def _find_message(self, message_id: str) -> tuple[int, RoleMessage]:
        for index, message in enumerate(self._state.messages):
            if message.id == message_id:
                return index, message
        raise MessageNotFoundError(self.id, message_id)

    async def update_message(
        self,
        message_id: str,
        *,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        private: bool | None = None,
    ) -> RoleMessage:
        """Change a message's text, metadata or privacy, if nobody changed the thread since.

        Returns:
            The updated message.

        Raises:
            MessageNotFoundError: No message with that id in this thread.
            InvalidInputError: Nothing to change, or a bad value.
            VersionConflictError: The thread changed since this object read it.
        """
        changes: dict[str, Any] = {}
        if text is not None:
            changes["text"] = text
        if metadata is not None:
            changes["metadata"] = _validation.check_metadata(metadata)
        if private is not None:
            changes["private"] = _validation.check_bool("private", private)
        if not changes:
            raise InvalidInputError("update_message() needs text, metadata or private")
        async with self._lock:
            index, old = self._find_message(message_id)
            if "text" in changes:
                _validation.check_text(changes["text"], has_images=bool(old.images))
            new = old.model_copy(update=changes)
            delta = self._size_delta(old, new)
            built = _updates.edit_message(
                self.id, self.version, message_id, changes, delta, time.time()
            )
            await self._commit(
                built, on_same_version=lambda: MessageNotFoundError(self.id, message_id)
            )
            self._state.messages[index] = new
            self._state.size_bytes += delta
            return new

    async def delete_message(self, message_id: str) -> None:
        """Delete a message, if nobody changed the thread since this object read it.

        Raises:
            MessageNotFoundError: No message with that id in this thread.
            VersionConflictError: The thread changed since this object read it.
        """
        async with self._lock:
            index, old = self._find_message(message_id)
            size = _document.element_size(_document.message_to_document(old))
            built = _updates.delete_message(self.id, self.version, message_id, size, time.time())
            await self._commit(
                built, on_same_version=lambda: MessageNotFoundError(self.id, message_id)
            )
            del self._state.messages[index]
            self._state.size_bytes -= size
            self._state.message_count -= 1

    async def remove_images(self) -> None:
        """Strip the images from every ``user`` message, and persist it.

        Does nothing (and writes nothing) if no user message has images.

        Raises:
            VersionConflictError: The thread changed since this object read it.
        """
        async with self._lock:
            changed: dict[int, RoleMessage] = {}
            for index, message in enumerate(self._state.messages):
                if message.role == "user" and message.images:
                    text = message.text.replace("<image>", "").strip() or "[image removed]"
                    changed[index] = message.model_copy(update={"images": [], "text": text})
            if not changed:
                return
            delta = sum(
                self._size_delta(self._state.messages[i], new) for i, new in changed.items()
            )
            built = _updates.edit_messages_at(
                self.id,
                self.version,
                {i: {"images": [], "text": new.text} for i, new in changed.items()},
                delta,
                time.time(),
            )
            await self._commit(built)
            for index, new in changed.items():
                self._state.messages[index] = new
            self._state.size_bytes += delta

    @staticmethod
    def _size_delta(old: RoleMessage, new: RoleMessage) -> int:
        return _document.element_size(_document.message_to_document(new)) - _document.element_size(
            _document.message_to_document(old)
        )

    # -- roles ---------------------------------------------------------------------------

    async def add_role(self, role: V1Role) -> None:
        """Add a role, if nobody changed the thread since this object read it.

        Raises:
            InvalidInputError: ``role`` is not a V1Role, or a role of that name exists.
            VersionConflictError: The thread changed since this object read it.
        """
        if not isinstance(role, V1Role):
            raise InvalidInputError(f"add_role() takes a V1Role, got {type(role).__name__}")
        async with self._lock:
            if role.name in self._state.roles:
                raise InvalidInputError(f"role {role.name!r} already exists in this thread")
            doc = _document.role_to_document(role)
            size = _document.element_size(doc)
            await self._commit(_updates.add_role(self.id, self.version, doc, size, time.time()))
            self._state.roles[role.name] = role
            self._state.size_bytes += size

    async def remove_role(self, name: str) -> None:
        """Remove the role called ``name``, if nobody changed the thread since.

        Raises:
            InvalidInputError: No role of that name in this thread.
            VersionConflictError: The thread changed since this object read it.
        """
        async with self._lock:
            role = self._state.roles.get(name)
            if role is None:
                raise InvalidInputError(f"role {name!r} does not exist in this thread")
            size = _document.element_size(_document.role_to_document(role))
            await self._commit(_updates.remove_role(self.id, self.version, name, size, time.time()))
            del self._state.roles[name]
            self._state.size_bytes -= size

    # -- whole-thread changes ------------------------------------------------------------

    async def save(self) -> None:
        """Persist ``public``, ``name`` and ``metadata``, if nobody changed the thread since.

        Writes nothing when they are unchanged.

        Raises:
            InvalidInputError: ``metadata`` was edited in place into something unstorable.
            VersionConflictError: The thread changed since this object read it.
        """
        async with self._lock:
            _validation.check_metadata(self._state.metadata)
            fields = _document.editable_fields(self._state)
            if fields == self._saved_fields:
                return
            delta = _document.fields_size(fields) - _document.fields_size(self._saved_fields)
            built = _updates.set_fields(self.id, self.version, fields, delta, time.time())
            await self._commit(built)
            self._state.size_bytes += delta
            self._saved_fields = copy.deepcopy(fields)

    async def _commit(
        self,
        built: tuple[dict[str, Any], dict[str, Any]],
        *,
        on_same_version: Callable[[], Exception] | None = None,
    ) -> None:
        update = built[1]
        grown = self._state.size_bytes + int(update["$inc"].get("size_bytes", 0))
        if grown > DOCUMENT_BUDGET_BYTES:
            raise ThreadTooLargeError(self.id, grown, DOCUMENT_BUDGET_BYTES)
        self._state.version = await self._store.update_at_version(
            self.id, self.version, built, on_same_version=on_same_version
        )
        self._state.updated = update["$set"]["updated"]

    async def apply(
        self,
        change: Callable[[AsyncRoleThread], Awaitable[T]],
        *,
        attempts: int = DEFAULT_APPLY_ATTEMPTS,
    ) -> T:
        """Run ``change(self)`` until it commits, re-reading the thread after each conflict.

        ``change`` should make its edits and write them (``save()``, ``update_message``,
        ...); it may run more than once, each time on fresh state, so it must not have
        other side effects::

            def rename(thread):
                thread.name = "Renamed"
                thread.save()

            thread.apply(rename)

        Returns:
            What ``change`` returned on the attempt that committed.

        Raises:
            VersionConflictError: Every attempt met a conflict.
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
        self._state = _document.thread_from_document(await self._store.load(self.id))
        self._saved_fields = copy.deepcopy(_document.editable_fields(self._state))

    async def delete(self) -> None:
        """Delete the thread and its messages from the store.

        Raises:
            ThreadNotFoundError: The thread was already deleted.
        """
        from threadmem_mongo.errors import ThreadNotFoundError

        if not await self._store.delete(self.id):
            raise ThreadNotFoundError(self.id)

    async def copy(self) -> AsyncRoleThread:
        """Return a new, stored thread with this one's fields, roles and messages.

        The copy has a new id, and its messages have new ids, so ``RoleMessage.find(id=...)``
        stays unambiguous.
        """
        thread_id = new_id()
        messages = _document.renumbered_messages(self._state.messages, thread_id)
        state = _new_state(
            self.owner_id,
            self.public,
            self.name,
            copy.deepcopy(self.metadata),
            self.role_mapping,
            messages,
            thread_id,
        )
        return await AsyncRoleThread._create(state, self._store)

    # -- lookup --------------------------------------------------------------------------

    @classmethod
    async def get(cls, thread_id: str, *, store: AsyncThreadStore | None = None) -> AsyncRoleThread:
        """Load one thread by id.

        Raises:
            ThreadNotFoundError: No such thread.
            InvalidInputError: ``thread_id`` is not a string.
        """
        if not isinstance(thread_id, str):
            raise InvalidInputError(f"thread_id must be a string, got {type(thread_id).__name__}")
        target = store if store is not None else async_default_store()
        return cls._from_document(await target.load(thread_id), target)

    @classmethod
    async def find(
        cls, *, store: AsyncThreadStore | None = None, **filters: object
    ) -> list[AsyncRoleThread]:
        """Find threads by equality, oldest first.

        Args:
            store: The store to search; the configured default if omitted.
            **filters: Any of ``id``, ``owner_id``, ``public``, ``name`` with a scalar value,
                and ``metadata={key: scalar, ...}`` for threads whose metadata holds all of
                those entries.

        Raises:
            InvalidInputError: An unknown field, or a value that is not a scalar (query
                operators such as ``{"$ne": None}`` are refused).
        """
        query = _updates.thread_search_filter(filters)
        target = store if store is not None else async_default_store()
        return [cls._from_document(doc, target) for doc in await target.find(query)]

    # -- formats -------------------------------------------------------------------------

    def to_openai(self, include_private: bool = True) -> dict[str, list[dict[str, Any]]]:
        """Return ``{"messages": [...]}`` in OpenAI chat format; see ``RoleMessage.to_openai``."""
        return {"messages": [m.to_openai() for m in self.messages(include_private)]}

    @classmethod
    async def from_openai(
        cls,
        messages: Iterable[Mapping[str, Any]],
        *,
        owner_id: str | None = None,
        public: bool = False,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        store: AsyncThreadStore | None = None,
    ) -> AsyncRoleThread:
        """Build and store a thread from OpenAI chat messages, in one write.

        Raises:
            InvalidInputError: A message is not of the OpenAI shape; nothing was written.
        """
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
            raise InvalidInputError("messages must be a list of OpenAI chat messages")
        thread_id = new_id()
        parsed = []
        for index, raw in enumerate(messages):
            role, text, images = message_fields_from_openai(raw, index)
            parsed.append(RoleMessage(role=role, text=text, images=images, thread_id=thread_id))
        state = _new_state(owner_id, public, name, metadata, None, parsed, thread_id)
        return await cls._create(state, store)

    def to_v1(self) -> V1RoleThread:
        """Return the exchange schema of this thread (``version`` as text)."""
        return V1RoleThread(
            owner_id=self.owner_id,
            public=self.public,
            name=self.name,
            metadata=copy.deepcopy(self.metadata),
            id=self.id,
            messages=[m.to_v1() for m in self._state.messages],
            role_mapping=dict(self._state.roles),
            version=str(self.version),
            created=self.created,
            updated=self.updated,
        )

    @classmethod
    async def from_v1(
        cls, schema: V1RoleThread, *, store: AsyncThreadStore | None = None
    ) -> AsyncRoleThread:
        """Store a thread given as its exchange schema, keeping its ids, in one write.

        Raises:
            InvalidInputError: The schema is invalid, or a thread with its id exists.
        """
        if not isinstance(schema, V1RoleThread):
            raise InvalidInputError(f"from_v1() takes a V1RoleThread, got {type(schema).__name__}")
        messages = [
            RoleMessage.from_v1(m).model_copy(update={"thread_id": schema.id})
            for m in schema.messages
        ]
        state = ThreadState(
            id=schema.id,
            owner_id=schema.owner_id,
            public=schema.public,
            name=schema.name,
            metadata=_validation.check_metadata(schema.metadata),
            roles=_check_role_mapping(schema.role_mapping),
            messages=messages,
            version=0,
            created=schema.created,
            updated=schema.updated,
        )
        return await cls._create(state, store)
