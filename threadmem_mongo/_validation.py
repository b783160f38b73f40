"""Input checks shared by every entry point. Pure: no I/O.

Each check raises ``threadmem_mongo.errors.InvalidInputError`` with a message that
names the argument and says what is accepted, before anything is sent to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson
from bson.errors import InvalidDocument

from threadmem_mongo.errors import InvalidInputError


def check_role(role: object) -> str:
    """Return ``role`` if it is a non-empty string, else raise."""
    if not isinstance(role, str):
        raise InvalidInputError(f"role must be a string, got {type(role).__name__}")
    if not role.strip():
        raise InvalidInputError("role must be a non-empty string")
    return role


def check_text(text: object, *, has_images: bool) -> str:
    """Return ``text`` if it is a string, non-empty unless the message carries images."""
    if not isinstance(text, str):
        raise InvalidInputError(f"message text must be a string, got {type(text).__name__}")
    if not text and not has_images:
        raise InvalidInputError("message text must not be empty (unless the message has images)")
    return text


def check_optional_str(name: str, value: object) -> str | None:
    """Return ``value`` if it is ``None`` or a string, else raise."""
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string or None, got {type(value).__name__}")
    return value


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
    decoded: dict[str, Any] = bson.decode(encoded)["v"]
    return decoded


def _check_keys(value: object, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{path} keys must be strings, got {key!r}")
            if key.startswith("$") or "." in key or "\x00" in key:
                raise InvalidInputError(
                    f"{path} key {key!r} is not allowed: keys must not start with '$' or "
                    "contain '.' or NUL"
                )
            _check_keys(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_keys(item, f"{path}[{index}]")


def check_filter_value(field: str, value: object) -> str | int | float | bool | None:
    """Return ``value`` if it is a scalar usable in an equality filter, else raise.

    Filters compare with equality only: a dict value could smuggle in a query operator
    (``{"$ne": None}``) and read other owners' threads.
    """
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise InvalidInputError(f"filter {field}= is an int MongoDB cannot store (over 64 bits)")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InvalidInputError(
        f"filter {field}= must be a string, number, bool or None, got "
        f"{type(value).__name__}; query operators are not accepted"
    )


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int of at least 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value
