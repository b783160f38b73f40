"""Live changes of a thread: ``watch`` and ``watch_all``, part of ``AsyncRoleThread``.

``AsyncRoleThread`` inherits these methods from ``AsyncThreadWatch``; they read MongoDB
change streams through the store and turn each change into ``ThreadEvent`` values
(``threadmem_mongo._events``).

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_thread_watch.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from threadmem_mongo import (
    _document,
    _validation,
)
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._config import async_default_store
from threadmem_mongo._events import (
    ThreadEvent,
    events_from_change,
    owner_pipeline,
    thread_pipeline,
)
from threadmem_mongo._models import (
    RoleMessage,
)
from threadmem_mongo._state import check_resume_token


class AsyncThreadWatch:
    """The live-change methods of ``AsyncRoleThread``."""

    if TYPE_CHECKING:
        # Provided by AsyncRoleThread, which this class is a part of.
        _store: AsyncThreadStore

        @property
        def id(self) -> str: ...

        async def _resolve(self, message: RoleMessage) -> RoleMessage: ...

    # -- live changes --------------------------------------------------------------------

    async def watch(
        self,
        *,
        after_message: str | None = None,
        resume_after: Mapping[str, Any] | None = None,
        idle_timeout: float | None = None,
        reconnect_timeout: float = 30.0,
    ) -> AsyncIterator[ThreadEvent]:
        """Yield what happens to this thread, from any process, as it happens.

        New messages arrive as ``message_added`` events carrying the ``RoleMessage``;
        edits (``message_updated``, with the edited message), deletions
        (``message_deleted``), field and role changes (``thread_updated``), and the
        thread's deletion (``thread_deleted``) too. Uses a MongoDB change stream: a
        replica set (one node is enough) or a sharded cluster is needed. The stream is
        reopened after a dropped connection or a server restart without missing or
        repeating events. Stopping the loop over it (``break``, an exception, task
        cancellation) closes the stream.

        This object's own state is not changed by the events; call ``refresh``.

        Args:
            after_message: First yield the messages posted after this message id, then
                continue live, so a restarting bot picks up where it left off.
            resume_after: The ``resume_token`` of the last event handled, to continue
                exactly after it.
            idle_timeout: Stop after this many seconds without an event (default: never).
            reconnect_timeout: Give up after this many seconds of failed reconnection.

        Yields:
            One ``ThreadEvent`` per change, in order, with messages' GridFS images
                resolved to data URIs. The replayed ``after_message`` backlog comes as
                ``message_added`` events with no ``version`` or ``resume_token``.

        Raises:
            ConfigurationError: The server has no change streams.
            MessageNotFoundError: ``after_message`` is not in the thread.
            ThreadNotFoundError: ``after_message`` is given and the thread does not exist.
            StoreUnavailableError: The server stayed unreachable.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        _validation.check_optional_id("after_message", after_message)
        check_resume_token(resume_after)
        changes = self._store.changes(
            thread_pipeline(self.id),
            resume_after=resume_after,
            idle_timeout=idle_timeout,
            reconnect_timeout=reconnect_timeout,
        )
        async with contextlib.aclosing(changes):
            seen_version = -1
            async for change in changes:
                if change is None:
                    # The stream is open: nothing from now on can be missed, so read what
                    # came after the bot's last message and report it first.
                    if after_message is not None:
                        version, backlog = await self._store.messages_after(self.id, after_message)
                        seen_version = version
                        for doc in backlog:
                            message = await self._resolve(
                                _document.message_from_document(doc, self.id)
                            )
                            yield ThreadEvent("message_added", self.id, None, message, message.id)
                    continue
                for event in events_from_change(change):
                    if event.version is not None and event.version <= seen_version:
                        continue
                    yield await self._completed(event)

    @classmethod
    async def watch_all(
        cls,
        *,
        owner_id: str | None = None,
        resume_after: Mapping[str, Any] | None = None,
        idle_timeout: float | None = None,
        reconnect_timeout: float = 30.0,
        store: AsyncThreadStore | None = None,
    ) -> AsyncIterator[ThreadEvent]:
        """Yield what happens to every thread of ``owner_id`` (or to every thread).

        For a bot that serves many threads; events are those of ``watch``. Deletions
        are reported only when no ``owner_id`` is given, since a deleted document no
        longer says whose it was.

        Args:
            owner_id: Only threads of this owner; None for every thread in the store.
            resume_after: The ``resume_token`` of the last event handled, to continue
                exactly after it.
            idle_timeout: Stop after this many seconds without an event (default: never).
            reconnect_timeout: Give up after this many seconds of failed reconnection.
            store: The store to watch; the configured default if omitted.

        Yields:
            One ``ThreadEvent`` per change, in order, across threads, with messages'
                GridFS images resolved to data URIs.

        Raises:
            ConfigurationError: The server has no change streams.
            StoreUnavailableError: The server stayed unreachable.
            InvalidInputError: ``owner_id`` is not a scalar.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        if owner_id is not None:
            _validation.check_filter_value("owner_id", owner_id)
        check_resume_token(resume_after)
        target = store if store is not None else async_default_store()
        changes = target.changes(
            owner_pipeline(owner_id),
            resume_after=resume_after,
            full_document="updateLookup",
            idle_timeout=idle_timeout,
            reconnect_timeout=reconnect_timeout,
        )
        async with contextlib.aclosing(changes):
            async for change in changes:
                if change is None:
                    continue
                for event in events_from_change(change):
                    if event.kind == "message_added" and event.message is not None:
                        images = await target.resolve_images(event.message.images)
                        message = event.message.model_copy(update={"images": images})
                        event = dataclasses.replace(event, message=message)
                    elif event.kind == "message_updated" and event.message_id is not None:
                        doc = await target.message(event.thread_id, event.message_id)
                        if doc is not None:
                            message = _document.message_from_document(doc, event.thread_id)
                            images = await target.resolve_images(message.images)
                            message = message.model_copy(update={"images": images})
                            event = dataclasses.replace(event, message=message)
                    yield event

    async def _completed(self, event: ThreadEvent) -> ThreadEvent:
        """Return ``event`` with its message read and its images resolved."""
        if event.kind == "message_added" and event.message is not None:
            return dataclasses.replace(event, message=await self._resolve(event.message))
        if event.kind == "message_updated" and event.message_id is not None:
            doc = await self._store.message(self.id, event.message_id)
            if doc is not None:
                message = await self._resolve(_document.message_from_document(doc, self.id))
                return dataclasses.replace(event, message=message)
        return event
