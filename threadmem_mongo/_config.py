"""Where the library finds its MongoDB: environment, ``configure()``, and the default store.

Nothing connects at import time. The default store is built on first use from, in order:
``configure(client=...)``, ``configure(uri=...)``, ``THREADMEM_MONGODB_URI``,
``MONGODB_URI``, and else the embedded local store (``threadmem_mongo._embedded``),
which needs the ``embedded`` extra. The database is ``configure(database=...)``, else
``THREADMEM_DATABASE``, else the URI's default database, else ``threadmem``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.uri_parser import parse_uri

from threadmem_mongo import _embedded, _loops, _pages
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._document import COLLECTION_NAME
from threadmem_mongo._driver import TIMEOUT_ENV
from threadmem_mongo._store import ThreadStore
from threadmem_mongo.errors import ConfigurationError, InvalidInputError

URI_ENV = "THREADMEM_MONGODB_URI"
FALLBACK_URI_ENV = "MONGODB_URI"
DATABASE_ENV = "THREADMEM_DATABASE"
DEFAULT_DATABASE = "threadmem"
DEFAULT_TIMEOUT = 5.0
MONGOMOCK_SCHEME = "mongomock://"

_lock = threading.Lock()
_settings: dict[str, Any] = {}
_default: ThreadStore | None = None
_async_settings: dict[str, Any] = {}
_async_default: AsyncThreadStore | None = None


def configure(
    uri: str | None = None,
    client: MongoClient[Any] | None = None,
    database: str | None = None,
    *,
    timeout: float | None = None,
    allow_local_images: bool = True,
    max_inline_messages: int | None = _pages.DEFAULT_MAX_INLINE_MESSAGES,
    max_inline_bytes: int = _pages.DEFAULT_MAX_INLINE_BYTES,
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
            ``threadmem_mongo.errors.StoreUnavailableError`` (default 5, or
            ``THREADMEM_TIMEOUT``). Ignored when you pass ``client``.
        allow_local_images: Whether ``post(images=...)`` may read local files named by a
            path. Turn it off in apps that pass client input to ``post()``: with it on, a
            client could have the server read any image file the process can read.
        max_inline_messages: How many messages a thread document holds before its
            oldest move to an overflow page (default 100); None keeps every message in
            the thread document, as far as MongoDB's 16 MB limit allows.
        max_inline_bytes: How large a thread document may grow before its oldest
            messages move to a page (default 1 MiB).

    Raises:
        ConfigurationError: Both ``uri`` and ``client`` are given, ``timeout`` is not
            a positive number, ``allow_local_images`` is not a bool, or an inline limit
            is not a whole number (at least 2 messages, 1 byte). A malformed URI is
            reported at first use.
    """
    global _default
    if uri is not None and client is not None:
        raise ConfigurationError("pass either uri or client to configure(), not both")
    _check_timeout(timeout)
    _check_flag("allow_local_images", allow_local_images)
    limits = _checked_limits(max_inline_messages, max_inline_bytes)
    with _lock:
        _close_owned()
        _settings.clear()
        _settings.update({"uri": uri, "client": client, "database": database, "timeout": timeout})
        _settings["allow_local_images"] = allow_local_images
        _settings["limits"] = limits
        _default = None


def _checked_limits(max_messages: object, max_bytes: object) -> _pages.Limits:
    try:
        return _pages.checked_limits(max_messages, max_bytes)
    except InvalidInputError as exc:
        raise ConfigurationError(str(exc)) from None


def _limit_options(limits: _pages.Limits | None) -> dict[str, Any]:
    """The ``ThreadStore`` options of configured limits (the defaults if none)."""
    if limits is None:
        return {}
    return {"max_inline_messages": limits.max_messages, "max_inline_bytes": limits.max_bytes}


def reset() -> None:
    """Forget both configurations; close a sync client the library created.

    An async client the library created is not closed here, since closing it needs the
    event loop it runs on: it is closed when that loop shuts down, or by
    ``await threadmem_mongo.aio.close()`` on it.
    """
    global _default, _async_default
    with _lock:
        _close_owned()
        _settings.clear()
        _default = None
        _async_settings.clear()
        _async_default = None


def configure_async(
    uri: str | None = None,
    client: AsyncMongoClient[Any] | None = None,
    database: str | None = None,
    *,
    timeout: float | None = None,
    allow_local_images: bool | None = None,
    max_inline_messages: int | None = _pages.DEFAULT_MAX_INLINE_MESSAGES,
    max_inline_bytes: int = _pages.DEFAULT_MAX_INLINE_BYTES,
) -> None:
    """Choose the MongoDB of ``threadmem_mongo.aio``; see ``configure``.

    Exported as ``threadmem_mongo.aio.configure``. Without ``uri`` or ``client``, the
    async API uses the ``uri`` given to ``configure``, then the same environment
    variables and embedded store as the sync API; without ``database``, the one given
    to ``configure``, then the same fallbacks. The sync ``client`` and ``timeout`` are
    not used. Unlike ``configure``, calling it again does not close an async client
    the library created: call ``await threadmem_mongo.aio.close()`` first.

    Args:
        uri: A MongoDB connection string (``mongomock://`` is refused: mongomock has
            no async client).
        client: An ``AsyncMongoClient`` your app already has; its pool is used as it is.
        database: The database name; overrides ``THREADMEM_DATABASE``.
        timeout: Seconds to wait for the server before raising
            ``threadmem_mongo.errors.StoreUnavailableError`` (default 5, or
            ``THREADMEM_TIMEOUT``). Ignored when you pass ``client``.
        allow_local_images: Whether ``post(images=...)`` may read local files named by a
            path; None (the default) follows ``configure``, where it is on unless turned
            off.
        max_inline_messages: As for ``configure``. The limits only decide when a
            thread's oldest messages move to a page; either API reads every thread
            whatever limits wrote it.
        max_inline_bytes: As for ``configure``.

    Raises:
        ConfigurationError: Both ``uri`` and ``client`` are given, ``uri`` is a
            ``mongomock://`` URI, ``timeout`` is not a positive number, or
            ``allow_local_images`` is neither a bool nor None.
    """
    global _async_default
    if uri is not None and client is not None:
        raise ConfigurationError("pass either uri or client to configure(), not both")
    _check_timeout(timeout)
    if allow_local_images is not None:
        _check_flag("allow_local_images", allow_local_images)
    limits = _checked_limits(max_inline_messages, max_inline_bytes)
    if uri is not None and uri.startswith(MONGOMOCK_SCHEME):
        raise ConfigurationError("mongomock has no async client; use a MongoDB URI")
    with _lock:
        _async_settings.clear()
        _async_settings.update({"uri": uri, "client": client, "database": database})
        _async_settings["timeout"] = timeout
        _async_settings["allow_local_images"] = allow_local_images
        _async_settings["limits"] = limits
        _async_default = None


def async_default_store() -> AsyncThreadStore:
    """Return the store of ``threadmem_mongo.aio`` when no ``store=`` is passed.

    Building it does not connect; with nothing configured it may start the embedded
    store, which blocks once, briefly.

    Returns:
        The store, built on first use and then reused until ``aio.configure`` or
            ``aio.close`` is called.

    Raises:
        ConfigurationError: The URI is invalid, or nothing is configured and the
            ``embedded`` extra is not installed.
    """
    global _async_default
    store = _async_default
    if store is not None and not _embedded_server_moved(_async_settings):
        return store
    with _lock:
        if _async_default is not None and _embedded_server_moved(_async_settings):
            # Closing needs the client's event loop: aio.close() closes it later.
            _async_settings.setdefault("retired_clients", []).append(
                _async_settings.pop("owned_client")
            )
            _async_default = None
        if _async_default is None:
            _async_default = _build_async_default()
        return _async_default


def _build_async_default() -> AsyncThreadStore:
    client: AsyncMongoClient[Any] | None = _async_settings.get("client")
    uri_database: str | None = None
    if client is None:
        uri = _async_settings.get("uri") or _settings.get("uri") or _env_uri()
        if uri is None or uri.startswith(MONGOMOCK_SCHEME):
            if uri is not None:
                raise ConfigurationError(
                    "the sync API is configured with mongomock://, which has no async "
                    "client; call threadmem_mongo.aio.configure(uri=...) with a MongoDB URI"
                )
            uri = _embedded_uri(_async_settings)
        uri_database = _uri_database(uri)
        client = AsyncMongoClient(
            uri, **timeout_options(uri, _timeout(_async_settings)), connect=False
        )
        _loops.own(client)
        _async_settings["owned_client"] = client
    database = (
        _async_settings.get("database")
        or _settings.get("database")
        or os.environ.get(DATABASE_ENV)
        or uri_database
        or DEFAULT_DATABASE
    )
    return AsyncThreadStore(
        client[database][COLLECTION_NAME], **_limit_options(_async_settings.get("limits"))
    )


async def close_async() -> None:
    """Close the async clients the library created for the default store on this event
    loop.

    Exported as ``threadmem_mongo.aio.close``. That is the client it built from the
    configured URI (unless it serves another event loop that is still open), and the
    copies made for this loop of that client or of a client you passed to
    ``aio.configure``, which itself is not closed. Copies made for other loops are
    closed when those loops shut down. The next use of the default store builds a new
    one.
    """
    global _async_default
    owned = _async_settings.pop("owned_client", None)
    retired = _async_settings.pop("retired_clients", [])
    given = _async_settings.get("client")
    _async_settings.pop("embedded", None)
    _async_default = None
    for client in [*retired, owned]:
        if client is not None:
            await _loops.close(client, template=True)
    if given is not None:
        await _loops.close(given, template=False)


def default_store() -> ThreadStore:
    """Return the store used when no ``store=`` is passed, building it on first use.

    Returns:
        The store, reused until ``configure`` is called again.

    Raises:
        ConfigurationError: The URI is invalid, or nothing is configured and the
            ``embedded`` extra is not installed.
        StoreUnavailableError: The embedded store did not start.
    """
    global _default
    store = _default
    if store is not None and not _embedded_server_moved(_settings):
        return store
    with _lock:
        if _default is not None and _embedded_server_moved(_settings):
            # Objects still holding the old store get a clear error to load them again.
            _close_owned()
            _default = None
        if _default is None:
            _default = _build_default()
        return _default


def _close_owned() -> None:
    owned = _settings.pop("owned_client", None)
    _settings.pop("embedded", None)
    if owned is not None:
        owned.close()


def _embedded_uri(settings: dict[str, Any]) -> str:
    """Start or find the embedded server; remember where, to notice when it moves."""
    folder = _embedded.home()
    uri = _embedded.ensure_server(folder).uri
    settings["embedded"] = (folder, uri)
    return uri


def _embedded_server_moved(settings: dict[str, Any]) -> bool:
    """Return whether the embedded server a default store uses was replaced by one on
    another address (stopped and started again by another process, say)."""
    used = settings.get("embedded")
    if used is None:
        return False
    folder, uri = used
    recorded = _embedded.recorded_uri(folder)
    return recorded is not None and recorded != uri


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")


def local_images_allowed(sync: bool) -> bool:
    """Return whether ``post()`` of the sync (or async) API may read local image files.

    The async API follows ``configure`` unless ``aio.configure`` set it.
    """
    if not sync:
        chosen = _async_settings.get("allow_local_images")
        if chosen is not None:
            return bool(chosen)
    return bool(_settings.get("allow_local_images", True))


def _env_uri() -> str | None:
    return os.environ.get(URI_ENV) or os.environ.get(FALLBACK_URI_ENV) or None


def _parsed_uri(uri: str) -> dict[str, Any]:
    try:
        return dict(parse_uri(uri))
    except (ValueError, PyMongoConfigurationError) as exc:  # InvalidURI is the latter
        raise ConfigurationError(f"invalid MongoDB URI: {exc}") from exc


def _uri_database(uri: str) -> str | None:
    database: str | None = _parsed_uri(uri).get("database")
    return database


def _timeout(settings: dict[str, Any]) -> float:
    explicit = settings.get("timeout")
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
        uri = _env_uri()
    uri_database: str | None = None
    if client is None:
        if not uri:
            uri = _embedded_uri(_settings)
        client, uri_database = client_from_uri(uri, _timeout(_settings))
        _settings["owned_client"] = client
    database = (
        _settings.get("database")
        or os.environ.get(DATABASE_ENV)
        or uri_database
        or DEFAULT_DATABASE
    )
    return ThreadStore(client[database][COLLECTION_NAME], **_limit_options(_settings.get("limits")))


def client_from_uri(uri: str, timeout: float) -> tuple[MongoClient[Any], str | None]:
    """Return a new client for ``uri`` and the database the URI names, if any.

    The client does not connect until first used.

    Args:
        uri: A MongoDB connection string, or ``mongomock://[database]``.
        timeout: Seconds for server selection and connecting (ignored for mongomock).

    Returns:
        ``(client, database name or None)``.

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
    database = _uri_database(uri)
    client: MongoClient[Any] = MongoClient(uri, **timeout_options(uri, timeout), connect=False)
    return client, database


#: The client options ``timeout`` sets, each in milliseconds. ``timeoutMS`` bounds a whole
#: operation, retries included, so a call to a server that accepted the connection but
#: never answers (hung, or stopped) fails after ``timeout`` seconds too.
TIMEOUT_OPTIONS = ("timeoutMS", "serverSelectionTimeoutMS", "connectTimeoutMS")


def timeout_options(uri: str, timeout: float) -> dict[str, Any]:
    """Return the client options that make operations on ``uri`` give up after ``timeout``
    seconds; an option the URI sets itself is left to the URI.

    Args:
        uri: The MongoDB connection string the client is built from.
        timeout: Seconds.

    Returns:
        Keyword arguments for ``MongoClient`` and ``AsyncMongoClient``.

    Raises:
        ConfigurationError: The URI is invalid.
    """
    given = {name.lower() for name in _parsed_uri(uri).get("options", {})}
    millis = max(1, int(timeout * 1000))
    return {name: millis for name in TIMEOUT_OPTIONS if name.lower() not in given}
