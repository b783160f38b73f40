"""What the database behind a collection can do, decided in one place.

The stores run on real MongoDB servers and on mongomock, the in-memory stand-in for
tests. mongomock has no change streams and no ``$indexOfArray`` aggregation operator,
and does not enforce unique indexes on array fields, so the stores ask here before
relying on any of them, rather than probing types or catching errors themselves.

A collection counts as mongomock's when its class comes from the ``mongomock`` package,
or when it is an adapter over such a collection that exposes the collection it wraps as
``__wrapped__`` (the attribute ``functools.wraps`` and ``inspect.unwrap`` use for
wrappers). That is how an asyncio adapter over mongomock, which has no async client of
its own, gets the same treatment as a plain mongomock collection.
"""

from __future__ import annotations

#: Wrappers are followed at most this deep, so a wrapper that wraps itself cannot hang.
MAX_WRAPPER_DEPTH = 16

_MONGOMOCK_PACKAGE = "mongomock"


def innermost(collection: object) -> object:
    """Return the collection at the bottom of a chain of ``__wrapped__`` adapters.

    pymongo and mongomock collections turn unknown public attributes into
    sub-collections but raise ``AttributeError`` for names starting with ``_``, so
    looking up ``__wrapped__`` on a plain collection finds nothing.

    Args:
        collection: A collection, or an adapter over one.

    Returns:
        The wrapped collection, or ``collection`` itself when it wraps nothing.
    """
    current = collection
    for _ in range(MAX_WRAPPER_DEPTH):
        inner = getattr(current, "__wrapped__", None)
        if inner is None or inner is current:
            break
        current = inner
    return current


def is_mongomock(collection: object) -> bool:
    """Return whether ``collection`` is mongomock's, directly or through adapters.

    Args:
        collection: A collection, or an adapter exposing the one it wraps as
            ``__wrapped__``.

    Returns:
        True when the innermost collection's class comes from the ``mongomock`` package.
    """
    module = type(innermost(collection)).__module__
    return module.split(".", 1)[0] == _MONGOMOCK_PACKAGE


def has_change_streams(collection: object) -> bool:
    """Return whether ``watch()`` may be tried on ``collection``.

    True does not promise the server offers change streams (a standalone mongod
    refuses them when asked); False means asking is pointless.

    Args:
        collection: A collection, or an adapter over one.

    Returns:
        False for mongomock, True otherwise.
    """
    return not is_mongomock(collection)


def has_index_of_array(collection: object) -> bool:
    """Return whether aggregations on ``collection`` may use ``$indexOfArray``.

    Args:
        collection: A collection, or an adapter over one.

    Returns:
        False for mongomock, True otherwise.
    """
    return not is_mongomock(collection)


def enforces_unique_array_keys(collection: object) -> bool:
    """Return whether a unique index on an array field is enforced across documents.

    MongoDB enforces a unique ``messages.id`` index for every document a write touches;
    mongomock does not enforce unique indexes on array fields at all, so a store on it
    checks message ids with a read before writing (one process, no race to lose).

    Args:
        collection: A collection, or an adapter over one.

    Returns:
        False for mongomock, True otherwise.
    """
    return not is_mongomock(collection)


def builds_index_models(collection: object) -> bool:
    """Return whether ``create_indexes`` on ``collection`` keeps every option of each
    ``IndexModel``.

    mongomock's ``create_indexes`` drops options such as ``partialFilterExpression`` and
    records the keys in a form ``index_information`` does not give back as a list, so a
    store on it creates each index with ``create_index`` instead.

    Args:
        collection: A collection, or an adapter over one.

    Returns:
        False for mongomock, True otherwise.
    """
    return not is_mongomock(collection)
