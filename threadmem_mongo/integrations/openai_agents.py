"""An OpenAI Agents SDK session stored as a threadmem thread.

```python
from agents import Agent, Runner
from threadmem_mongo.integrations.openai_agents import ThreadMemSession

session = ThreadMemSession("user-123")
result = await Runner.run(agent, "Hello", session=session)
```

``ThreadMemSession`` implements the ``agents.memory.Session`` protocol on the async API
(``threadmem_mongo.aio``). The session's items are the messages of the thread whose id
is ``session_id``, one message per item, in order; each message keeps the item as JSON
text under the metadata key ``"openai_agents"``, with images moved into the message's
images (so large ones go to GridFS). Needs the ``openai-agents`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from agents.memory import SessionSettings
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit

from threadmem_mongo import InputTypeError, InvalidInputError, RoleMessage
from threadmem_mongo.aio import AsyncThreadStore
from threadmem_mongo.integrations import _async_thread_io, _stored_items

if TYPE_CHECKING:
    from agents import TResponseInputItem

__all__ = ["METADATA_KEY", "ThreadMemSession"]

#: The message metadata key that holds the item's JSON.
METADATA_KEY = "openai_agents"

#: Thread metadata of threads this adapter creates, to find them with
#: ``RoleThread.find(metadata=THREAD_METADATA)``.
THREAD_METADATA = {"framework": "openai-agents"}

#: Roles an item posted some other way keeps when read as an Agents SDK message.
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


class ThreadMemSession:
    """An Agents SDK session whose items are the messages of one thread.

    The thread's id is ``session_id``; it is created, with ``owner_id``, by the first
    ``add_items``. Every method is one or a few atomic MongoDB operations on the async
    API, so sessions with the same ``session_id`` in several tasks or processes share
    one history: appends from all of them land, and two ``pop_item`` calls never return
    the same item.

    Args:
        session_id: The session's id, which is also the thread's id.
        store: The async store to use; the default of ``threadmem_mongo.aio`` if omitted.
        owner_id: The ``owner_id`` of the thread when this session creates it (an
            existing thread keeps its own).
        session_settings: Defaults for the session, as for the SDK's own sessions: a
            ``SessionSettings`` (or a dict of its fields); its ``limit`` applies when
            ``get_items`` is called without one.

    Raises:
        InputTypeError: ``session_id`` is not a string (the SDK's ``MongoDBSession``
            raises ``TypeError`` too), ``owner_id`` is not a string, ``store`` is not an
            ``AsyncThreadStore``, ``session_settings`` is of none of its types or a dict
            with an unknown field.
        InvalidInputError: ``session_id`` is empty, or a ``session_settings`` field has
            a bad value.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        store: AsyncThreadStore | None = None,
        owner_id: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        self.session_id = _stored_items.check_thread_id("session_id", session_id)
        if store is not None and not isinstance(store, AsyncThreadStore):
            raise InputTypeError(
                f"store must be a threadmem_mongo.aio.AsyncThreadStore, got {type(store).__name__}"
            )
        self._store = store
        self._owner_id = _stored_items.check_owner_id(owner_id)
        self.session_settings = _settings(session_settings)

    @property
    def store(self) -> AsyncThreadStore | None:
        """The store given to the constructor; None means the ``aio`` default store."""
        return self._store

    @property
    def owner_id(self) -> str | None:
        """The ``owner_id`` the thread gets when this session creates it."""
        return self._owner_id

    def __repr__(self) -> str:
        return f"ThreadMemSession(session_id={self.session_id!r}, owner_id={self._owner_id!r})"

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Return the session's items, oldest first.

        Args:
            limit: Only the last ``limit`` items; None uses ``session_settings.limit``,
                and if that is None too, every item is returned. 0 returns none; a
                negative number returns every item (as ``SQLiteSession`` does).

        Returns:
            The items as they were added (JSON round-tripped, as ``SQLiteSession``
                returns them); an empty list if the thread does not exist.

        Raises:
            InputTypeError: ``limit`` is not a whole number.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InputTypeError(f"limit must be a whole number or None, got {limit!r}")
        effective = resolve_session_limit(limit, self.session_settings)
        last = None if effective is None or effective < 0 else effective
        messages = await _async_thread_io.load_messages(self._store, self.session_id, last)
        return [_item_of(message) for message in messages]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order, one message each; creates the thread if needed.

        Every item is checked and converted before anything is written, so a bad item
        writes nothing. The items are then written in one update (one insert for a new
        session), conditional on the version just read, so they land whole and next to
        each other; a conflict with another writer re-reads and retries. A call that
        meets a conflict 10 times in a row appends its remaining items one at a time
        instead (appends need no version), so every call lands, but its items may then
        interleave with other calls' items.

        Args:
            items: The items to add, as the SDK produces them (dicts of JSON data).

        Raises:
            InputTypeError: ``items`` is not a list of dicts, or an item holds a value
                JSON has no form for.
            InvalidInputError: An item cannot be stored otherwise (it contains itself).
            ThreadTooLargeError: The thread would pass MongoDB's 16 MB document limit;
                nothing was written (unless the items were being appended one at a
                time: then those before the one that did not fit are stored).
        """
        if not isinstance(items, list):
            raise InputTypeError(f"items must be a list, got {type(items).__name__}")
        messages = [_message_of(item, index) for index, item in enumerate(items)]
        if not messages:
            return
        await _async_thread_io.append_messages(
            self._store, self.session_id, self._owner_id, dict(THREAD_METADATA), messages
        )

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the most recent item and return it.

        The removal is conditional on the thread's version, so concurrent pops each get
        a different item; a pop that lost a race reads the thread again.

        Returns:
            The most recent item, or None if the session has none.

        Raises:
            VersionConflictError: Other writers changed the thread before each of many
                attempts.
        """
        message = await _async_thread_io.pop_last(self._store, self.session_id)
        return None if message is None else _item_of(message)

    async def clear_session(self) -> None:
        """Delete the session's thread, its items and their GridFS images.

        Nothing happens if the thread does not exist; the next ``add_items`` creates it
        again.
        """
        await _async_thread_io.delete_thread(self._store, self.session_id)


def _settings(value: object) -> SessionSettings:
    if value is None:
        return SessionSettings()
    if isinstance(value, SessionSettings):
        return value
    if isinstance(value, dict):
        try:
            return coerce_session_settings(value)
        except TypeError as exc:  # an unknown field
            raise InputTypeError(f"invalid session_settings: {exc}") from exc
        except ValueError as exc:
            raise InvalidInputError(f"invalid session_settings: {exc}") from exc
    raise InputTypeError(
        f"session_settings must be a SessionSettings, a dict or None, got {type(value).__name__}"
    )


# -- items <-> messages ----------------------------------------------------------------------


def _message_of(item: object, index: int) -> RoleMessage:
    if not isinstance(item, Mapping):
        raise InputTypeError(f"items[{index}] must be a dict, got {type(item).__name__}")
    return _stored_items.encode_item(
        item,
        key=METADATA_KEY,
        role=_role_of(item),
        text=_text_of(item),
        slots=_stored_items.image_slots(item, _image_slots),
        what=f"items[{index}]",
    )


def _item_of(message: RoleMessage) -> TResponseInputItem:
    item = _stored_items.decode_item(message, METADATA_KEY)
    if item is None:
        item = _foreign_item(message)
    return cast("TResponseInputItem", item)


def _foreign_item(message: RoleMessage) -> dict[str, Any]:
    """Read a message posted without this adapter as an SDK input message."""
    role = message.role if message.role in _MESSAGE_ROLES else "user"
    if not message.images:
        return {"role": role, "content": message.text}
    parts: list[dict[str, Any]] = []
    if message.text:
        parts.append({"type": "input_text", "text": message.text})
    parts.extend(
        {"type": "input_image", "image_url": image, "detail": "auto"} for image in message.images
    )
    return {"role": role, "content": parts}


def _image_slots(node: Mapping[str, Any]) -> list[_stored_items.ImageSlot]:
    if node.get("type") == "input_image" and isinstance(node.get("image_url"), str):
        return [_stored_items.ImageSlot(("image_url",), "url")]
    return []


def _role_of(item: Mapping[str, Any]) -> str:
    role = item.get("role")
    if isinstance(role, str) and role.strip():
        return role
    kind = item.get("type")
    if isinstance(kind, str) and kind.endswith("_output"):
        return "tool"
    return "assistant"


def _text_of(item: Mapping[str, Any]) -> str:
    kind = item.get("type")
    if "role" in item:
        return _content_text(item.get("content"))
    if kind == "function_call":
        return f"{item.get('name')}({item.get('arguments', '')})"
    if isinstance(kind, str) and kind.endswith("_output"):
        return _content_text(item.get("output"))
    if kind == "reasoning":
        summary = item.get("summary")
        if isinstance(summary, list):
            return _content_text(summary)
    return f"[{kind}]" if isinstance(kind, str) else ""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else str(content)
    texts = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind == "input_file":
            texts.append(f"[file {part.get('filename') or part.get('file_id') or ''}]".strip())
        elif kind != "input_image" and isinstance(kind, str):
            texts.append(f"[{kind}]")
    return "\n".join(texts)
