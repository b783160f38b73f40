"""The stores threadmem-mongo is measured on: the wire server and mongomock.

Each target has a plain client for timing and, on the wire, a second client with a
:class:`~bench.measure.CommandLog` for round trips and bytes, so monitoring never adds
to a timed figure.
"""

from __future__ import annotations

import inspect
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pymongo import MongoClient, ReturnDocument
from pymongo.collection import Collection

from bench.measure import CommandLog
from bench.plan import TEXT
from threadmem_mongo import RoleThread, ThreadStore
from threadmem_mongo._pages import DEFAULT_MAX_INLINE_MESSAGES

Document = dict[str, Any]
DATABASE = "threadmem_bench"


@dataclass
class Target:
    """One backend: where threads live, and how to watch its traffic."""

    name: str
    label: str
    client: Any
    monitored_client: Any | None
    log: CommandLog | None

    def collection(self, name: str) -> Collection[Document]:
        return self.client[DATABASE][name]

    def store(self, name: str) -> ThreadStore:
        store = ThreadStore(self.collection(name))
        store.ensure_indexes()
        return store

    def monitored_collection(self, name: str) -> Collection[Document] | None:
        if self.monitored_client is None:
            return None
        return self.monitored_client[DATABASE][name]

    def monitored_store(self, name: str) -> ThreadStore | None:
        collection = self.monitored_collection(name)
        if collection is None:
            return None
        store = ThreadStore(collection)
        store.ensure_indexes()
        return store

    def close(self) -> None:
        for client in (self.client, self.monitored_client):
            if client is not None and hasattr(client, "close"):
                client.close()


def wire_target(uri: str) -> Target:
    log = CommandLog()
    return Target(
        name="wire",
        label="SecantusDB (wire)",
        client=MongoClient(uri),
        monitored_client=MongoClient(uri, event_listeners=[log]),
        log=log,
    )


def mongomock_target() -> Target:
    import mongomock

    return Target(
        name="mongomock",
        label="mongomock (in process)",
        client=mongomock.MongoClient(),
        monitored_client=None,
        log=None,
    )


def has_last() -> bool:
    """Whether ``RoleThread.get`` takes ``last=`` (load only the newest messages)."""
    return "last" in inspect.signature(RoleThread.get).parameters


def stored_message(collection: Collection[Document], thread: RoleThread) -> Document:
    """The subdocument the library stored for the thread's newest message."""
    doc = collection.find_one({"_id": thread.id}, {"messages": {"$slice": -1}})
    if doc is None or not doc.get("messages"):
        raise RuntimeError("could not read back the posted message")
    return dict(doc["messages"][0])


def _swap(value: Any, old: str, new: str) -> Any:
    """``value`` with every string equal to ``old`` replaced by ``new``."""
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {key: _swap(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_swap(item, old, new) for item in value]
    return value


def _kept_size(document: Document) -> int:
    """How many messages a floor's copy of a thread keeps (``$slice``): like the
    library's thread document, it grows up to the inline limit and no further."""
    return max(len(document.get("messages") or []), DEFAULT_MAX_INLINE_MESSAGES)


def _renew_message_ids(document: Document) -> None:
    """Give a thread copy's messages new ids: message ids are unique across threads."""
    for message in document.get("messages", []):
        message["id"] = str(uuid.uuid4())


@dataclass
class PostCommand:
    """The one write command a library post sends, as command monitoring saw it."""

    name: str
    filter: Document
    update: Document
    projection: Document | None

    def describe(self) -> str:
        operators = ", ".join(f"`{key}`" for key in self.update)
        return f"`{self.name}` with {operators}"


def capture_post_command(target: Target) -> PostCommand:
    """Post once on a fresh thread through the monitored client; return its command.

    Raises:
        RuntimeError: The post sent something else than one ``update`` or
            ``findAndModify`` (the harness then leaves the "same command" column out).
    """
    log = target.log
    store = target.monitored_store("capture")
    if log is None or store is None:
        raise RuntimeError(f"{target.label} has no command monitoring")
    thread = RoleThread(owner_id="capture", store=store)
    with log.window(keep=True) as window:
        post(thread)
    if len(window.documents) != 1:
        raise RuntimeError(f"a post sent {window.commands}, not one command")
    command = window.documents[0]
    if window.commands == ["findAndModify"]:
        return PostCommand(
            "findAndModify", dict(command["query"]), dict(command["update"]), command.get("fields")
        )
    if window.commands == ["update"] and len(command.get("updates", [])) == 1:
        statement = command["updates"][0]
        if statement.get("multi") or statement.get("upsert") or "arrayFilters" in statement:
            raise RuntimeError(f"a post sent an update with options: {sorted(statement)}")
        return PostCommand("update", dict(statement["q"]), dict(statement["u"]), None)
    raise RuntimeError(f"a post sent {window.commands}, not one update or findAndModify")


class Floor:
    """Raw pymongo: ``update_one`` with ``$push`` of the same message subdocument.

    It pushes into a copy of a thread document, in the same collection (same indexes),
    so the server handles a document of the same size as the library's post does. The
    library moves its oldest messages to overflow pages past its inline limit, so its
    document grows no further; the copy stops at that limit too (or at its starting
    size, if larger), with ``$slice`` in the same update.
    """

    def __init__(self, collection: Collection[Document], thread: RoleThread) -> None:
        self.collection = collection
        source = collection.find_one({"_id": thread.id})
        if source is None:
            raise RuntimeError(f"thread {thread.id} not found")
        source["_id"] = f"floor-{thread.id}"
        # Keep the copy out of the owner's listing.
        source["owner_id"] = "floor"
        _renew_message_ids(source)
        collection.insert_one(source)
        self.id = source["_id"]
        self.keep = _kept_size(source)

    def message(self, template: Document) -> Document:
        return {**template, "id": str(uuid.uuid4()), "created": time.time()}

    def push(self, template: Document, collection: Collection[Document] | None = None) -> None:
        target = collection if collection is not None else self.collection
        pushed = {"$each": [self.message(template)], "$slice": -self.keep}
        target.update_one({"_id": self.id}, {"$push": {"messages": pushed}})


class SameCommand:
    """Raw pymongo sending the library's own post command.

    Replays the captured command into another copy of the thread with a fresh message
    id, the copy's ``_id`` and, if the filter pins a ``version``, the copy's current
    version, so every replay matches and writes just as the library's post does. As for
    :class:`Floor`, ``$slice`` stops the copy at the inline limit. The gap to
    :class:`Floor` is the command's cost; the gap to the library's post is the library's
    own Python.
    """

    def __init__(
        self, collection: Collection[Document], thread: RoleThread, command: PostCommand
    ) -> None:
        self.collection = collection
        self.command = command
        source = collection.find_one({"_id": thread.id})
        if source is None:
            raise RuntimeError(f"thread {thread.id} not found")
        source["_id"] = f"same-{thread.id}"
        source["owner_id"] = "floor"
        _renew_message_ids(source)
        collection.insert_one(source)
        self.id = source["_id"]
        self.keep = _kept_size(source)
        self.version = source.get("version")
        self.message_id = command.update["$push"]["messages"]["id"]
        self.version_step = int(command.update.get("$inc", {}).get("version", 0))

    def push(self) -> None:
        new = str(uuid.uuid4())
        now = time.time()
        query = _swap(self.command.filter, self.message_id, new)
        query["_id"] = self.id
        if "version" in query:
            query["version"] = self.version
        update = _swap(self.command.update, self.message_id, new)
        if "updated" in update.get("$set", {}):
            update["$set"] = {**update["$set"], "updated": now}
        update["$push"]["messages"]["created"] = now
        update["$push"]["messages"] = {"$each": [update["$push"]["messages"]], "$slice": -self.keep}
        if self.command.name == "findAndModify":
            matched = self.collection.find_one_and_update(
                query,
                update,
                projection=self.command.projection,
                return_document=ReturnDocument.AFTER,
            )
            landed = matched is not None
        else:
            landed = self.collection.update_one(query, update).matched_count == 1
        if not landed:
            raise RuntimeError("the replayed post command matched nothing")
        if self.version is not None:
            self.version += self.version_step


def post(thread: RoleThread) -> None:
    thread.post("user", TEXT)
