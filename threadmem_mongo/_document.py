"""Where a thread becomes a MongoDB document, and a document becomes a thread. Pure.

One document per thread, in collection ``threads``:

```text
{
  "_id": "0b6f6c1e-...",              # the thread id (uuid4 string)
  "owner_id": "random123",
  "public": true,
  "name": "My thread",
  "metadata": {"purpose": "demo"},
  "roles": [                           # the role list; names are data, never field paths
    {"name": "assistant", "user_id": "bot-1", "user_name": "Bot", "icon": "...",
     "description": null}
  ],
  "messages": [                        # embedded, in posting order
    {"id": "5d0c...", "role": "user", "text": "Hey there!",
     "created": 1712140700.12, "metadata": null}    # images, private: only when set
  ],
  "message_count": 1,                  # all messages, also when a page is loaded
  "size_bytes": 412,                   # estimated BSON size, kept by every update
  "version": 1,                        # +1 with every change that lands
  "created": 1712140700.11,
  "updated": 1712140700.12,
  "expires_at": null,                  # a date: the TTL index deletes the thread then
  "ttl": null                          # seconds touch() extends the expiry by
}
```

Messages do not store ``thread_id``: it is the document's ``_id``. An image stored in
GridFS appears in ``images`` as ``gridfs:<file id>``, and the message lists those file
ids in ``blobs`` (indexed), so the last reference to an image is easy to find.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import bson

from threadmem_mongo._images import blob_id_of, is_blob_ref
from threadmem_mongo._limits import ARRAY_ELEMENT_OVERHEAD_BYTES
from threadmem_mongo._models import RoleMessage, V1Role, new_id

COLLECTION_NAME = "threads"

#: Top-level fields a thread document has, besides ``_id``.
THREAD_FIELDS = (
    "owner_id",
    "public",
    "name",
    "metadata",
    "roles",
    "messages",
    "message_count",
    "size_bytes",
    "version",
    "created",
    "updated",
    "expires_at",
    "ttl",
    "last_change",
    "page_count",
    "paged_count",
    "paged_blobs",
    "pending",
)


@dataclass
class ThreadState:
    """Everything a thread object knows, as read from (or about to be written to) the store."""

    id: str
    owner_id: str | None
    public: bool
    name: str | None
    metadata: dict[str, Any] | None
    roles: dict[str, V1Role]
    messages: list[RoleMessage]
    version: int
    created: float
    updated: float
    size_bytes: int = 0
    message_count: int = 0
    expires_at: datetime.datetime | None = None
    ttl: float | None = None
    last_change_bytes: int = 0
    page_count: int = 0
    paged_count: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)

    @property
    def offset(self) -> int:
        """How many messages come before the loaded ones (0 when all are loaded)."""
        return self.message_count - len(self.messages)

    @property
    def inline_count(self) -> int:
        """How many messages the thread document itself holds (the rest are in pages)."""
        return self.message_count - self.paged_count

    def is_paged(self, index: int) -> bool:
        """Whether the loaded message at ``index`` lives in a page, not inline."""
        return self.offset + index < self.paged_count

    def inline_index(self, index: int) -> int:
        """The position in the document's ``messages`` array of loaded message ``index``."""
        return self.offset + index - self.paged_count


def message_to_document(message: RoleMessage) -> dict[str, Any]:
    """Return the embedded subdocument of ``message``.

    ``images`` and ``private`` are left out when they hold their defaults (no images,
    not private), which ``message_from_document`` puts back: every message pays for its
    fields, and most have neither.
    """
    doc: dict[str, Any] = {"id": message.id, "role": message.role, "text": message.text}
    if message.images:
        doc["images"] = list(message.images)
    if message.private:
        doc["private"] = True
    doc["created"] = message.created
    doc["metadata"] = message.metadata
    blobs = [blob_id_of(image) for image in message.images if is_blob_ref(image)]
    if blobs:
        doc["blobs"] = blobs
    return doc


def message_from_document(doc: Mapping[str, Any], thread_id: str) -> RoleMessage:
    """Return the message stored as ``doc`` in thread ``thread_id``."""
    return RoleMessage.model_construct(
        role=doc["role"],
        text=doc["text"],
        thread_id=thread_id,
        images=list(doc.get("images") or []),
        private=bool(doc.get("private", False)),
        created=float(doc["created"]),
        id=doc["id"],
        metadata=doc.get("metadata"),
    )


def role_to_document(role: V1Role) -> dict[str, Any]:
    """Return the embedded subdocument of ``role``."""
    return role.model_dump()


def role_from_document(doc: Mapping[str, Any]) -> V1Role:
    """Return the role stored as ``doc``."""
    return V1Role.model_construct(**{k: doc.get(k) for k in V1Role.model_fields})


def element_size(subdocument: Mapping[str, Any]) -> int:
    """Return the bytes ``subdocument`` adds to the thread document as an array element."""
    return len(bson.encode(subdocument)) + ARRAY_ELEMENT_OVERHEAD_BYTES


def message_size_change(old: RoleMessage, new: RoleMessage) -> int:
    """Return how many bytes replacing message ``old`` by ``new`` adds to the document."""
    return element_size(message_to_document(new)) - element_size(message_to_document(old))


def fields_size(fields: Mapping[str, Any]) -> int:
    """Return the bytes the top-level ``fields`` take in the thread document."""
    return len(bson.encode(dict(fields)))


def same_fields(found: Mapping[str, Any], saved: Mapping[str, Any], state: ThreadState) -> bool:
    """Whether the thread fields in ``found`` (as read) are those an object holds: the
    editable ones as it last saved or read them (``saved``), its roles and its expiry."""
    return (
        all(found.get(name) == value for name, value in saved.items())
        and list(found.get("roles") or []) == [role_to_document(r) for r in state.roles.values()]
        and aware_utc(found.get("expires_at")) == state.expires_at
        and found.get("ttl") == state.ttl
    )


def editable_fields(state: ThreadState) -> dict[str, Any]:
    """Return the fields ``save()`` writes."""
    return {"public": state.public, "name": state.name, "metadata": state.metadata}


def thread_to_document(state: ThreadState) -> dict[str, Any]:
    """Return the whole document of a new thread, with ``size_bytes`` filled in."""
    doc: dict[str, Any] = {
        "_id": state.id,
        "owner_id": state.owner_id,
        "public": state.public,
        "name": state.name,
        "metadata": state.metadata,
        "roles": [role_to_document(role) for role in state.roles.values()],
        "messages": [message_to_document(message) for message in state.messages],
        "message_count": len(state.messages),
        "size_bytes": 0,
        "version": state.version,
        "created": state.created,
        "updated": state.updated,
        "expires_at": state.expires_at,
        "ttl": state.ttl,
    }
    if state.page_count:
        # Created with more messages than fit inline: its first pages are written before
        # this document, which commits them.
        doc["messages"] = doc["messages"][state.paged_count :]
        doc["message_count"] = len(state.messages)
        doc["page_count"] = state.page_count
        doc["paged_count"] = state.paged_count
        # Whether any page holds an image: a deletion reads the pages' images only then.
        doc["paged_blobs"] = any(
            is_blob_ref(image)
            for message in state.messages[: state.paged_count]
            for image in message.images
        )
    # Each element is counted as element_size() counts it, so removing one later never
    # takes the estimate below the real size; the extra one covers size_bytes growing
    # from an int32 to an int64.
    elements = len(doc["messages"]) + len(doc["roles"]) + 1
    doc["size_bytes"] = len(bson.encode(doc)) + ARRAY_ELEMENT_OVERHEAD_BYTES * elements
    return doc


def thread_from_document(doc: Mapping[str, Any]) -> ThreadState:
    """Return the state of the thread stored as ``doc``."""
    thread_id = doc["_id"]
    messages = [message_from_document(m, thread_id) for m in doc.get("messages") or []]
    roles = [role_from_document(r) for r in doc.get("roles") or []]
    return ThreadState(
        id=thread_id,
        owner_id=doc.get("owner_id"),
        public=bool(doc.get("public", False)),
        name=doc.get("name"),
        metadata=doc.get("metadata"),
        roles={role.name: role for role in roles},
        messages=messages,
        version=int(doc.get("version", 0)),
        created=float(doc["created"]),
        updated=float(doc.get("updated", doc["created"])),
        size_bytes=int(doc.get("size_bytes", 0)),
        message_count=int(doc.get("message_count", len(messages))),
        expires_at=aware_utc(doc.get("expires_at")),
        ttl=doc.get("ttl"),
        last_change_bytes=last_change_size(doc.get("last_change")),
        page_count=int(doc.get("page_count", 0)),
        paged_count=int(doc.get("paged_count", 0)),
        pending=[dict(record) for record in doc.get("pending") or []],
    )


def last_change_size(last_change: Mapping[str, Any] | None) -> int:
    """Return the bytes the ``last_change`` field takes (0 when absent)."""
    return 0 if last_change is None else fields_size({"last_change": last_change})


def aware_utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """Return ``value`` as an aware UTC datetime (BSON dates decode as naive UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=datetime.timezone.utc)


def expiry_fields(expires_at: datetime.datetime | None, ttl: float | None) -> dict[str, Any]:
    """Return the expiry fields as stored."""
    return {"expires_at": expires_at, "ttl": ttl}


def renumbered_messages(messages: Iterable[RoleMessage], thread_id: str) -> list[RoleMessage]:
    """Return copies of ``messages`` for thread ``thread_id``, each with a fresh id."""
    return [
        message.model_copy(update={"thread_id": thread_id, "id": new_id()}) for message in messages
    ]
