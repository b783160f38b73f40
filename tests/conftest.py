"""Backends for the suite: mongomock, a SecantusDB server over the wire, and optionally a
real MongoDB named by ``THREADMEM_TEST_MONGODB_URI``.

``store`` gives each test a fresh database on one backend (the ``backend`` fixture is
parametrized over all of them) and configures the library's default store to use it, so
APIs called without ``store=`` land in the same place.
"""

from __future__ import annotations

import gc
import os
import uuid
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest
import pytest_asyncio
from asyncmock import AsyncMockClient
from pymongo import AsyncMongoClient, MongoClient
from pymongo.collection import Collection
from servers import SecantusServer

import threadmem_mongo
import threadmem_mongo.aio
from threadmem_mongo import ThreadStore, _config
from threadmem_mongo.aio import AsyncThreadStore

EXTERNAL_URI_ENV = "THREADMEM_TEST_MONGODB_URI"
HOME_ENV = "THREADMEM_HOME"
START_TIMEOUT = 20.0
START_ATTEMPTS = 3

Document = dict[str, Any]


def _backend_params() -> list[Any]:
    params = [
        pytest.param("mongomock", id="mongomock"),
        pytest.param("wire", id="wire", marks=pytest.mark.wire),
    ]
    if os.environ.get(EXTERNAL_URI_ENV):
        params.append(pytest.param("mongodb", id="mongodb", marks=pytest.mark.wire))
    return params


BACKENDS = _backend_params()


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test marked ``@pytest.mark.backends("wire", "mongodb", reason=...)`` only on
    those backends, for behaviour that needs what mongomock lacks (change streams,
    ``$indexOfArray``) or only mongomock shows. The reason is required, so no lane is
    left out without one."""
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None or "backend" not in metafunc.fixturenames:
        return
    if not marker.kwargs.get("reason"):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: backends() needs reason=...")
    unknown = set(marker.args) - {"mongomock", "wire", "mongodb"}
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown backends {unknown}")
    chosen = [param for param in BACKENDS if param.values[0] in marker.args]
    # A parametrize mark on the test takes precedence over the backend fixture's params.
    metafunc.definition.add_marker(pytest.mark.parametrize("backend", chosen, indirect=True))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many workers ``-n auto`` (set in pyproject.toml) starts: one per CPU (up to
    ``--maxprocesses``) for the suite or a folder of it, each with its own SecantusDB
    server; none for named test files or tests, or with ``-s``, where starting workers
    costs more than it saves or would hide the output."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    named = any("::" in arg or Path(arg.split("::")[0]).is_file() for arg in config.args)
    if named or config.option.capture == "no":
        return 0
    return None


# -- the SecantusDB server -------------------------------------------------------------


@pytest.fixture(scope="session")
def wire_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start an in-memory SecantusDB server for the session and yield its URI."""
    workdir = tmp_path_factory.mktemp("secantus")
    server = SecantusServer(
        workdir,
        ":memory:",
        "--enable-test-commands",
        start_timeout=START_TIMEOUT,
        attempts=START_ATTEMPTS,
    )
    with pytest.MonkeyPatch.context() as patch:
        # The in-memory store keeps its scratch files in a temporary folder: in the
        # session's own, so that killing the server (a clean stop takes seconds) leaves
        # nothing behind that pytest does not remove with its temporary folders.
        patch.setenv("TMPDIR", str(workdir))
        uri = server.start()
    try:
        yield uri
    finally:
        server.kill()


#: Clients of the session's in-memory SecantusDB server. Test databases there are left in
#: place rather than dropped after each test: the server is killed at the end of the
#: session, and dropping them cost seconds of a run.
_THROWAWAY_CLIENTS: weakref.WeakSet[Any] = weakref.WeakSet()


def _on_throwaway_server(client: Any) -> bool:
    """Whether ``client`` is one of the session server's own (not mongomock, not
    ``THREADMEM_TEST_MONGODB_URI``)."""
    return client in _THROWAWAY_CLIENTS


@pytest.fixture(scope="session")
def wire_client(wire_uri: str) -> Iterator[MongoClient[Document]]:
    """One client for the SecantusDB server, shared by the session."""
    client: MongoClient[Document] = MongoClient(wire_uri, serverSelectionTimeoutMS=5000)
    _THROWAWAY_CLIENTS.add(client)
    yield client
    client.close()


@pytest.fixture(scope="session")
def external_uri() -> str:
    uri = os.environ.get(EXTERNAL_URI_ENV)
    if not uri:
        pytest.skip(f"{EXTERNAL_URI_ENV} is not set")
    return uri


@pytest.fixture(scope="session")
def external_client(external_uri: str) -> Iterator[MongoClient[Document]]:
    """One client for the MongoDB named by THREADMEM_TEST_MONGODB_URI, shared by the session."""
    client: MongoClient[Document] = MongoClient(external_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def _embedded_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the embedded default store at a temporary folder, and stop whatever server a
    test left there, so the suite never touches ~/.threadmem or leaves a server running."""
    folder = tmp_path_factory.mktemp("threadmem-home")
    previous = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = previous
        try:
            from threadmem_mongo import _embedded
        except ImportError:
            pass
        else:
            _embedded.stop_server(folder)


# -- per-test stores ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_configuration() -> Iterator[None]:
    """Every test starts and ends with no library configuration."""
    _config.reset()
    yield
    _config.reset()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Exempt what collection built (modules, classes, the agent frameworks: over half a
    million objects) from later garbage collections, so that the per-test collection of
    ``_collect_async_client_sockets`` scans only what the tests made."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_async_client_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used pymongo's async client, collect its leftover sockets here.

    pymongo 4.20's async monitor leaves a half-made socket open when its client closes
    while the monitor is still connecting (it closes it only on OSError and
    TimeoutError, not on cancellation); the garbage collector then warns in whichever
    test runs next. Collecting after the test that made it keeps that warning, and only
    that one, out of unrelated tests.
    """
    yield
    callspec = getattr(request.node, "callspec", None)
    # On mongomock, async_client is tests/asyncmock.py's adapter: no pymongo monitor, and
    # a full collection after each of those tests would cost more than the test.
    on_mongomock = callspec is not None and callspec.params.get("backend") == "mongomock"
    uses_async = ("async_client" in request.fixturenames and not on_mongomock) or hasattr(
        request.module, "AsyncMongoClient"
    )
    if uses_async:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "unclosed <socket", ResourceWarning)
            gc.collect()
        # What outlived the test (session fixtures, caches) is left out of the next
        # collection, which then scans only what the next test made.
        gc.freeze()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name: ``mongomock``, ``wire`` or ``mongodb``."""
    return str(request.param)


@pytest.fixture
def db_client(backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A client of the backend: a new mongomock client, or the session's wire client."""
    if backend == "mongomock":
        client = mongomock.MongoClient()
        yield client
        client.close()
    elif backend == "wire":
        yield request.getfixturevalue("wire_client")
    else:
        yield request.getfixturevalue("external_client")


@pytest.fixture
def store_factory() -> Iterator[Callable[..., ThreadStore]]:
    """Build stores on fresh databases of any client, with any ``ThreadStore`` options;
    drops those databases afterwards."""
    made: list[tuple[Any, str]] = []

    def make(client: Any, **options: Any) -> ThreadStore:
        name = f"tm_test_{uuid.uuid4().hex}"
        made.append((client, name))
        return ThreadStore(client[name]["threads"], **options)

    yield make
    for client, name in made:
        if not _on_throwaway_server(client):
            client.drop_database(name)


@pytest.fixture
def store(db_client: Any, store_factory: Callable[[Any], ThreadStore]) -> Iterator[ThreadStore]:
    """A store on a fresh database of the backend, also configured as the default store."""
    made = store_factory(db_client)
    threadmem_mongo.configure(client=db_client, database=made.collection.database.name)
    yield made
    _config.reset()


@pytest.fixture
def raw(store: ThreadStore) -> Collection[Document]:
    """The collection behind ``store``, for asserting on stored documents."""
    return store.collection


@pytest.fixture
def wire_store(
    wire_client: MongoClient[Document], store_factory: Callable[[Any], ThreadStore]
) -> Iterator[ThreadStore]:
    """A store on a fresh database of the SecantusDB server, also the default store."""
    made = store_factory(wire_client)
    threadmem_mongo.configure(client=wire_client, database=made.collection.database.name)
    yield made
    _config.reset()


# -- the async API on every backend ------------------------------------------------------


@pytest_asyncio.fixture
async def async_client(
    backend: str, db_client: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """An async client of the backend, for the test's event loop.

    On mongomock, ``tests/asyncmock.py``'s adapter over ``db_client`` (mongomock has no
    async client), so the sync and async views share one in-memory store; otherwise a new
    ``AsyncMongoClient`` of the same server as ``db_client``, closed afterwards.
    """
    if backend == "mongomock":
        yield AsyncMockClient(db_client)
        return
    uri = request.getfixturevalue("wire_uri" if backend == "wire" else "external_uri")
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    if backend == "wire":
        _THROWAWAY_CLIENTS.add(client)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def async_store(async_client: Any, db_client: Any) -> AsyncIterator[AsyncThreadStore]:
    """An async store on a fresh database of the backend (dropped afterwards).

    It is the default store of ``threadmem_mongo.aio``, and the sync default store
    (``threadmem_mongo.configure``) is set to the same database through ``db_client``, so
    calls without ``store=`` in either API read and write the same threads.
    """
    name = f"tm_async_{uuid.uuid4().hex}"
    threadmem_mongo.aio.configure(client=async_client, database=name)
    threadmem_mongo.configure(client=db_client, database=name)
    try:
        yield _config.async_default_store()
    finally:
        _config.reset()
        if not _on_throwaway_server(async_client):
            await async_client.drop_database(name)


@pytest.fixture
def async_raw(async_store: AsyncThreadStore, db_client: Any) -> Collection[Document]:
    """The collection behind ``async_store`` through the sync client, for asserting on
    stored documents."""
    return db_client[async_store.collection.database.name][async_store.collection.name]
