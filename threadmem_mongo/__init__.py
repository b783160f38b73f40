"""Persistent multi-role chat threads for LLM apps, one MongoDB document per thread."""

from threadmem_mongo._config import configure
from threadmem_mongo._events import ThreadEvent
from threadmem_mongo._models import RoleMessage, V1Role, V1RoleMessage, V1RoleThread
from threadmem_mongo._store import ThreadStore
from threadmem_mongo._thread import RoleThread
from threadmem_mongo.errors import (
    ConfigurationError,
    ImageFormatError,
    ImageNotFoundError,
    InputTypeError,
    InvalidInputError,
    MessageNotFoundError,
    StoreUnavailableError,
    ThreadMemError,
    ThreadNotFoundError,
    ThreadTooLargeError,
    VersionConflictError,
)

__all__ = [
    "ConfigurationError",
    "ImageFormatError",
    "ImageNotFoundError",
    "InputTypeError",
    "InvalidInputError",
    "MessageNotFoundError",
    "RoleMessage",
    "RoleThread",
    "StoreUnavailableError",
    "ThreadEvent",
    "ThreadMemError",
    "ThreadNotFoundError",
    "ThreadStore",
    "ThreadTooLargeError",
    "V1Role",
    "V1RoleMessage",
    "V1RoleThread",
    "VersionConflictError",
    "configure",
]
