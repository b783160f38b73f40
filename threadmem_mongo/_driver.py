"""The one boundary where pymongo's errors become threadmem-mongo's.

Decisions use structured fields (exception classes, server error ``code``), never the
text of a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pymongo import errors as mongo_errors

from threadmem_mongo._limits import MAX_DOCUMENT_BYTES
from threadmem_mongo.errors import (
    ConfigurationError,
    StoreUnavailableError,
    ThreadMemError,
    ThreadTooLargeError,
)

# Server codes meaning "the document or command would be too large".
_TOO_LARGE_CODES = frozenset({10334, 17419, 17420, 13548})


@contextmanager
def translated_errors(thread_id: str | None = None) -> Iterator[None]:
    """Run the block, raising driver errors as ``ThreadMemError`` subclasses."""
    try:
        yield
    except ThreadMemError:
        raise
    except (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout) as exc:
        # ConnectionFailure covers AutoReconnect, NetworkTimeout and
        # ServerSelectionTimeoutError; ExecutionTimeout is the server's maxTimeMS.
        raise StoreUnavailableError(
            f"MongoDB did not answer: {type(exc).__name__}; check that the server is running "
            "and reachable, or raise the timeout with configure(timeout=...). A post that "
            "failed this way is safe to retry with the same message"
        ) from exc
    except mongo_errors.InvalidOperation as exc:
        # Raised by a client that was closed, e.g. by a later configure() call.
        raise ConfigurationError(
            f"the MongoDB client of this store cannot be used: {exc}; objects made before "
            "configure() was called again keep the old client: load them again"
        ) from exc
    except mongo_errors.DocumentTooLarge as exc:
        # pymongo refuses an oversized command before sending it; a bson error, not a
        # PyMongoError.
        raise ThreadTooLargeError(
            thread_id or "?", MAX_DOCUMENT_BYTES + 1, MAX_DOCUMENT_BYTES
        ) from exc
    except mongo_errors.OperationFailure as exc:
        if exc.code in _TOO_LARGE_CODES:
            raise ThreadTooLargeError(
                thread_id or "?", MAX_DOCUMENT_BYTES + 1, MAX_DOCUMENT_BYTES
            ) from exc
        raise
