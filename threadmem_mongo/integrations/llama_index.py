"""LlamaIndex chat store: ``ThreadMemChatStore``, an ``AsyncDBChatStore`` on the async API.

Each key is a thread (its id is the key) and each ``ChatMessage`` one message of it, in
order, with the message's ``role``, its text as ``text``, its images as the message's
images (so large ones go to GridFS), and under the metadata key ``llama_index``:

```text
{"status": "active" | "archived", "message": "<the ChatMessage as JSON>"}
```

The JSON keeps the message whole (blocks, ``additional_kwargs``), with each inline image
replaced by its position among the message's images. Threads this store writes carry
``{"llama_index_chat_store": True}`` in their metadata, which is how ``get_keys`` tells
them from other threads of the same store.

Requires the ``llama-index`` extra: ``pip install "threadmem-mongo[llama-index]"``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus

from threadmem_mongo import (
    InputTypeError,
    InvalidInputError,
    RoleMessage,
    ThreadNotFoundError,
    V1RoleThread,
    VersionConflictError,
    _pages,
    _updates,
)
from threadmem_mongo._capabilities import is_mongomock
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.integrations import _async_thread_io, _stored_items

__all__ = ["MESSAGE_KEY", "THREAD_MARK", "ThreadMemChatStore"]

#: The message metadata key holding the status and the ``ChatMessage`` JSON.
MESSAGE_KEY = "llama_index"
#: The thread metadata key marking threads this store wrote.
THREAD_MARK = "llama_index_chat_store"
#: How often a change decided on what was read is re-read and retried after a conflict.
ATTEMPTS = 100

#: How often a filtered read counts again after the thread changed between its count and
#: its read, before it reads the whole thread instead.
WINDOW_ATTEMPTS = 5

_IMAGE_INDEX = "threadmem_image"
_PLACEHOLDER = "<image>"

T = TypeVar("T")


def _checked_batch(key: object, messages: object, status: object) -> list[RoleMessage]:
    """The messages of an ``add_messages``/``set_messages`` call, checked and converted."""
    _check_key(key)
    if not isinstance(messages, list):
        raise InputTypeError(f"messages must be a list, got {type(messages).__name__}")
    chosen = _required_status(status)
    return [to_role_message(_check_message(m), chosen) for m in messages]


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InputTypeError(f"key must be a non-empty string, got {type(key).__name__}")
    if not key:
        raise InvalidInputError("key must be a non-empty string, got ''")
    return key


def _check_status(status: object, *, optional: bool) -> MessageStatus | None:
    if status is None and optional:
        return None
    return _required_status(status)


def _required_status(status: object) -> MessageStatus:
    if not isinstance(status, str):  # a MessageStatus is a str
        raise InputTypeError(f"status must be a MessageStatus, got {type(status).__name__}")
    try:
        return MessageStatus(status)
    except ValueError:
        raise InvalidInputError(f"status must be a MessageStatus, got {status!r}") from None


def _check_count(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be a whole number of at least 0, got {value!r}")
    if value < 0:
        raise InvalidInputError(f"{name} must be a whole number of at least 0, got {value!r}")
    return value


def _check_message(message: object) -> ChatMessage:
    if not isinstance(message, ChatMessage):
        raise InputTypeError(f"expected a ChatMessage, got {type(message).__name__}")
    return message


def to_role_message(message: ChatMessage, status: MessageStatus) -> RoleMessage:
    """Return the stored form of ``message``: readable role and text, images, the JSON.

    Args:
        message: The LlamaIndex message.
        status: Its status in the store.

    Returns:
        A new ``RoleMessage`` (not yet in any thread).
    """
    data = message.model_dump(mode="json")
    images: list[str] = []
    for block in data.get("blocks") or []:
        if block.get("block_type") != "image":
            continue
        inline, mime = block.get("image"), block.get("image_mimetype")
        if isinstance(inline, str) and isinstance(mime, str) and mime.startswith("image/"):
            block[_IMAGE_INDEX] = len(images)
            block["image"] = None
            images.append(f"data:{mime};base64,{inline}")
        elif isinstance(block.get("url"), str) and block["url"].lower().startswith(
            ("http://", "https://")
        ):
            # The JSON keeps the URL; the copy only makes the image visible to readers.
            images.append(block["url"])
    text = message.content or ""
    if images:
        # The readable text is derived: keep it from being read as image placeholders.
        text = text.replace(_PLACEHOLDER, "<image >")
    elif not text:
        text = f"[{data['role']} message]"
    # Left out, as each costs every message its bytes: the role (the message's own),
    # empty additional_kwargs, the status when active, and the text, stored once as the
    # message's text (``"text"`` says where it goes back).
    role = str(data.pop("role"))
    if data.get("additional_kwargs") == {}:
        del data["additional_kwargs"]
    stored: dict[str, Any] = {}
    if status != MessageStatus.ACTIVE:
        stored["status"] = status.value
    pointer = _stored_items.take_text(data, text)
    if pointer is not None:
        stored["text"] = pointer
    stored["message"] = json.dumps(data, separators=(",", ":"))
    return RoleMessage(role=role, text=text, images=images, metadata={MESSAGE_KEY: stored})


def _condition(status: MessageStatus | None) -> dict[str, Any] | None:
    """The server-side condition for messages with ``status`` (None: every message); a
    message posted by other means counts as active, as ``_status_of`` reads it."""
    if status is None:
        return None
    return _updates.metadata_match(
        (MESSAGE_KEY, "status"), status.value, MessageStatus.ACTIVE.value
    )


def _stored(message: RoleMessage) -> dict[str, Any] | None:
    stored = (message.metadata or {}).get(MESSAGE_KEY)
    return stored if isinstance(stored, dict) and "message" in stored else None


def _status_of(message: RoleMessage) -> str:
    """The status of a stored message; messages posted by other means count as active."""
    stored = _stored(message)
    if stored is None:
        return MessageStatus.ACTIVE.value
    return str(stored.get("status", MessageStatus.ACTIVE.value))


def from_role_message(message: RoleMessage) -> ChatMessage:
    """Return the ``ChatMessage`` a stored message holds (images resolved first).

    Args:
        message: A message written by ``to_role_message``, images as data URIs or URLs.

    Returns:
        The ``ChatMessage``, equal to the one stored. A message posted by other means
            (``RoleThread.post``) becomes a ``ChatMessage`` with its text and image URLs,
            and role ``user`` unless its role is one LlamaIndex knows.
    """
    stored = _stored(message)
    if stored is None:
        return _foreign_message(message)
    data = json.loads(stored["message"])
    data.setdefault("role", message.role)
    data.setdefault("additional_kwargs", {})
    if stored.get("text"):
        _stored_items.put_text(data, stored["text"], message.text)
    for block in data.get("blocks") or []:
        index = block.pop(_IMAGE_INDEX, None)
        if isinstance(index, int):
            block["image"] = message.images[index].partition(",")[2]
    return ChatMessage.model_validate(data)


def _foreign_message(message: RoleMessage) -> ChatMessage:
    roles = {role.value for role in MessageRole}
    blocks: list[Any] = [TextBlock(text=message.text)] if message.text else []
    blocks.extend(ImageBlock(url=image) for image in message.images if image.startswith("http"))
    blocks.extend(
        ImageBlock(image=image.partition(",")[2].encode("ascii"))
        for image in message.images
        if image.startswith("data:")
    )
    role = message.role if message.role in roles else MessageRole.USER.value
    return ChatMessage(role=role, blocks=blocks)


class ThreadMemChatStore(AsyncDBChatStore):
    """A LlamaIndex ``AsyncDBChatStore`` keeping each key's messages in one thread.

    Use it as ``Memory.from_defaults(session_id=..., chat_store=ThreadMemChatStore())``.
    Every method runs on the async API (``AsyncMongoClient``). Paging, ordering and
    statuses follow LlamaIndex's SQL chat store; ``delete_message(key, idx)`` takes the
    0-based position of the message in ``get_messages(key, status=None)``.

    Args:
        store: The async store to use; the configured default
            (``threadmem_mongo.aio.configure``) if omitted.

    Every check of an argument's type raises ``threadmem_mongo.InputTypeError``, both
    an ``InvalidInputError`` and the ``TypeError`` the SQL store raises where it
    raises one (a ``messages`` that is not iterable); a bad value of the right type
    (an empty key, a negative count, an unknown status) raises ``InvalidInputError``.

    Raises:
        InputTypeError: ``store`` is not an ``AsyncThreadStore``.
    """

    _store: AsyncThreadStore | None = PrivateAttr(default=None)

    def __init__(self, *, store: AsyncThreadStore | None = None) -> None:
        if store is not None and not isinstance(store, AsyncThreadStore):
            raise InputTypeError(f"store must be an AsyncThreadStore, got {type(store).__name__}")
        super().__init__()
        self._store = store

    @classmethod
    def class_name(cls) -> str:
        """Return the class name."""
        return "ThreadMemChatStore"

    # -- thread access -------------------------------------------------------------------

    async def _load(self, key: str, *, last: int | None = None) -> AsyncRoleThread | None:
        try:
            return await AsyncRoleThread.get(key, last=last, store=self._store)
        except ThreadNotFoundError:
            return None

    async def _load_or_create(
        self, key: str, first: Sequence[RoleMessage]
    ) -> AsyncRoleThread | None:
        """Return the thread (its messages not loaded), or None if this call created it
        holding ``first``."""
        thread = await self._load(key, last=0)
        if thread is not None:
            return thread
        now = time.time()
        schema = V1RoleThread(
            id=key,
            public=False,
            metadata={THREAD_MARK: True},
            messages=[m.to_v1() for m in first],
            created=now,
            updated=now,
        )
        try:
            await AsyncRoleThread.from_v1(schema, store=self._store)
            return None
        except InvalidInputError:
            # Created by another writer in between: append to it instead.
            thread = await self._load(key, last=0)
            if thread is None:
                raise
            return thread

    async def _retrying(
        self, key: str, change: Callable[[AsyncRoleThread], Awaitable[T]], empty: T
    ) -> T:
        """Run ``change`` on the whole thread, re-reading it after each version conflict.

        Raises:
            VersionConflictError: Other writers changed the thread before each of
                ``ATTEMPTS`` attempts landed (the last conflict is raised).
        """
        for attempt in range(ATTEMPTS):
            thread = await self._load(key)
            if thread is None:
                return empty
            try:
                return await change(thread)
            except ThreadNotFoundError:
                continue
            except VersionConflictError:
                if attempt == ATTEMPTS - 1:
                    raise
        return empty

    async def _window(
        self, key: str, status: MessageStatus | None, offset: int, limit: int | None
    ) -> list[RoleMessage] | None:
        """The key's messages with ``status`` from ``offset`` on (``limit`` of them),
        filtered, counted and cut by the server: one aggregation counts the matching
        messages of the thread and of each page, and one or two read only the window.

        Returns:
            The messages, images not read; None when the thread must be read whole
                instead: on mongomock (whose ``$filter`` is unreliable), while the
                thread holds pending changes to paged messages, or when it kept changing
                between the count and the read.
        """
        target = _async_thread_io.store_or_default(self._store)
        if is_mongomock(target.collection):
            return None
        condition = _condition(status)
        for _ in range(WINDOW_ATTEMPTS):
            counts = await target.count_matching(key, condition)
            if counts is None:
                return []
            if counts.pending:
                return None
            matching = [(region, count) for region, _, count in counts.regions]
            plan = _pages.plan_window(matching, offset, limit)
            if not plan:
                return []
            found = await target.read_matching(key, condition, counts, plan)
            if found is not None:
                return found
        return None

    @staticmethod
    async def _stored(thread: AsyncRoleThread, status: MessageStatus | None) -> list[RoleMessage]:
        """The thread's messages with ``status`` (None: all), images not yet read."""
        return [
            m
            for m in await thread.messages(resolve_images=False)
            if status is None or _status_of(m) == status.value
        ]

    @staticmethod
    async def _read(thread: AsyncRoleThread, message: RoleMessage) -> ChatMessage:
        """The ``ChatMessage`` of a stored message, reading its GridFS images."""
        images = await thread.store.resolve_images(message.images)
        return from_role_message(message.model_copy(update={"images": images}))

    # -- AsyncDBChatStore ----------------------------------------------------------------

    async def get_messages(
        self,
        key: str,
        status: MessageStatus | None = MessageStatus.ACTIVE,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[ChatMessage]:
        """Return the key's messages with ``status`` (None: any), oldest first.

        Args:
            key: The key (the thread id).
            status: Only messages with this status; None for all.
            limit: At most this many.
            offset: Skip this many first (counted among those with ``status``).

        Returns:
            The messages; empty for an unknown key.

        Raises:
            InvalidInputError: A bad key, status, limit or offset.
        """
        _check_key(key)
        chosen = _check_status(status, optional=True)
        first = _check_count("offset", offset, optional=True) or 0
        count = _check_count("limit", limit, optional=True)
        window = await self._window(key, chosen, first, count)
        if window is not None:
            target = _async_thread_io.store_or_default(self._store)
            return [
                from_role_message(
                    m.model_copy(update={"images": await target.resolve_images(m.images)})
                )
                for m in window
            ]
        thread = await self._load(key)
        if thread is None:
            return []
        stored = await self._stored(thread, chosen)
        page = stored[first:] if count is None else stored[first : first + count]
        return [await self._read(thread, m) for m in page]

    async def count_messages(
        self, key: str, status: MessageStatus | None = MessageStatus.ACTIVE
    ) -> int:
        """Return how many messages the key has with ``status`` (None: any).

        Raises:
            InvalidInputError: A bad key or status.
        """
        _check_key(key)
        chosen = _check_status(status, optional=True)
        target = _async_thread_io.store_or_default(self._store)
        if not is_mongomock(target.collection):
            counts = await target.count_matching(key, _condition(chosen))
            if counts is None:
                return 0
            if not counts.pending:
                return counts.matching
        thread = await self._load(key)
        if thread is None:
            return 0
        if chosen is None:
            return thread.message_count
        return len(await self._stored(thread, chosen))

    async def add_message(
        self, key: str, message: ChatMessage, status: MessageStatus = MessageStatus.ACTIVE
    ) -> None:
        """Append one message to the key: one atomic append that never conflicts.

        Raises:
            InvalidInputError: A bad key, message or status; nothing was written.
        """
        _check_key(key)
        stored = to_role_message(_check_message(message), _required_status(status))
        target = _async_thread_io.store_or_default(self._store)
        if await target.append_if_room(key, stored, thread_metadata={THREAD_MARK: True}):
            return
        thread = await self._load_or_create(key, [stored])
        if thread is None:
            return
        if not (thread.metadata or {}).get(THREAD_MARK):
            await self._append_marked(key, [stored])
            return
        await thread.add_msg(stored)

    async def add_messages(
        self,
        key: str,
        messages: list[ChatMessage],
        status: MessageStatus = MessageStatus.ACTIVE,
    ) -> None:
        """Append messages to the key, together, in order, in one atomic update.

        Raises:
            InvalidInputError: A bad key, message or status; nothing was written.
        """
        stored = _checked_batch(key, messages, status)
        if stored:
            await self._append_marked(key, stored)

    async def _append_marked(self, key: str, stored: list[RoleMessage]) -> None:
        """Append ``stored`` in one update (creating the thread, or marking it as this
        store's), re-reading after each conflict; the last of ``ATTEMPTS`` is raised."""
        for attempt in range(ATTEMPTS):
            thread = await self._load_or_create(key, stored)
            if thread is None:
                return
            metadata = dict(thread.metadata or {})
            mark = None if metadata.get(THREAD_MARK) else {**metadata, THREAD_MARK: True}
            try:
                await thread.extend(stored, metadata=mark)
                return
            except ThreadNotFoundError:
                continue
            except VersionConflictError:
                if attempt == ATTEMPTS - 1:
                    raise
        # Deleted by others between every read and write: report it, never drop the batch.
        raise ThreadNotFoundError(key)

    async def set_messages(
        self,
        key: str,
        messages: list[ChatMessage],
        status: MessageStatus = MessageStatus.ACTIVE,
    ) -> None:
        """Replace all the key's messages with ``messages``, all with ``status``.

        Raises:
            InvalidInputError: A bad key, message or status; nothing was written.
        """
        stored = _checked_batch(key, messages, status)
        await self.delete_messages(key)
        if stored:
            await self._append_marked(key, stored)

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete the message at position ``idx`` of ``get_messages(key, status=None)``.

        LlamaIndex's SQL store takes its row id here; a thread has no row ids, so the
        position (0 = oldest, archived messages included) names the message instead.

        Returns:
            The deleted message, or None if there is no message at ``idx``.

        Raises:
            InvalidInputError: A bad key or index.
        """
        _check_key(key)
        position = _check_count("idx", idx)
        assert position is not None

        async def remove(thread: AsyncRoleThread) -> ChatMessage | None:
            messages = await self._stored(thread, None)
            if position >= len(messages):
                return None
            # Read before deleting: the message's GridFS images go with it.
            removed = await self._read(thread, messages[position])
            await thread.delete_message(messages[position].id)
            return removed

        return await self._retrying(key, remove, None)

    async def delete_messages(self, key: str, status: MessageStatus | None = None) -> None:
        """Delete the key's messages with ``status``, or the whole thread if None.

        Raises:
            InvalidInputError: A bad key or status.
        """
        _check_key(key)
        chosen = _check_status(status, optional=True)
        if chosen is None:
            await _async_thread_io.delete_thread(self._store, key)
            return

        async def remove(thread: AsyncRoleThread) -> None:
            for message in await self._stored(thread, chosen):
                await thread.delete_message(message.id)

        await self._retrying(key, remove, None)

    async def _oldest_active(
        self, key: str, n: int, act: Callable[[AsyncRoleThread, RoleMessage], Awaitable[None]]
    ) -> list[ChatMessage]:
        """Apply ``act`` to the oldest ``n`` active messages, each a conditional write, so
        two callers never take the same message; return those messages."""
        done: list[ChatMessage] = []

        async def take(thread: AsyncRoleThread) -> list[ChatMessage]:
            active = await self._stored(thread, MessageStatus.ACTIVE)
            for message in active[: n - len(done)]:
                # Read before acting: a deleted message's GridFS images go with it.
                taken = await self._read(thread, message)
                await act(thread, message)
                done.append(taken)
            return done

        if n == 0:
            return []
        return await self._retrying(key, take, done)

    async def delete_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        """Delete the oldest ``n`` active messages of the key and return them.

        Raises:
            InvalidInputError: A bad key or count.
        """
        _check_key(key)
        count = _check_count("n", n)
        assert count is not None

        async def delete(thread: AsyncRoleThread, message: RoleMessage) -> None:
            await thread.delete_message(message.id)

        return await self._oldest_active(key, count, delete)

    async def archive_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        """Mark the oldest ``n`` active messages of the key archived and return them.

        Raises:
            InvalidInputError: A bad key or count.
        """
        _check_key(key)
        count = _check_count("n", n)
        assert count is not None

        async def archive(thread: AsyncRoleThread, message: RoleMessage) -> None:
            stored = dict((message.metadata or {})[MESSAGE_KEY])
            stored["status"] = MessageStatus.ARCHIVED.value
            await thread.update_message(message.id, metadata={MESSAGE_KEY: stored})

        return await self._oldest_active(key, count, archive)

    async def get_keys(self) -> list[str]:
        """Return the keys this store wrote that still have messages, oldest first."""
        threads = await AsyncRoleThread.find(
            metadata={THREAD_MARK: True}, last=0, store=self._store
        )
        return [thread.id for thread in threads if thread.message_count > 0]
