"""What ``watch()`` yields: change-stream events read as thread events. Pure: no I/O.

A thread's updates describe themselves: an append shows up as a new ``messages.<n>``
entry (or, for some servers and the first message, as the whole array, whose last
element is the new message), and edits and deletions of messages carry ``last_change``
(set by ``threadmem_mongo._updates`` in the same atomic update) naming the message
ids and the version made, so a watcher never has to guess from array positions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from threadmem_mongo._document import message_from_document
from threadmem_mongo._models import RoleMessage

EventKind = Literal[
    "message_added",
    "message_updated",
    "message_deleted",
    "thread_created",
    "thread_updated",
    "thread_deleted",
]

#: Thread fields reported by ``thread_updated`` events.
WATCHED_FIELDS = ("owner_id", "public", "name", "metadata", "roles", "expires_at", "ttl")

_NEW_MESSAGE_KEY = re.compile(r"^messages\.(\d+)$")


@dataclass(frozen=True)
class ThreadEvent:
    """One thing that happened to a thread, as ``watch()`` reports it.

    Attributes:
        kind: ``message_added``, ``message_updated``, ``message_deleted``,
            ``thread_created``, ``thread_updated`` or ``thread_deleted``.
        thread_id: The thread it happened to.
        version: The thread's version after the change (None for ``thread_deleted``,
            and for the backlog ``watch(after_message=...)`` replays).
        message: The new or edited message (``message_added``, ``message_updated``);
            None for other kinds, and for a ``message_updated`` whose message was gone
            by the time it was read.
        message_id: The message concerned, for message events.
        fields: For ``thread_updated`` and ``thread_created``: the thread fields set,
            as stored (``roles`` as a list of role documents, ``ttl`` in seconds).
        resume_token: Pass to ``watch(resume_after=...)`` to continue after this change
            (None for the backlog ``watch(after_message=...)`` replays).
    """

    kind: EventKind
    thread_id: str
    version: int | None = None
    message: RoleMessage | None = None
    message_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    resume_token: Mapping[str, Any] | None = None


def thread_pipeline(thread_id: str) -> list[dict[str, Any]]:
    """Change-stream pipeline for one thread's changes.

    Args:
        thread_id: The thread to watch.

    Returns:
        The pipeline stages.
    """
    return [{"$match": {"documentKey._id": thread_id}}]


def owner_pipeline(owner_id: str | None) -> list[dict[str, Any]]:
    """Change-stream pipeline for every thread (of one owner, if given).

    Used with ``full_document="updateLookup"`` so updates carry the owner; the looked-up
    document's messages are dropped on the server, so only the change travels.

    Args:
        owner_id: Only threads of this owner; None for every thread.

    Returns:
        The pipeline stages.
    """
    stages: list[dict[str, Any]] = []
    if owner_id is not None:
        stages.append({"$match": {"fullDocument.owner_id": owner_id}})
    stages.append({"$project": {"fullDocument.messages": 0}})
    return stages


def events_from_change(change: Mapping[str, Any]) -> list[ThreadEvent]:
    """Return the thread events one change-stream document stands for.

    ``message_updated`` events come with ``message=None``; the watcher reads the edited
    message by id.

    Args:
        change: One change-stream document.

    Returns:
        The events, in order: messages added, then messages edited or deleted, then
            thread fields changed; empty for a change of no interest (or of a document
            whose ``_id`` is not a string).
    """
    kind = change.get("operationType")
    thread_id = change.get("documentKey", {}).get("_id")
    token = change.get("_id")
    if not isinstance(thread_id, str):
        return []
    if kind == "delete":
        return [ThreadEvent("thread_deleted", thread_id, resume_token=token)]
    if kind in ("insert", "replace"):
        doc = change.get("fullDocument") or {}
        fields = {name: doc[name] for name in WATCHED_FIELDS if name in doc}
        return [
            ThreadEvent(
                "thread_created", thread_id, doc.get("version"), fields=fields, resume_token=token
            )
        ]
    if kind != "update":
        return []
    updated: Mapping[str, Any] = change.get("updateDescription", {}).get("updatedFields", {})
    version = updated.get("version")
    events: list[ThreadEvent] = []
    added = sorted(
        (int(match.group(1)), value)
        for key, value in updated.items()
        if (match := _NEW_MESSAGE_KEY.match(key)) and isinstance(value, Mapping)
    )
    last_change = updated.get("last_change")
    whole = updated.get("messages")
    if "page_count" in updated:
        # A move of the oldest messages to an overflow page: for readers, nothing changed.
        added, whole = [], None
    if not added and isinstance(whole, list) and whole and not isinstance(last_change, Mapping):
        # The server may log an append as the whole new array (for example the first
        # message of a thread); each append pushes exactly one message, the last one.
        added = [(len(whole) - 1, whole[-1])]
    elif (
        not added
        and isinstance(whole, list)
        and isinstance(last_change, Mapping)
        and last_change.get("op") == "messages_added"
    ):
        # A batch append logged as the whole new array: the batch is its tail.
        count = len(last_change.get("ids") or [])
        added = list(enumerate(whole))[len(whole) - count :] if count else []
    for _, doc in added:
        message = message_from_document(doc, thread_id)
        events.append(
            ThreadEvent(
                "message_added", thread_id, version, message, message.id, resume_token=token
            )
        )
    if isinstance(last_change, Mapping):
        op = last_change.get("op")
        for message_id in last_change.get("ids") or []:
            if op == "message_updated":
                events.append(
                    ThreadEvent(
                        "message_updated", thread_id, version, None, message_id, resume_token=token
                    )
                )
            elif op == "message_deleted":
                events.append(
                    ThreadEvent(
                        "message_deleted", thread_id, version, None, message_id, resume_token=token
                    )
                )
    fields = {name: updated[name] for name in WATCHED_FIELDS if name in updated}
    if fields:
        events.append(
            ThreadEvent("thread_updated", thread_id, version, fields=fields, resume_token=token)
        )
    return events
