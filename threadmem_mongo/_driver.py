"""The one boundary where pymongo's errors become threadmem-mongo's.

Decisions use structured fields (exception classes, server error ``code``), never the
text of a message.
"""

from __future__ import annotations

from types import TracebackType

from pymongo import errors as mongo_errors

from threadmem_mongo._limits import MAX_DOCUMENT_BYTES
from threadmem_mongo.errors import (
    ConfigurationError,
    StoreUnavailableError,
    ThreadMemError,
    ThreadTooLargeError,
)

#: The environment variable that sets how long the driver waits for the server, in seconds.
TIMEOUT_ENV = "THREADMEM_TIMEOUT"

# Server codes meaning "the document or command would be too large".
_TOO_LARGE_CODES = frozenset({10334, 17419, 17420, 13548})


# Server codes meaning "you may not do this": bad credentials or missing privileges.
_NOT_ALLOWED_CODES = frozenset({13, 18})


class translated_errors:  # noqa: N801 - used as a function: ``with translated_errors():``
    """Run the block, raising driver errors as ``ThreadMemError`` subclasses.

    A class rather than a generator, as it wraps every command a store sends.

    Args:
        thread_id: The thread the block is about, named by the errors it raises.
        keep: Driver errors the caller decides on itself: they are raised as they are.
    """

    __slots__ = ("keep", "thread_id")

    def __init__(
        self, thread_id: str | None = None, *, keep: tuple[type[BaseException], ...] = ()
    ) -> None:
        self.thread_id = thread_id
        self.keep = keep

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None or isinstance(error, (ThreadMemError, *self.keep)):
            return
        if isinstance(error, (mongo_errors.PyMongoError, mongo_errors.DocumentTooLarge)):
            raise translated(error, self.thread_id) from error


def translated(exc: Exception, thread_id: str | None = None) -> ThreadMemError:
    """Return the ``ThreadMemError`` that stands for the driver error ``exc``."""
    if isinstance(exc, (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout)):
        # ConnectionFailure covers AutoReconnect, NetworkTimeout and
        # ServerSelectionTimeoutError; ExecutionTimeout is the server's maxTimeMS.
        # The same text serves reads and writes: what a failed write leaves behind, and
        # how to retry it, is the caller's to say (a post hands back ``exc.unsent``).
        return StoreUnavailableError(
            f"MongoDB did not answer ({type(exc).__name__}): check that the server is "
            f"running and reachable, or give it longer with {TIMEOUT_ENV}=SECONDS or "
            "configure(timeout=SECONDS)"
        )
    if isinstance(exc, mongo_errors.WriteConcernError):
        # The write was applied on the primary but not confirmed as asked.
        return StoreUnavailableError(
            f"MongoDB applied the write but could not confirm it (write concern error "
            f"{exc.code}); it may or may not survive a failover"
        )
    if isinstance(exc, mongo_errors.InvalidOperation):
        # Raised by a client that was closed, e.g. by a later configure() call.
        return ConfigurationError(
            f"the MongoDB client of this store cannot be used: {exc}; objects made before "
            "configure() was called again keep the old client: load them again"
        )
    if isinstance(exc, mongo_errors.DocumentTooLarge) or (
        isinstance(exc, mongo_errors.OperationFailure) and exc.code in _TOO_LARGE_CODES
    ):
        # pymongo refuses an oversized command before sending it (DocumentTooLarge is a
        # bson error, not a PyMongoError); the server refuses an oversized document.
        return ThreadTooLargeError(thread_id or "?", MAX_DOCUMENT_BYTES + 1, MAX_DOCUMENT_BYTES)
    if isinstance(exc, mongo_errors.OperationFailure) and exc.code in _NOT_ALLOWED_CODES:
        return ConfigurationError(
            f"MongoDB refused the credentials or the operation (code {exc.code}): check the "
            "user and roles in the connection string"
        )
    code = getattr(exc, "code", None)
    return ThreadMemError(f"MongoDB reported an error ({type(exc).__name__}, code {code}): {exc}")
