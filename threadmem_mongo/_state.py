"""A new thread's state, built from what a user passed. Pure: no I/O.

Every argument of ``RoleThread(...)``, ``AsyncRoleThread.create(...)`` and the
``from_*`` importers is checked here before a ``ThreadState`` is built from it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping

from threadmem_mongo import (
    _validation,
)
from threadmem_mongo._document import ThreadState
from threadmem_mongo._models import (
    RoleMessage,
    V1Role,
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
