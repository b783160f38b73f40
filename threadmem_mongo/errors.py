"""Exceptions raised by threadmem-mongo.

Every exception the library raises on purpose derives from ``ThreadMemError``,
so ``except ThreadMemError`` catches them all:

```text
ThreadMemError
├── ThreadNotFoundError        the thread id is not in the store
├── MessageNotFoundError       the message id is not in the thread (also a LookupError)
├── ImageNotFoundError         a stored image is gone from GridFS (also a LookupError)
├── VersionConflictError       someone changed the thread since this object read it
├── InvalidInputError          bad argument; nothing was written (also a ValueError)
│   ├── ImageFormatError       an image is none of the accepted kinds, or unreadable
│   └── InputTypeError         an argument has the wrong type (also a TypeError)
├── ThreadTooLargeError        the change would push the document past MongoDB's 16 MB
├── StoreUnavailableError      the server cannot be reached, or timed out
└── ConfigurationError         no store is configured, or the configuration is wrong
```

Driver errors are translated into this tree in one place, ``threadmem_mongo._driver``,
and the original error is kept as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "ImageFormatError",
    "ImageNotFoundError",
    "InputTypeError",
    "InvalidInputError",
    "MessageNotFoundError",
    "StoreUnavailableError",
    "ThreadMemError",
    "ThreadNotFoundError",
    "ThreadTooLargeError",
    "VersionConflictError",
]


class ThreadMemError(Exception):
    """Root of every exception threadmem-mongo raises on purpose."""


class ThreadNotFoundError(ThreadMemError):
    """The thread is not in the store (never created, or deleted).

    Attributes:
        thread_id: The id that was looked up.
    """

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__(
            f"thread {thread_id!r} does not exist in the store; it was never created or "
            "has been deleted"
        )


class MessageNotFoundError(ThreadMemError, LookupError):
    """The message id is not part of the thread.

    Attributes:
        thread_id: The thread that was searched.
        message_id: The message id that was not found.
    """

    def __init__(self, thread_id: str, message_id: str) -> None:
        self.thread_id = thread_id
        self.message_id = message_id
        super().__init__(
            f"message {message_id!r} is not in thread {thread_id!r}; call refresh() if "
            "another process may have posted or deleted it"
        )


class ImageNotFoundError(ThreadMemError, LookupError):
    """A message refers to an image in GridFS that is not there (deleted by hand, or
    left incomplete).

    Attributes:
        blob_id: The GridFS file id.
    """

    def __init__(self, blob_id: str, detail: str = "does not exist") -> None:
        self.blob_id = blob_id
        super().__init__(
            f"stored image {blob_id!r} {detail}; read the message with "
            "messages(resolve_images=False) to see its references"
        )


class VersionConflictError(ThreadMemError):
    """The thread changed since this object read it, so the change was not written.

    Call ``refresh()`` and apply the change again, or use
    [`RoleThread.apply`][threadmem_mongo.RoleThread.apply], which does that for you.

    Attributes:
        thread_id: The thread whose write was refused.
        expected_version: The version this object held when it tried to write.
        actual_version: The version in the store at the time of the refusal.
    """

    def __init__(self, thread_id: str, expected_version: int, actual_version: int) -> None:
        self.thread_id = thread_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"thread {thread_id!r} is at version {actual_version} in the store but this "
            f"object read version {expected_version}; nothing was written. Call refresh() "
            "and apply the change again, or use thread.apply(change)"
        )


class InvalidInputError(ThreadMemError, ValueError):
    """An argument is not acceptable; nothing was written."""


class ImageFormatError(InvalidInputError):
    """An image is none of the accepted kinds (URL, data URI, file path, PIL image)."""


class InputTypeError(InvalidInputError, TypeError):
    """An argument has the wrong type; nothing was written.

    Both an ``InvalidInputError`` (so ``except ValueError`` and ``except
    InvalidInputError`` catch it) and a ``TypeError``, for callers written against a
    framework whose own stores raise ``TypeError`` for the same mistake (the Agents SDK's
    ``MongoDBSession``, for a session id that is not a string). The agent-framework
    adapters raise it for every argument of the wrong type.
    """


class ThreadTooLargeError(ThreadMemError):
    """The change would push the thread document past MongoDB's document size limit.

    Nothing was written. Store large images elsewhere (URLs), or start a new thread.

    Attributes:
        thread_id: The thread the change was for.
        size: The estimated size in bytes the document would have had.
        limit: The size limit in bytes that applies.
    """

    def __init__(self, thread_id: str, size: int, limit: int) -> None:
        self.thread_id = thread_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"thread {thread_id!r} would grow to about {size:,} bytes, over the "
            f"{limit:,}-byte document budget; nothing was written. Post large images as "
            "URLs, or continue in a new thread"
        )


class StoreUnavailableError(ThreadMemError):
    """The MongoDB server could not be reached or did not answer in time.

    The change may or may not have been applied if the error came after the request
    was sent. A post is safe to retry with the same message, which lands once:
    ``thread.add_msg(exc.unsent)``.

    Attributes:
        unsent: For a ``post`` or ``add_msg`` whose append failed, the message it tried
            to append; else None (also when the failure came earlier, while storing
            the message's images in GridFS: then nothing was appended).
    """

    unsent: Any = None


class ConfigurationError(ThreadMemError):
    """No store is configured, or the configuration cannot work."""
