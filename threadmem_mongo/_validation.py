"""Input checks shared by every entry point. Pure: no I/O.

Each check raises ``threadmem_mongo.errors.InvalidInputError`` with a message that
names the argument and says what is accepted, before anything is sent to the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import bson
from bson.errors import InvalidDocument

from threadmem_mongo.errors import InvalidInputError

#: Deepest nesting of dicts and lists accepted in metadata. MongoDB refuses documents
#: nested past 100 levels, and the thread document wraps metadata in a few levels of
#: its own; the margin also keeps the checks far from Python's recursion limit.
MAX_METADATA_DEPTH = 64

#: The range of a BSON int64, the widest whole number MongoDB stores or compares.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def check_encodable(name: str, value: str) -> str:
    """Return ``value`` if it can be stored as UTF-8 (no lone surrogates), else raise."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{name} holds a character that cannot be stored as UTF-8 (a lone surrogate at "
            f"position {exc.start})"
        ) from None
    return value


def check_role(role: object) -> str:
    """Return ``role`` if it is a non-empty string, else raise."""
    if not isinstance(role, str):
        raise InvalidInputError(f"role must be a string, got {type(role).__name__}")
    if not role.strip():
        raise InvalidInputError("role must be a non-empty string")
    return check_encodable("role", role)


def check_text(text: object, *, has_images: bool) -> str:
    """Return ``text`` if it is a string, non-empty unless the message carries images."""
    if not isinstance(text, str):
        raise InvalidInputError(f"message text must be a string, got {type(text).__name__}")
    if not text and not has_images:
        raise InvalidInputError("message text must not be empty (unless the message has images)")
    return check_encodable("message text", text)


def check_optional_str(name: str, value: object) -> str | None:
    """Return ``value`` if it is ``None`` or a string, else raise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string or None, got {type(value).__name__}")
    return check_encodable(name, value)


def check_id(name: str, value: object) -> str:
    """Return ``value`` if it is a non-empty string usable as a thread or message id.

    Ids are compared as values everywhere: a dict or a regular expression passed as an
    id would otherwise act as a query operator, so anything but a string is refused.
    """
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{name} must be an id (a string), got {type(value).__name__}; query operators "
            "are not accepted"
        )
    if not value:
        raise InvalidInputError(f"{name} must not be empty")
    return check_encodable(name, value)


def check_optional_id(name: str, value: object) -> str | None:
    """Return ``value`` if it is None or an id (see ``check_id``), else raise."""
    return None if value is None else check_id(name, value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def check_metadata(value: object, *, name: str = "metadata") -> dict[str, Any] | None:
    """Return a copy of ``value`` if MongoDB can store it as data, else raise.

    Keys must be strings that neither start with ``$`` nor contain ``.``, at every depth,
    so a key can never be read as an operator or a field path; values must be BSON
    encodable.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{name} must be a dict or None, got {type(value).__name__}")
    _check_keys(value, name)
    try:
        encoded = bson.encode({"v": dict(value)})
    except (InvalidDocument, OverflowError, TypeError) as exc:
        raise InvalidInputError(f"{name} holds a value MongoDB cannot store: {exc}") from exc
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{name} holds a string that cannot be stored as UTF-8 (a lone surrogate)"
        ) from exc
    decoded: dict[str, Any] = bson.decode(encoded)["v"]
    return decoded


def _check_keys(root: object, name: str) -> None:
    """Check every key of ``root`` at every depth, without recursion (so no depth of
    nesting can exhaust the stack), refusing nesting past ``MAX_METADATA_DEPTH``."""
    pending: list[tuple[object, str, int]] = [(root, name, 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, (Mapping, list, tuple)) and depth > MAX_METADATA_DEPTH:
            raise InvalidInputError(
                f"{name} is nested more than {MAX_METADATA_DEPTH} levels deep at {path[:200]}"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidInputError(f"{path} keys must be strings, got {key!r}")
                if key.startswith("$") or "." in key or "\x00" in key:
                    raise InvalidInputError(
                        f"{path} key {key!r} is not allowed: keys must not start with '$' or "
                        "contain '.' or NUL"
                    )
                check_encodable(f"{path} key", key)
                pending.append((item, f"{path}[{key!r}]", depth + 1))
        elif isinstance(value, (list, tuple)):
            pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def check_filter_value(field: str, value: object) -> str | int | float | bool | None:
    """Return ``value`` if it is a scalar usable in an equality filter, else raise.

    Filters compare with equality only: a dict value could smuggle in a query operator
    (``{"$ne": None}``) and read other owners' threads.
    """
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        raise InvalidInputError(f"filter {field}= is an int MongoDB cannot store (over 64 bits)")
    if isinstance(value, str):
        return check_encodable(f"filter {field}=", value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    raise InvalidInputError(
        f"filter {field}= must be a string, number, bool or None, got "
        f"{type(value).__name__}; query operators are not accepted"
    )


def check_count(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an int from ``minimum`` up to the int64 maximum, else raise.

    Counts travel to the server as BSON int64, so a larger one is refused here rather
    than failing inside the driver.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= INT64_MAX:
        raise InvalidInputError(
            f"{name} must be a whole number from {minimum} to {INT64_MAX}, got {value!r}"
        )
    return value


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int of at least 1 (and at most the int64 maximum)."""
    return check_count(name, value, minimum=1)


def check_unique_ids(message_ids: Iterable[str]) -> None:
    """Raise unless every message id appears once: a thread holds each message once."""
    seen: set[str] = set()
    for message_id in message_ids:
        if message_id in seen:
            raise InvalidInputError(
                f"message id {message_id!r} appears more than once; each message of a thread "
                "needs its own id"
            )
        seen.add(message_id)
