"""Checks of what a user passes to a thread, and the state built from it. Pure: no I/O.

Every argument of ``RoleThread(...)``, ``AsyncRoleThread.create(...)``, the message edits and the
``from_*`` importers is checked here before a ``ThreadState`` is built from it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping
from typing import Any

from threadmem_mongo import _document, _pages, _validation
from threadmem_mongo._document import ThreadState
from threadmem_mongo._models import (
    RoleMessage,
    V1Role,
    check_placeholders,
    new_id,
)
from threadmem_mongo.errors import (
    InvalidInputError,
)


def new_state(
    owner_id: object,
    public: object,
    name: object,
    metadata: object,
    role_mapping: object,
    messages: list[RoleMessage] | None = None,
    thread_id: str | None = None,
    ttl: object = None,
    expires_at: object = None,
) -> ThreadState:
    now = time.time()
    ttl_seconds, expiry = check_expiry(ttl, expires_at, now)
    return ThreadState(
        id=thread_id or new_id(),
        owner_id=_validation.check_optional_str("owner_id", owner_id),
        public=_validation.check_bool("public", public),
        name=_validation.check_optional_str("name", name),
        metadata=_validation.check_metadata(metadata),
        roles=check_role_mapping(role_mapping),
        messages=messages or [],
        version=0,
        created=now,
        updated=now,
        expires_at=expiry,
        ttl=ttl_seconds,
    )


def check_expiry(
    ttl: object, expires_at: object, now: float
) -> tuple[float | None, datetime.datetime | None]:
    """Return ``(ttl seconds, expiry)`` from the ``ttl=`` / ``expires_at=`` arguments."""
    if ttl is not None and expires_at is not None:
        raise InvalidInputError("pass either ttl or expires_at, not both")
    if ttl is not None:
        if not isinstance(ttl, datetime.timedelta) or ttl.total_seconds() <= 0:
            raise InvalidInputError(f"ttl must be a positive datetime.timedelta, got {ttl!r}")
        seconds = ttl.total_seconds()
        return seconds, utc(now + seconds)
    if expires_at is not None:
        if not isinstance(expires_at, datetime.datetime) or expires_at.tzinfo is None:
            raise InvalidInputError(
                f"expires_at must be a timezone-aware datetime, got {expires_at!r}"
            )
        return None, utc(expires_at.timestamp())
    return None, None


def check_last(last: object) -> None:
    if last is not None:
        _validation.check_count("last", last, minimum=0)


def check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
    return value


def check_resume_token(token: object) -> None:
    if token is not None and not isinstance(token, Mapping):
        raise InvalidInputError(
            "resume_after must be the resume_token of an event (a dict), got "
            f"{type(token).__name__}"
        )


def utc(epoch: float) -> datetime.datetime:
    # BSON dates hold milliseconds; round so the object and the store agree exactly.
    return datetime.datetime.fromtimestamp(round(epoch, 3), datetime.timezone.utc)


def check_role_mapping(value: object) -> dict[str, V1Role]:
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


def message_changes(*, text: object, metadata: object, private: object) -> dict[str, Any]:
    """Return the checked fields an ``update_message`` call changes (None: unchanged).

    Raises:
        InvalidInputError: Nothing to change, or a value is not acceptable.
    """
    changes: dict[str, Any] = {}
    if text is not None:
        changes["text"] = _validation.check_encodable("text", check_str("text", text))
    if metadata is not None:
        changes["metadata"] = _validation.check_metadata(metadata)
    if private is not None:
        changes["private"] = _validation.check_bool("private", private)
    if not changes:
        raise InvalidInputError("update_message() needs text, metadata or private")
    return changes


def changed_message(old: RoleMessage, changes: Mapping[str, Any]) -> RoleMessage:
    """Return ``old`` with ``changes`` applied, checking a new text against its images.

    Raises:
        InvalidInputError: The new text is empty on a message without images, or its
            ``<image>`` placeholders do not match the images.
    """
    if "text" in changes:
        _validation.check_text(changes["text"], has_images=bool(old.images))
        check_placeholders(changes["text"], len(old.images))
    return old.model_copy(update=dict(changes))


def appended_batch(messages: object, thread_id: str, known_ids: Iterable[str]) -> list[RoleMessage]:
    """Return the messages an ``extend`` call appends, each set to thread ``thread_id``.

    Raises:
        InvalidInputError: ``messages`` is not a list of RoleMessage, one belongs to
            another thread, or an id repeats or is one of ``known_ids``.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InvalidInputError("extend() takes a list of RoleMessage")
    batch: list[RoleMessage] = []
    for message in messages:
        if not isinstance(message, RoleMessage):
            raise InvalidInputError(f"extend() takes RoleMessages, got {type(message).__name__}")
        if message.thread_id not in (None, thread_id):
            raise InvalidInputError(
                f"message {message.id!r} belongs to thread {message.thread_id!r}"
            )
        batch.append(message.model_copy(update={"thread_id": thread_id}))
    ids = [message.id for message in batch]
    if len(set(ids)) != len(ids) or set(known_ids).intersection(ids):
        raise InvalidInputError("extend() got a message id twice, or one the thread holds")
    return batch


def apply_catch_up(state: ThreadState, saved: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    """Bring ``state`` up to a catch-up read, if all that happened since was appends.

    Args:
        state: The object's state; changed only when True is returned.
        saved: Its editable fields as it last saved or read them.
        found: The store's ``catch_up`` result: the counters, and the messages after the
            object's last one (``index`` -1 when that message is gone).

    Returns:
        True when every change since ``state.version`` was an append or a move to a page
        (then ``state`` holds the store's state), False otherwise.
    """
    if found["index"] < 0:
        return False
    page = list(found["page"])
    version = int(found["version"])
    count = int(found["message_count"])
    page_count = int(found.get(_pages.PAGE_COUNT, 0))
    # Every change raises the version by one; an append adds one message and a move to a
    # page one page. As many versions as new messages and pages, at the end, with the
    # fields as the object saved them, means nothing else happened.
    if (
        version - state.version != len(page) + page_count - state.page_count
        or count != state.message_count + len(page)
        or not _document.same_fields(found, saved, state)
    ):
        return False
    state.messages.extend(_document.message_from_document(doc, state.id) for doc in page)
    state.version = version
    state.message_count = count
    state.size_bytes = int(found["size_bytes"])
    state.updated = float(found["updated"])
    state.page_count = page_count
    state.paged_count = int(found.get(_pages.PAGED_COUNT, 0))
    state.pending = [dict(record) for record in found.get(_pages.PENDING) or []]
    return True
