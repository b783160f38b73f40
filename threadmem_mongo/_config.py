"""Where the library finds its MongoDB: environment, ``configure()``, and the default store.

Nothing connects at import time. The default store is built on first use from, in order:
``configure(client=...)``, ``configure(uri=...)``, ``THREADMEM_MONGODB_URI``,
``MONGODB_URI``, and else the embedded local store (:mod:`threadmem_mongo._embedded`),
which needs the ``embedded`` extra. The database is ``configure(database=...)``, else
``THREADMEM_DATABASE``, else the URI's default database, else ``threadmem``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pymongo import MongoClient
from pymongo.uri_parser import parse_uri

from threadmem_mongo._document import COLLECTION_NAME
from threadmem_mongo._embedded import ensure_server
from threadmem_mongo._store import ThreadStore
from threadmem_mongo.errors import ConfigurationError

URI_ENV = "THREADMEM_MONGODB_URI"
FALLBACK_URI_ENV = "MONGODB_URI"
DATABASE_ENV = "THREADMEM_DATABASE"
TIMEOUT_ENV = "THREADMEM_TIMEOUT"
DEFAULT_DATABASE = "threadmem"
DEFAULT_TIMEOUT = 5.0
MONGOMOCK_SCHEME = "mongomock://"

_lock = threading.Lock()
_settings: dict[str, Any] = {}
_default: ThreadStore | None = None


def configure(
    uri: str | None = None,
    client: MongoClient[Any] | None = None,
    database: str | None = None,
    *,
    timeout: float | None = None,
) -> None:
    """Choose the MongoDB the library uses when no ``store=`` is passed.

    Call it once at start-up, before any thread is created. Calling it again replaces
    the configuration; a client the library created is closed, one you passed in is not.

    Args:
        uri: A MongoDB connection string, or ``mongomock://`` for an in-memory store
            (needs the ``mongomock`` package). Overrides ``THREADMEM_MONGODB_URI``.
        client: A ``MongoClient`` your app already has; its pool is used as it is.
        database: The database name; overrides ``THREADMEM_DATABASE``.
        timeout: Seconds to wait for the server before raising
            :class:`~threadmem_mongo.errors.StoreUnavailableError` (default 5, or
            ``THREADMEM_TIMEOUT``). Ignored when you pass ``client``.

    Raises:
        ConfigurationError: Both ``uri`` and ``client`` are given, or a value is invalid.
    """
    global _default
    if uri is not None and client is not None:
        raise ConfigurationError("pass either uri or client to configure(), not both")
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    with _lock:
        _close_owned()
        _settings.clear()
        _settings.update({"uri": uri, "client": client, "database": database, "timeout": timeout})
        _default = None


def reset() -> None:
    """Forget the configuration and close a client the library created."""
    global _default
    with _lock:
        _close_owned()
        _settings.clear()
        _default = None


def default_store() -> ThreadStore:
    """Return the store used when no ``store=`` is passed, building it on first use.

    Raises:
        ConfigurationError: The URI is invalid, or nothing is configured and the
            ``embedded`` extra is not installed.
        StoreUnavailableError: The embedded store did not start.
    """
    global _default
    store = _default
    if store is not None:
        return store
    with _lock:
        if _default is None:
            _default = _build_default()
        return _default


def _close_owned() -> None:
    owned = _settings.get("owned_client")
    if owned is not None:
        owned.close()


def _timeout() -> float:
    explicit = _settings.get("timeout")
    if explicit is not None:
        return float(explicit)
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def _build_default() -> ThreadStore:
    client: MongoClient[Any] | None = _settings.get("client")
    uri: str | None = _settings.get("uri")
    if client is None and uri is None:
        uri = os.environ.get(URI_ENV) or os.environ.get(FALLBACK_URI_ENV)
    uri_database: str | None = None
    if client is None:
        if not uri:
            uri = ensure_server().uri
        client, uri_database = client_from_uri(uri, _timeout())
        _settings["owned_client"] = client
    database = (
        _settings.get("database")
        or os.environ.get(DATABASE_ENV)
        or uri_database
        or DEFAULT_DATABASE
    )
    return ThreadStore(client[database][COLLECTION_NAME])


def client_from_uri(uri: str, timeout: float) -> tuple[MongoClient[Any], str | None]:
    """Return a new client for ``uri`` and the database the URI names, if any.

    Raises:
        ConfigurationError: The URI is invalid, or ``mongomock://`` without mongomock.
    """
    if uri.startswith(MONGOMOCK_SCHEME):
        try:
            import mongomock
        except ImportError as exc:
            raise ConfigurationError(
                "mongomock:// needs the mongomock package: pip install 'threadmem-mongo[mongomock]'"
            ) from exc
        database = uri[len(MONGOMOCK_SCHEME) :].strip("/") or None
        return mongomock.MongoClient(), database
    try:
        parsed = parse_uri(uri)
    except Exception as exc:  # pymongo raises InvalidURI, ValueError or ConfigurationError
        raise ConfigurationError(f"invalid MongoDB URI: {exc}") from exc
    millis = int(timeout * 1000)
    client: MongoClient[Any] = MongoClient(
        uri,
        serverSelectionTimeoutMS=millis,
        connectTimeoutMS=millis,
        connect=False,
    )
    return client, parsed.get("database")
