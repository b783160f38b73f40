"""Change streams that survive dropped connections and restarting servers.

``follow`` opens a MongoDB change stream on a collection and keeps it open: when the
connection drops or the server restarts, it reopens the stream after the last change it
yielded (its resume token), so nothing is missed or repeated, until reopening has failed
for ``reconnect_timeout`` seconds. ``AsyncThreadStore.changes`` is its public face, and
``watch()`` turns what it yields into thread events (``threadmem_mongo._events``).

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_changes.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import pymongo
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, OperationFailure

from threadmem_mongo._cancellation import raise_if_cancelling
from threadmem_mongo._capabilities import has_change_streams
from threadmem_mongo._driver import translated, translated_errors
from threadmem_mongo.errors import ConfigurationError, StoreUnavailableError

Document = dict[str, Any]

#: Server codes meaning "change streams are not available here" (standalone mongod).
NO_CHANGE_STREAM_CODES = frozenset({40573, 40324})

#: Seconds between attempts to reopen a change stream.
RECONNECT_PAUSE = 0.25

_IS_SYNC = False


def _wait_or_raise(exc: Exception, failing_since: float, limit: float) -> float:
    """Return ``failing_since``, when failures began; raise once they have lasted so long
    that another attempt after ``RECONNECT_PAUSE`` would end past ``limit`` seconds."""
    if isinstance(exc, OperationFailure) and exc.code in NO_CHANGE_STREAM_CODES:
        raise ConfigurationError(
            "the server does not offer change streams: watch() needs MongoDB running as a "
            "replica set (a single node is enough) or a sharded cluster"
        ) from exc
    if isinstance(exc, OperationFailure) and not exc.has_error_label("ResumableChangeStreamError"):
        raise translated(exc) from exc
    if time.monotonic() - failing_since + RECONNECT_PAUSE >= limit:
        raise StoreUnavailableError(
            f"the change stream could not be reopened for {limit:.0f} s: {type(exc).__name__}"
        ) from exc
    return failing_since


async def follow(
    collection: AsyncCollection[Document],
    pipeline: Sequence[Mapping[str, Any]],
    *,
    resume_after: Mapping[str, Any] | None = None,
    full_document: str | None = None,
    idle_timeout: float | None = None,
    reconnect_timeout: float = 30.0,
) -> AsyncGenerator[Document | None, None]:
    """Yield the changes of ``collection``; first ``None`` once the stream is open.

    The contract, arguments and errors are those of ``AsyncThreadStore.changes``, which
    calls this.
    """
    token = resume_after
    opened = False
    wait_ms = 1000 if idle_timeout is None else max(10, min(1000, int(idle_timeout * 1000)))
    last_event = time.monotonic()
    failing_since: float | None = None
    # Errors the loop does not resume from (a closed client, say) leave as the library's.
    with translated_errors():
        while True:
            attempt = time.monotonic()
            began = attempt if failing_since is None else failing_since
            try:
                # Each attempt gets only what is left of reconnect_timeout, so a server that
                # accepts connections but never answers cannot hold it longer.
                with pymongo.timeout(max(0.001, reconnect_timeout - (attempt - began))):
                    stream = await _open_stream(collection, pipeline, token, full_document, wait_ms)
            except (ConnectionFailure, OperationFailure) as exc:
                failing_since = _wait_or_raise(exc, began, reconnect_timeout)
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            failing_since = None
            async with stream:
                if not opened:
                    # Inside the with: a consumer that stops here still closes the cursor.
                    opened = True
                    yield None
                while True:
                    asked = time.monotonic()
                    try:
                        # A live server answers within wait_ms, so silence past that is
                        # already failure time.
                        with pymongo.timeout(wait_ms / 1000 + reconnect_timeout):
                            change = await stream.try_next()
                        if not _IS_SYNC:
                            raise_if_cancelling()
                    except (ConnectionFailure, OperationFailure) as exc:
                        began = min(time.monotonic(), asked + wait_ms / 1000)
                        failing_since = _wait_or_raise(exc, began, reconnect_timeout)
                        break
                    token = stream.resume_token or token
                    if change is not None:
                        last_event = time.monotonic()
                        yield change
                    elif idle_timeout is not None and time.monotonic() - last_event > idle_timeout:
                        return
            await asyncio.sleep(RECONNECT_PAUSE)


async def _open_stream(
    collection: AsyncCollection[Document],
    pipeline: Sequence[Mapping[str, Any]],
    token: Mapping[str, Any] | None,
    full_document: str | None,
    wait_ms: int,
) -> AsyncChangeStream[Document]:
    if not has_change_streams(collection):
        raise ConfigurationError(
            "this store (mongomock) has no change streams; watch() needs MongoDB running "
            "as a replica set or sharded cluster"
        )
    # A standalone server refuses here; _wait_or_raise turns that into the error.
    return await collection.watch(
        [dict(stage) for stage in pipeline],
        resume_after=token,
        full_document=full_document,
        max_await_time_ms=wait_ms,
    )
