"""Pydantic AI conversation store: ``ThreadMemConversationStore`` on the async API.

Each conversation is a thread whose id is its ``conversation_id``. Each
``ConversationEntry`` a save adds is one message of that thread, in order: its id is the
entry's id, its ``role`` and ``text`` are readable (``user``, ``assistant``, ``system``,
``tool``; the parts' text), its images are the images of the message's parts (so large
ones go to GridFS), and its metadata holds the entry under the key ``pydantic_ai``:

```text
{"parent_id": "<entry id or None>", "kind": "message", "text": "<JSON Pointer>",
 "message": "<ModelMessage as JSON>"}
```

When a string of the message is exactly its readable text (a one-part message), the
JSON keeps ``null`` there and ``text`` says where: the text is stored once.

The JSON keeps the message whole, with each inline image replaced by its position among
the message's images. The ``ConversationRecord`` lives in the thread's metadata, as JSON
under ``pydantic_ai_record``, with its revision, scope and whether it is live beside it;
its title and metadata change only through ``write_details`` (``update``).

Entries a fork shares stay in the thread of the conversation that saved them. A fork
registers with every thread its history reaches into (``pydantic_ai_users``); deleting
a conversation whose thread a live fork still uses removes only its record, and the
thread is deleted with the last fork that used it.

Requires the ``pydantic-ai`` extra: ``pip install "threadmem-mongo[pydantic-ai]"``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from pydantic_ai.conversation_store import (
    ConversationConflict,
    ConversationDetails,
    ConversationEntry,
    ConversationRecord,
    ConversationStore,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
)

from threadmem_mongo import (
    InputTypeError,
    InvalidInputError,
    RoleMessage,
    ThreadNotFoundError,
    V1RoleThread,
    VersionConflictError,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.integrations import _stored_items

__all__ = ["ENTRY_KEY", "ThreadMemConversationStore", "entry_to_message", "message_to_entry"]

#: The message metadata key holding the entry.
ENTRY_KEY = "pydantic_ai"
RECORD = "pydantic_ai_record"
REVISION = "pydantic_ai_revision"
SCOPE = "pydantic_ai_scope"
LIVE = "pydantic_ai_live"
#: Conversations (forks) whose history uses entries stored in this thread.
USERS = "pydantic_ai_users"
#: Threads, other than its own, holding entries this conversation's history uses.
USES = "pydantic_ai_uses"

#: How often a write re-reads the thread after a change that was not a save of the record.
ATTEMPTS = 100

#: How many conversations a store remembers what it last read of (see ``_Recent``).
RECENT_CONVERSATIONS = 64

_IMAGE_INDEX = "threadmem_image"
_PLACEHOLDER = "<image>"
_RECORDS: pydantic.TypeAdapter[ConversationRecord] = pydantic.TypeAdapter(ConversationRecord)


# -- entries as messages -----------------------------------------------------------------


def _move_images(node: Any, images: list[str]) -> None:
    """Move inline images out of the dumped message into ``images`` (in place)."""
    if isinstance(node, list):
        for item in node:
            _move_images(item, images)
        return
    if not isinstance(node, dict):
        return
    media_type = node.get("media_type")
    is_image = isinstance(media_type, str) and media_type.startswith("image/")
    if node.get("kind") == "binary" and is_image and isinstance(node.get("data"), str):
        raw = base64.urlsafe_b64decode(node["data"])
        node[_IMAGE_INDEX] = len(images)
        node["data"] = None
        images.append(f"data:{media_type};base64,{base64.b64encode(raw).decode('ascii')}")
        return
    if node.get("kind") == "image-url" and str(node.get("url", "")).lower().startswith(
        ("http://", "https://")
    ):
        # The JSON keeps the URL; the copy only makes the image visible to readers.
        images.append(node["url"])
        return
    for value in node.values():
        _move_images(value, images)


def _restore_images(node: Any, images: Sequence[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _restore_images(item, images)
    elif isinstance(node, dict):
        index = node.pop(_IMAGE_INDEX, None)
        if isinstance(index, int):
            node["data"] = images[index].partition(",")[2]
        for value in node.values():
            _restore_images(value, images)


def _part_text(part: Any) -> str:
    kind = getattr(part, "part_kind", "")
    if kind in ("system-prompt", "text", "thinking"):
        return str(part.content)
    if kind == "user-prompt":
        if isinstance(part.content, str):
            return str(part.content)
        return " ".join(item for item in part.content if isinstance(item, str))
    if kind == "tool-call":
        return f"{part.tool_name}({part.args_as_json_str()})"
    if kind == "tool-return":
        return f"{part.tool_name} -> {part.model_response_str()}"
    if kind == "retry-prompt":
        return str(part.model_response())
    return ""


def _role_of(message: ModelMessage) -> str:
    if isinstance(message, ModelResponse):
        return "assistant"
    kinds = {getattr(part, "part_kind", "") for part in message.parts}
    if "user-prompt" in kinds:
        return "user"
    if kinds and kinds <= {"system-prompt"}:
        return "system"
    if kinds & {"tool-return", "retry-prompt"}:
        return "tool"
    return "user"


def entry_to_message(entry: ConversationEntry) -> RoleMessage:
    """Return the stored form of ``entry``: readable role and text, images, the JSON.

    Args:
        entry: The entry.

    Returns:
        A new ``RoleMessage`` whose id is the entry's id.
    """
    data = ModelMessagesTypeAdapter.dump_python([entry.message], mode="json")[0]
    images: list[str] = []
    _move_images(data, images)
    text = "\n".join(filter(None, (_part_text(part) for part in entry.message.parts)))
    if images:
        # The readable text is derived: keep it from being read as image placeholders.
        text = text.replace(_PLACEHOLDER, "<image >")
    elif not text:
        text = f"[{entry.message.kind}]"
    stored: dict[str, Any] = {"parent_id": entry.parent_id, "kind": entry.kind}
    # The text is stored once: as the message's text, which fills this place again.
    pointer = _stored_items.take_text(data, text)
    if pointer is not None:
        stored["text"] = pointer
    stored["message"] = json.dumps(data, separators=(",", ":"))
    return RoleMessage(
        id=entry.id,
        role=_role_of(entry.message),
        text=text,
        images=images,
        metadata={ENTRY_KEY: stored},
    )


def message_to_entry(message: RoleMessage) -> ConversationEntry:
    """Return the entry a stored message holds (its images resolved first).

    Args:
        message: A message written by ``entry_to_message``.

    Returns:
        The entry.

    Raises:
        KeyError: The message holds no entry (it was posted by other means).
    """
    stored = (message.metadata or {}).get(ENTRY_KEY)
    if not isinstance(stored, dict) or "message" not in stored:
        raise KeyError(message.id)
    data = json.loads(stored["message"])
    if stored.get("text"):
        _stored_items.put_text(data, stored["text"], message.text)
    _restore_images(data, message.images)
    return ConversationEntry(
        id=message.id,
        parent_id=stored.get("parent_id"),
        message=ModelMessagesTypeAdapter.validate_python([data])[0],
        kind=stored.get("kind", "message"),
    )


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a non-empty string, got {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{name} must be a non-empty string, got ''")
    return value


#: The record fields ``write_details`` changes (``update``'s title and metadata).
_DETAILS = ("title", "metadata")


def _checked_details(name: str, details: object) -> dict[str, Any]:
    """``details`` (a title and or metadata) checked to be storable as the record's JSON.

    Raises:
        NotImplementedError: A key other than ``title`` and ``metadata``, which the
            base class asks a backend to raise for a field it does not store.
        InputTypeError: Not a dict, a title that is not a string, or metadata that is
            not a dict.
        InvalidInputError: Metadata that is not JSON data (strings, numbers, booleans,
            None, lists and dicts with string keys), which would not read back equal.
    """
    if not isinstance(details, Mapping):
        raise InputTypeError(f"{name} must be a dict, got {type(details).__name__}")
    unknown = [key for key in details if key not in _DETAILS]
    if unknown:
        raise NotImplementedError(
            f"ThreadMemConversationStore stores only the title and metadata, not {unknown!r}"
        )
    title = details.get("title")
    if title is not None and not isinstance(title, str):
        raise InputTypeError(f"{name} title must be a string or None, got {title!r}")
    metadata = details.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InputTypeError(
                f"{name} metadata must be a dict or None, got {type(metadata).__name__}"
            )
        try:
            same = json.loads(json.dumps(metadata, allow_nan=False)) == metadata
        except (TypeError, ValueError):
            same = False
        if not same:
            raise InvalidInputError(
                f"{name} metadata must be JSON data (strings, numbers, booleans, None, "
                "lists and dicts with string keys), to read back equal"
            )
    return dict(details)


def _checked_entries(entries: object) -> list[ConversationEntry]:
    if isinstance(entries, (str, bytes)):
        raise InputTypeError("new_entries must be ConversationEntry objects, got a string")
    try:
        listed: list[object] = list(entries)  # type: ignore[call-overload]
    except TypeError:
        raise InputTypeError(
            f"new_entries must be ConversationEntry objects, got {type(entries).__name__}"
        ) from None
    checked = [entry for entry in listed if isinstance(entry, ConversationEntry)]
    if len(checked) != len(listed):
        raise InputTypeError("new_entries must be ConversationEntry objects")
    return checked


def _check_limit(limit: object) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise InputTypeError(f"limit must be None or a whole number >= 0, got {limit!r}")
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit must be None or a whole number >= 0, got {limit!r}")
    return limit


class _Recent:
    """What a store last read of its most recent conversations, to save a round trip.

    ``save()`` reads the record and then writes it: the write reuses the thread object
    the read left here (taken, so no two writes share it), and its update is conditional
    on that object's version, so a stale one only costs the re-read it saved. ``load()``
    reads the record and then the history up to its head: the head's thread is known
    from the record, so the newest messages are read from it in one command instead of
    searching every thread for the head. Only hints: a wrong one falls back to the
    reads without them.
    """

    def __init__(self, size: int = RECENT_CONVERSATIONS) -> None:
        self._size = size
        self._threads: OrderedDict[str, AsyncRoleThread] = OrderedDict()
        self._holders: OrderedDict[str, str] = OrderedDict()

    def _bounded(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._size:
            table.popitem(last=False)

    def keep(self, thread: AsyncRoleThread, head_id: str | None) -> None:
        self._bounded(self._threads, thread.id, thread)
        if head_id is not None:
            self._bounded(self._holders, head_id, thread.id)

    def take_thread(self, conversation_id: str) -> AsyncRoleThread | None:
        return self._threads.pop(conversation_id, None)

    def holder_of(self, entry_id: str | None) -> str | None:
        return None if entry_id is None else self._holders.get(entry_id)


class ThreadMemConversationStore(ConversationStore):
    """A Pydantic AI ``ConversationStore`` keeping each conversation in one thread.

    ```python
    conversation = await store.load(conversation_id) or Conversation(
        conversation_id=conversation_id
    )
    result = await agent.run(prompt, conversation=conversation)
    await store.save(result)
    ```

    Every method runs on the async API (``AsyncMongoClient``). A record's revision maps
    onto the thread's version: a write lands only if the thread still holds the revision
    it expects, checked by a version-conditional update that stores the new entries and
    the record together, so of two writers expecting the same revision one wins and
    the other gets ``ConversationConflict`` having written nothing.

    Args:
        store: The async store to use; the configured default
            (``threadmem_mongo.aio.configure``) if omitted.

    An argument of the wrong type raises ``threadmem_mongo.InputTypeError``, both an
    ``InvalidInputError`` and the ``TypeError`` that ``InMemoryConversationStore``
    raises where it raises one (a ``limit`` that is not a number, ``new_entries`` that
    is not iterable); a bad value of the right type raises ``InvalidInputError``.

    Raises:
        InputTypeError: ``store`` is not an ``AsyncThreadStore``.
    """

    def __init__(self, *, store: AsyncThreadStore | None = None) -> None:
        if store is not None and not isinstance(store, AsyncThreadStore):
            raise InputTypeError(f"store must be an AsyncThreadStore, got {type(store).__name__}")
        self._store = store
        self._recent = _Recent()

    # -- thread access -------------------------------------------------------------------

    async def _thread(self, thread_id: str, last: int | None = 0) -> AsyncRoleThread | None:
        try:
            return await AsyncRoleThread.get(thread_id, last=last, store=self._store)
        except ThreadNotFoundError:
            return None

    @staticmethod
    def _live(thread: AsyncRoleThread | None) -> dict[str, Any] | None:
        """The thread's metadata if it holds a live record, else None."""
        metadata = (thread.metadata if thread is not None else None) or {}
        return metadata if metadata.get(LIVE) else None

    async def _find_entry(self, entry_id: str) -> RoleMessage | None:
        found = await AsyncRoleThread.find_messages(id=entry_id, store=self._store)
        return found[0] if found else None

    # -- ConversationStore primitives ----------------------------------------------------

    async def read_record(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation's record, or None if the store has none.

        Raises:
            InvalidInputError: ``conversation_id`` is not a non-empty string (an
                ``InputTypeError`` if it is not a string).
        """
        _check_id("conversation_id", conversation_id)
        thread = await self._thread(conversation_id)
        live = self._live(thread)
        if thread is None or live is None:
            return None
        record = _RECORDS.validate_json(live[RECORD])
        self._recent.keep(thread, record.head_id)
        return record

    async def read_records(
        self, *, scope: str | None = None, limit: int | None = None
    ) -> Sequence[ConversationRecord]:
        """The live records (of ``scope``, if given), newest ``updated_at`` first.

        Raises:
            InputTypeError: ``scope`` is not a string, or ``limit`` not a whole number.
            InvalidInputError: ``limit`` is negative.
        """
        if scope is not None and not isinstance(scope, str):
            raise InputTypeError(f"scope must be a string or None, got {scope!r}")
        count = _check_limit(limit)
        wanted: dict[str, Any] = {LIVE: True}
        if scope is not None:
            wanted[SCOPE] = scope
        threads = await AsyncRoleThread.find(metadata=wanted, last=0, store=self._store)
        records = [_RECORDS.validate_json((t.metadata or {})[RECORD]) for t in threads]
        records.sort(key=lambda record: record.updated_at, reverse=True)
        return records if count is None else records[:count]

    async def read_entry(self, entry_id: str) -> ConversationEntry:
        """The entry with this id.

        Raises:
            KeyError: No such entry.
            InvalidInputError: ``entry_id`` is not a non-empty string (an
                ``InputTypeError`` if it is not a string).
        """
        _check_id("entry_id", entry_id)
        found = await self._find_entry(entry_id)
        if found is None:
            raise KeyError(entry_id)
        return message_to_entry(found)

    async def read_history(
        self, head_id: str | None, *, limit: int | None = None
    ) -> list[ConversationEntry]:
        """The entries up to ``head_id``, oldest first (only the last ``limit``).

        Reads each thread the history passes through once, instead of one read per entry.

        Raises:
            KeyError: An entry of the history is missing.
            InputTypeError: ``limit`` is not a whole number.
            InvalidInputError: ``limit`` is negative.
        """
        count = _check_limit(limit)
        # Each message with the store to read its GridFS images from (None: read already).
        loaded: dict[str, tuple[RoleMessage, AsyncThreadStore | None]] = {}
        head_thread = self._recent.holder_of(head_id)
        if head_thread is not None:
            # The newest messages of the thread the record said holds the head: with
            # a linear history, the whole window in one read.
            window = await self._thread(head_thread, last=count)
            if window is not None:
                raw = await window.messages(resolve_images=False)
                loaded.update((m.id, (m, window.store)) for m in raw)
        entries: list[ConversationEntry] = []
        entry_id = head_id
        while entry_id is not None and (count is None or len(entries) < count):
            if entry_id not in loaded:
                found = await self._find_entry(entry_id)
                if found is None or found.thread_id is None:
                    raise KeyError(entry_id)
                thread = await self._thread(found.thread_id, last=None)
                if thread is not None:
                    raw = await thread.messages(resolve_images=False)
                    loaded.update((m.id, (m, thread.store)) for m in raw)
                loaded.setdefault(entry_id, (found, None))
            message, holder = loaded[entry_id]
            if holder is not None:
                images = await holder.resolve_images(message.images)
                message = message.model_copy(update={"images": images})
            entry = message_to_entry(message)
            entries.append(entry)
            entry_id = entry.parent_id
        entries.reverse()
        return entries

    async def write_record(
        self,
        record: ConversationRecord,
        *,
        new_entries: Sequence[ConversationEntry] = (),
        expected_revision: str | None,
    ) -> None:
        """Store ``record`` and ``new_entries`` in one update, if the revision matches.

        A stored record's ``title`` and ``metadata`` are kept: they change only
        through ``write_details`` (``update``).

        Raises:
            ConversationConflict: The stored revision is not ``expected_revision`` (a
                record exists when it is None), or ``record.head_id`` names an entry the
                store does not have. Nothing was written.
            InvalidInputError: An argument of the wrong type (an ``InputTypeError``),
                or the record's metadata is not JSON data; nothing was written.
        """
        if not isinstance(record, ConversationRecord):
            raise InputTypeError(f"record must be a ConversationRecord, got {record!r}")
        conversation_id = _check_id("record.conversation_id", record.conversation_id)
        if expected_revision is not None and not isinstance(expected_revision, str):
            raise InputTypeError("expected_revision must be a string or None")
        entries = _checked_entries(new_entries)
        if record.updated_at.tzinfo is None:
            raise InvalidInputError("record.updated_at must be timezone-aware")
        _checked_details("record", {"title": record.title, "metadata": record.metadata})
        messages = [entry_to_message(entry) for entry in entries]
        new_ids = {entry.id for entry in entries}
        recalled = self._recent.take_thread(conversation_id)
        for _ in range(ATTEMPTS):
            thread, recalled = recalled, None
            live = self._live(thread)
            if thread is None or (live[REVISION] if live else None) != expected_revision:
                # Nothing recalled, or not the revision expected: read what is stored.
                thread = await self._thread(conversation_id)
                live = self._live(thread)
            if (live[REVISION] if live else None) != expected_revision:
                raise ConversationConflict(conversation_id)
            stored = _RECORDS.validate_json(live[RECORD]) if live else None
            # The title and metadata are update()'s: a save that read the record before
            # an update keeps what the update wrote.
            kept = (
                record
                if stored is None
                else dataclasses.replace(record, title=stored.title, metadata=stored.metadata)
            )
            fields = {
                RECORD: _RECORDS.dump_json(kept).decode(),
                REVISION: record.revision,
                SCOPE: record.scope,
                LIVE: True,
            }
            head = record.head_id
            stored_head = stored.head_id if stored else None
            holder: str | None = conversation_id
            if head is not None and head not in new_ids and head != stored_head:
                found = await self._find_entry(head)
                if found is None:
                    raise ConversationConflict(conversation_id)
                holder = found.thread_id
            metadata = {**((thread.metadata if thread else None) or {}), **fields}
            registered: list[str] = []
            if (
                live is None
                and head is not None
                and holder is not None
                and holder != conversation_id
            ):
                registered = await self._register(conversation_id, holder)
                # Registered, the holder can no longer be deleted under the fork; check
                # that it was not deleted (and recreated) before.
                if await self._find_entry(head) is None:
                    await self._unregister(conversation_id, registered)
                    raise ConversationConflict(conversation_id)
                metadata[USES] = list(dict.fromkeys([*(metadata.get(USES) or []), *registered]))
            try:
                if thread is None:
                    await self._create(conversation_id, messages, metadata)
                elif messages:
                    await thread.extend(messages, metadata=metadata)
                else:
                    thread.metadata = metadata
                    await thread.save()
                return
            except (VersionConflictError, ThreadNotFoundError, _CreatedMeanwhileError):
                # Changed since read: a save of the record shows as a new revision next
                # time round; anything else (a fork registering) is retried.
                await self._unregister(conversation_id, registered)
                continue
        raise ConversationConflict(conversation_id)

    async def _create(
        self, conversation_id: str, messages: list[RoleMessage], metadata: dict[str, Any]
    ) -> None:
        now = time.time()
        schema = V1RoleThread(
            id=conversation_id,
            public=False,
            metadata=metadata,
            messages=[m.to_v1() for m in messages],
            created=now,
            updated=now,
        )
        try:
            await AsyncRoleThread.from_v1(schema, store=self._store)
        except InvalidInputError as exc:
            if await self._thread(conversation_id) is None:
                raise
            raise _CreatedMeanwhileError from exc

    async def _register(self, user: str, holder: str) -> list[str]:
        """Record ``user`` as a user of ``holder``'s thread and of every thread that one
        uses; return those thread ids. A thread deleted meanwhile is a conflict."""
        first = await self._thread(holder)
        if first is None:
            raise ConversationConflict(user)
        chain = [holder, *((first.metadata or {}).get(USES) or [])]
        done: list[str] = []
        for thread_id in dict.fromkeys(chain):
            if thread_id == user:
                continue
            if not await self._change_users(thread_id, add=user):
                await self._unregister(user, done)
                raise ConversationConflict(user)
            done.append(thread_id)
        return done

    async def _unregister(self, user: str, holders: Sequence[str]) -> None:
        """Remove ``user`` from the users of ``holders``; delete each left unused."""
        for holder in holders:
            await self._change_users(holder, remove=user)

    async def _change_users(
        self, thread_id: str, *, add: str | None = None, remove: str | None = None
    ) -> bool:
        """Add or remove a user of a thread (a conditional write, retried); delete the
        thread once it has neither a live record nor users. False if it is gone."""
        for _ in range(ATTEMPTS):
            thread = await self._thread(thread_id)
            if thread is None:
                return False
            metadata = dict(thread.metadata or {})
            users = [u for u in metadata.get(USERS) or [] if u not in (add, remove)]
            if add is not None:
                users.append(add)
            if not users and not metadata.get(LIVE):
                if await thread.store.delete(thread_id, version=thread.version):
                    await self._unregister(thread_id, metadata.get(USES) or [])
                    return add is None
                continue
            metadata[USERS] = users
            thread.metadata = metadata
            try:
                await thread.save()
                return True
            except (VersionConflictError, ThreadNotFoundError):
                continue
        raise ConversationConflict(thread_id)

    async def write_details(
        self,
        conversation_id: str,
        details: ConversationDetails,
        *,
        expected_revision: str,
        expected: ConversationDetails | None = None,
    ) -> ConversationRecord:
        """Replace the record's ``title`` or ``metadata`` (or both), for ``update``.

        The record keeps its revision and ``updated_at``. Only the keys in ``details``
        change, in one update conditional on the thread's version, made only while the
        stored record has ``expected_revision`` and the values in ``expected``.

        Args:
            conversation_id: The conversation.
            details: The new ``title`` and or ``metadata`` (None clears one).
            expected_revision: The revision the stored record must have.
            expected: Values (``title``, ``metadata``) the stored record must have.

        Returns:
            The record as stored after the write.

        Raises:
            ConversationConflict: No record with ``expected_revision`` and the
                ``expected`` values is stored. Nothing was written.
            NotImplementedError: A key other than ``title`` and ``metadata``.
            InvalidInputError: An argument of the wrong type (an ``InputTypeError``),
                or metadata that is not JSON data; nothing was written.
        """
        _check_id("conversation_id", conversation_id)
        if not isinstance(expected_revision, str):
            raise InputTypeError(
                f"expected_revision must be a string, got {type(expected_revision).__name__}"
            )
        changes = _checked_details("details", details)
        wanted = _checked_details("expected", {} if expected is None else expected)
        for _ in range(ATTEMPTS):
            thread = await self._thread(conversation_id)
            live = self._live(thread)
            if thread is None or live is None or live[REVISION] != expected_revision:
                raise ConversationConflict(conversation_id)
            record = _RECORDS.validate_json(live[RECORD])
            if any(getattr(record, key) != value for key, value in wanted.items()):
                raise ConversationConflict(conversation_id)
            text = _RECORDS.dump_json(dataclasses.replace(record, **changes)).decode()
            thread.metadata = {**live, RECORD: text}
            try:
                await thread.save()
            except (VersionConflictError, ThreadNotFoundError):
                # Changed since read: a save or delete shows on the next read; a fork
                # registering with the thread is retried.
                continue
            return _RECORDS.validate_json(text)
        raise ConversationConflict(conversation_id)

    async def delete_record(self, conversation_id: str, *, expected_revision: str) -> None:
        """Delete the conversation's record, and its thread unless a fork uses it.

        A thread whose entries a live fork's history uses is kept, with no record, so
        the fork keeps loading; it is deleted with the last fork that uses it. Entries
        of a kept thread are kept whole, also those no remaining history reaches.

        Raises:
            ConversationConflict: No record with ``expected_revision`` is stored.
            InputTypeError: An argument of the wrong type.
        """
        _check_id("conversation_id", conversation_id)
        if not isinstance(expected_revision, str):
            raise InputTypeError("expected_revision must be a string")
        recalled = self._recent.take_thread(conversation_id)
        for _ in range(ATTEMPTS):
            thread, recalled = recalled, None
            live = self._live(thread)
            if thread is None or live is None or live[REVISION] != expected_revision:
                # Nothing recalled, or not the revision expected: read what is stored.
                thread = await self._thread(conversation_id)
                live = self._live(thread)
            if thread is None or live is None or live[REVISION] != expected_revision:
                raise ConversationConflict(conversation_id)
            uses = list(live.get(USES) or [])
            if live.get(USERS):
                thread.metadata = {
                    **live,
                    RECORD: None,
                    REVISION: None,
                    SCOPE: None,
                    LIVE: False,
                }
                try:
                    await thread.save()
                except (VersionConflictError, ThreadNotFoundError):
                    continue
                return
            if await thread.store.delete(conversation_id, version=thread.version):
                await self._unregister(conversation_id, uses)
                return
        raise ConversationConflict(conversation_id)


class _CreatedMeanwhileError(Exception):
    """A thread with the id was created by another writer in between."""
