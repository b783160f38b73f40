"""A LangChain chat message history stored as a threadmem thread.

```python
from threadmem_mongo.integrations.langchain import ThreadMemChatMessageHistory

history = ThreadMemChatMessageHistory("user-123")
history.add_messages([HumanMessage("Hi"), AIMessage("Hello!")])
await history.aadd_messages([HumanMessage("And async?")])
```

``ThreadMemChatMessageHistory`` is a ``langchain_core.chat_history.BaseChatMessageHistory``:
``messages``, ``add_messages`` and ``clear`` run on the sync API, and ``aget_messages``,
``aadd_messages`` and ``aclear`` on the async API (``threadmem_mongo.aio``), natively.
The history is the thread whose id is ``session_id``, one message per LangChain message,
in order; each keeps the message as JSON text (``message_to_dict``'s form, fields at
their defaults left out, the text stored once as the message's text) under the
metadata key ``"langchain"``, with images moved into the message's images (so large
ones go to GridFS). Needs the ``langchain`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    message_to_dict,
    messages_from_dict,
)

from threadmem_mongo import (
    ConfigurationError,
    InputTypeError,
    InvalidInputError,
    RoleMessage,
    ThreadStore,
)
from threadmem_mongo.aio import AsyncThreadStore
from threadmem_mongo.integrations import _async_thread_io, _stored_items, _thread_io
from threadmem_mongo.integrations._stored_items import ImageSlot

__all__ = ["METADATA_KEY", "THREAD_METADATA", "ThreadMemChatMessageHistory"]

#: The message metadata key that holds the LangChain message's JSON.
METADATA_KEY = "langchain"

#: Thread metadata of threads this adapter creates, to find them with
#: ``RoleThread.find(metadata=THREAD_METADATA)``.
THREAD_METADATA = {"framework": "langchain"}

#: The role each message type is stored under; a ``ChatMessage`` keeps its own role.
_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "function",
    "remove": "remove",
    "HumanMessageChunk": "user",
    "AIMessageChunk": "assistant",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
    "FunctionMessageChunk": "function",
}
_CHAT_TYPES = frozenset({"chat", "ChatMessageChunk"})


class ThreadMemChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history whose messages are the messages of one thread.

    The thread's id is ``session_id``; it is created, with ``owner_id``, by the first
    ``add_messages``. Every call is one or a few atomic MongoDB operations, so
    histories with the same ``session_id`` in several threads, tasks or processes share
    one conversation and concurrent appends all land.

    The sync methods need a sync store and the async methods an async one. By default
    both are the library's configured defaults (``threadmem_mongo.configure()`` and
    ``threadmem_mongo.aio.configure()``, which fall back to the same
    ``THREADMEM_MONGODB_URI`` / embedded store). To choose them:

    - ``store=ThreadStore(...)``: the sync methods use it; pass ``async_store=`` too to
      use the async methods.
    - ``store=AsyncThreadStore(...)`` (or ``async_store=`` alone): the async methods use
      it; the sync methods then raise ``ConfigurationError``.
    - ``store=ThreadStore(...), async_store=AsyncThreadStore(...)``: both, which
      should be on the same collection.

    A store that was not chosen is never replaced by a default, so an explicit store
    cannot silently be paired with a different database.

    Args:
        session_id: The history's id, which is also the thread's id.
        store: A ``ThreadStore`` for the sync methods, or an ``AsyncThreadStore`` for the
            async ones.
        async_store: An ``AsyncThreadStore`` for the async methods.
        owner_id: The ``owner_id`` of the thread when this history creates it (an
            existing thread keeps its own).
        history_size: Read only the newest this many messages (``messages`` and
            ``aget_messages``), in one command whatever the history's length; None (the
            default) reads them all. Appends and ``clear`` are unaffected.

    Raises:
        InputTypeError: ``session_id`` or ``owner_id`` is not a string, a store is of
            the wrong type, or ``history_size`` is not a whole number or None.
        InvalidInputError: ``session_id`` is empty, two async stores are given, or
            ``history_size`` is negative.
    """

    def __init__(
        self,
        session_id: str,
        *,
        store: ThreadStore | AsyncThreadStore | None = None,
        async_store: AsyncThreadStore | None = None,
        owner_id: str | None = None,
        history_size: int | None = None,
    ) -> None:
        super().__init__()
        if history_size is not None:
            if isinstance(history_size, bool) or not isinstance(history_size, int):
                raise InputTypeError(
                    f"history_size must be a whole number or None, got {history_size!r}"
                )
            if history_size < 0:
                raise InvalidInputError(f"history_size must not be negative, got {history_size}")
        self.history_size = history_size
        self.session_id = _stored_items.check_thread_id("session_id", session_id)
        self.owner_id = _stored_items.check_owner_id(owner_id)
        if store is not None and not isinstance(store, (ThreadStore, AsyncThreadStore)):
            raise InputTypeError(
                f"store must be a ThreadStore or an AsyncThreadStore, got {type(store).__name__}"
            )
        if async_store is not None and not isinstance(async_store, AsyncThreadStore):
            raise InputTypeError(
                f"async_store must be an AsyncThreadStore, got {type(async_store).__name__}"
            )
        if isinstance(store, AsyncThreadStore) and async_store is not None:
            raise InvalidInputError("pass the AsyncThreadStore as store= or async_store=, not both")
        if isinstance(store, AsyncThreadStore):
            store, async_store = None, store
        self._chosen = store is not None or async_store is not None
        self._store = store
        self._async_store = async_store

    def __repr__(self) -> str:
        return (
            f"ThreadMemChatMessageHistory(session_id={self.session_id!r}, "
            f"owner_id={self.owner_id!r})"
        )

    def _sync_store(self) -> ThreadStore | None:
        if self._chosen and self._store is None:
            raise ConfigurationError(
                "this history was given only an async store; use the async methods "
                "(aget_messages, aadd_messages, aclear) or pass store=ThreadStore(...) too"
            )
        return self._store

    def _async_store_or_default(self) -> AsyncThreadStore | None:
        if self._chosen and self._async_store is None:
            raise ConfigurationError(
                "this history was given only a sync store; use messages, add_messages and "
                "clear, or pass async_store=AsyncThreadStore(...) too"
            )
        return self._async_store

    # -- sync API ------------------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The history's messages, oldest first (read from the store on each access);
        the newest ``history_size`` if that is set.

        Raises:
            ConfigurationError: Only an async store was given.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        stored = _thread_io.load_messages(self._sync_store(), self.session_id, self.history_size)
        return [_langchain_message(message) for message in stored]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` in order, one stored message each; creates the thread.

        Every message is checked and converted before anything is written, so a bad one
        writes nothing. The messages are then written in one update (one insert for a
        new history), conditional on the version just read, so they land whole and next
        to each other; a conflict with another writer re-reads and retries, and after
        10 conflicts in a row the remaining messages are appended one at a time (appends
        need no version), so every call lands.

        Args:
            messages: The LangChain messages to add.

        Raises:
            InputTypeError: ``messages`` is not a sequence of ``BaseMessage`` (LangChain's
                ``InMemoryChatMessageHistory`` raises ``TypeError`` for one that is not
                iterable), or one holds a value JSON has no form for.
            InvalidInputError: A message cannot be stored otherwise (a type that
                ``messages_from_dict`` cannot read back, or a value that contains
                itself).
            ConfigurationError: Only an async store was given.
            ThreadTooLargeError: The thread would pass MongoDB's 16 MB document limit;
                nothing was written (unless the messages were being appended one at a
                time: then those before the one that did not fit are stored).
        """
        store = self._sync_store()
        converted = _stored_messages(messages)
        if converted:
            _thread_io.append_messages(
                store, self.session_id, self.owner_id, dict(THREAD_METADATA), converted
            )

    def clear(self) -> None:
        """Delete the history's thread, its messages and their GridFS images.

        Nothing happens if the thread does not exist.

        Raises:
            ConfigurationError: Only an async store was given.
        """
        _thread_io.delete_thread(self._sync_store(), self.session_id)

    # -- async API -----------------------------------------------------------------------

    async def aget_messages(self) -> list[BaseMessage]:
        """Return the history's messages, oldest first, through the async API; the
        newest ``history_size`` if that is set.

        Returns:
            The messages.

        Raises:
            ConfigurationError: Only a sync store was given.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        store = self._async_store_or_default()
        stored = await _async_thread_io.load_messages(store, self.session_id, self.history_size)
        return [_langchain_message(message) for message in stored]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` in order through the async API; see ``add_messages``.

        Args:
            messages: The LangChain messages to add.

        Raises:
            InputTypeError: As for ``add_messages``.
            InvalidInputError: As for ``add_messages``.
            ConfigurationError: Only a sync store was given.
            ThreadTooLargeError: The thread would pass MongoDB's 16 MB document limit.
        """
        store = self._async_store_or_default()
        converted = _stored_messages(messages)
        if converted:
            await _async_thread_io.append_messages(
                store, self.session_id, self.owner_id, dict(THREAD_METADATA), converted
            )

    async def aclear(self) -> None:
        """Delete the history's thread through the async API; see ``clear``.

        Raises:
            ConfigurationError: Only a sync store was given.
        """
        await _async_thread_io.delete_thread(self._async_store_or_default(), self.session_id)


# -- messages <-> stored messages ------------------------------------------------------------


def _stored_messages(messages: object) -> list[RoleMessage]:
    if isinstance(messages, (str, bytes, Mapping, BaseMessage)) or not isinstance(
        messages, Sequence
    ):
        raise InputTypeError(
            f"messages must be a sequence of LangChain messages, got {type(messages).__name__}"
        )
    return [_stored_message(message, index) for index, message in enumerate(messages)]


def _stored_message(message: object, index: int) -> RoleMessage:
    if not isinstance(message, BaseMessage):
        raise InputTypeError(
            f"messages[{index}] must be a LangChain BaseMessage, got {type(message).__name__}"
        )
    item = message_to_dict(message)
    # Fields at their defaults are left out: messages_from_dict puts them back, and
    # each costs every stored message its bytes.
    item["data"] = message.model_dump(exclude_defaults=True)
    kind = item["type"]
    if kind in _CHAT_TYPES:
        own = getattr(message, "role", None)
        # A blank role cannot name a stored message; the item keeps it as it is.
        role = own if isinstance(own, str) and own.strip() else "chat"
    elif kind in _ROLES:
        role = _ROLES[kind]
    else:
        raise InvalidInputError(
            f"messages[{index}] is of type {kind!r}, which messages_from_dict cannot read back"
        )
    what = f"messages[{index}]"
    # Round-trip through JSON now, so what is stored is what later reads give back.
    item = json.loads(_stored_items.to_json(item, what))
    return _stored_items.encode_item(
        item,
        key=METADATA_KEY,
        role=role,
        text=_text_of(message),
        slots=_stored_items.image_slots(item, _image_slots),
        what=what,
    )


def _text_of(message: BaseMessage) -> str:
    text = str(message.text)
    if isinstance(message, AIMessage) and message.tool_calls:
        calls = [
            f"{call['name']}({json.dumps(call['args'], ensure_ascii=False, default=str)})"
            for call in message.tool_calls
        ]
        text = "\n".join([text, *calls]) if text else "\n".join(calls)
    return text


def _langchain_message(message: RoleMessage) -> BaseMessage:
    item = _stored_items.decode_item(message, METADATA_KEY)
    if isinstance(item, dict):
        try:
            return messages_from_dict([item])[0]
        except (ValueError, KeyError, TypeError):
            pass  # not a stored LangChain message: read it as a plain one
    return _foreign_message(message)


def _foreign_message(message: RoleMessage) -> BaseMessage:
    """Read a message posted without this adapter as a LangChain message."""
    content: str | list[str | dict[str, Any]] = message.text
    if message.images:
        blocks: list[str | dict[str, Any]] = []
        if message.text:
            blocks.append({"type": "text", "text": message.text})
        blocks.extend({"type": "image_url", "image_url": {"url": url}} for url in message.images)
        content = blocks
    if message.role == "user":
        return HumanMessage(content=content)
    if message.role == "assistant":
        return AIMessage(content=content)
    if message.role == "system":
        return SystemMessage(content=content)
    return ChatMessage(role=message.role, content=content)


def _image_slots(node: Mapping[str, Any]) -> list[ImageSlot]:
    """The images of one content block, in the shapes LangChain and providers use."""
    kind = node.get("type")
    if kind == "image_url":
        value = node.get("image_url")
        if isinstance(value, str):
            return [ImageSlot(("image_url",), "url")]
        if isinstance(value, Mapping) and isinstance(value.get("url"), str):
            return [ImageSlot(("image_url", "url"), "url")]
    elif kind == "input_image" and isinstance(node.get("image_url"), str):
        return [ImageSlot(("image_url",), "url")]
    elif kind == "image":
        mime = node.get("mime_type")
        source = node.get("source")
        if isinstance(node.get("url"), str):
            return [ImageSlot(("url",), "url")]
        if isinstance(node.get("base64"), str) and isinstance(mime, str):
            return [ImageSlot(("base64",), "base64", mime)]
        if node.get("source_type") == "base64" and isinstance(node.get("data"), str):
            if isinstance(mime, str):
                return [ImageSlot(("data",), "base64", mime)]
        elif isinstance(source, Mapping):
            media = source.get("media_type")
            if source.get("type") == "base64" and isinstance(source.get("data"), str):
                if isinstance(media, str):
                    return [ImageSlot(("source", "data"), "base64", media)]
            elif source.get("type") == "url" and isinstance(source.get("url"), str):
                return [ImageSlot(("source", "url"), "url")]
    return []
