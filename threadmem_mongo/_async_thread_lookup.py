"""Loading and searching threads: ``get``, ``find`` and ``find_messages``, part of
``AsyncRoleThread``, and the message search behind ``RoleMessage.find``.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_thread_lookup.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from threadmem_mongo import _document, _updates, _validation
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._config import async_default_store
from threadmem_mongo._images import is_blob_ref
from threadmem_mongo._models import RoleMessage
from threadmem_mongo._state import check_last

if TYPE_CHECKING:
    from typing_extensions import Self

# Replaced by True in the generated synchronous twin.
_IS_SYNC = False


async def find_messages(
    *, store: AsyncThreadStore | None = None, **filters: object
) -> list[RoleMessage]:
    """Find messages across all threads; see ``AsyncRoleThread.find_messages``."""
    _updates.message_search_conditions(filters)  # checked before any store is built
    target = store if store is not None else async_default_store()
    found = []
    for doc in await target.search_messages(filters):
        message = _document.message_from_document(doc["messages"], doc["_id"])
        if any(is_blob_ref(image) for image in message.images):
            images = await target.resolve_images(message.images)
            message = message.model_copy(update={"images": images})
        found.append(message)
    return found


if _IS_SYNC:
    # ``RoleMessage.find`` is the sync API's message search. ``RoleMessage`` is a value
    # object that the stores below this module build, so it cannot import this module:
    # the search is handed to it here instead.
    RoleMessage._use_search(find_messages)


class AsyncThreadLookup:
    """The loading and search methods of ``AsyncRoleThread``."""

    if TYPE_CHECKING:
        # Provided by AsyncRoleThread, which this class is a part of.
        @classmethod
        def _from_document(
            cls, doc: Mapping[str, Any], store: AsyncThreadStore, window: int | None = None
        ) -> Self: ...

    # -- lookup --------------------------------------------------------------------------

    @classmethod
    async def get(
        cls, thread_id: str, *, last: int | None = None, store: AsyncThreadStore | None = None
    ) -> Self:
        """Load one thread by id, whole or with only its last ``last`` messages.

        A thread loaded with ``last=N`` costs the same to load whatever its length; it
        can be posted to and edited like a whole one, and ``history`` pages back.

        Access is not checked: any thread whose id is given is returned, whatever its
        ``owner_id``; see the Security page.

        Args:
            thread_id: The thread's id.
            last: Load only the last ``last`` messages (0: none); None loads them all.
            store: The store to read from; the configured default if omitted.

        Returns:
            The thread, at the version the store holds.

        Raises:
            ThreadNotFoundError: No such thread.
            InvalidInputError: ``thread_id`` is not a string, or ``last`` is not a whole
                number of at least 0.
        """
        _validation.check_id("thread_id", thread_id)
        check_last(last)
        target = store if store is not None else async_default_store()
        return cls._from_document(await target.load(thread_id, last=last), target, last)

    @classmethod
    async def find(
        cls,
        *,
        limit: int | None = None,
        newest_first: bool = False,
        after: str | None = None,
        last: int | None = None,
        store: AsyncThreadStore | None = None,
        **filters: object,
    ) -> list[Self]:
        """Find threads by equality, in creation order.

        Args:
            limit: At most this many threads.
            newest_first: Newest first instead of oldest first.
            after: Continue a listing after the thread whose ``cursor`` this is.
            last: Load only each thread's last ``last`` messages (0: none, for listings);
                None loads every message, those in overflow pages included, as ``get``
                does.
            store: The store to search; the configured default if omitted.
            **filters: Any of ``id``, ``owner_id``, ``public``, ``name`` with a scalar value,
                and ``metadata={key: scalar, ...}`` for threads whose metadata holds all of
                those entries. No filters: every thread.

        Returns:
            The matching threads, ordered by creation time (ties by id); pass the last
                one's ``cursor`` as ``after`` for the next page.

        Raises:
            InvalidInputError: An unknown field, a value that is not a scalar (query
                operators such as ``{"$ne": None}`` are refused), a bad cursor, or a
                ``limit`` or ``last`` that is not a whole number (``limit`` at least 1).
        """
        query = _updates.thread_search_filter(filters)
        if limit is not None:
            _validation.check_positive_int("limit", limit)
        _validation.check_bool("newest_first", newest_first)
        check_last(last)
        if after is not None:
            query.update(_updates.after_cursor(after, newest_first))
        target = store if store is not None else async_default_store()
        docs = await target.find(query, newest_first=newest_first, limit=limit, last=last)
        return [cls._from_document(doc, target, last) for doc in docs]

    @classmethod
    async def find_messages(
        cls, *, store: AsyncThreadStore | None = None, **filters: object
    ) -> list[RoleMessage]:
        """Find messages across all threads by equality on ``id``, ``role``,
        ``thread_id`` and ``text``; see ``RoleMessage.find``.

        Only the matching messages leave the server, never whole threads.

        Args:
            store: The store to search; the configured default if omitted.
            **filters: Field values to match exactly; each a string, number, bool or
                None. Private messages match too.

        Returns:
            The matching messages, ordered by their thread's creation time, then by
                position in the thread, with images resolved to data URIs.

        Raises:
            InvalidInputError: An unknown field, or a value that is not a scalar.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        return await find_messages(store=store, **filters)
