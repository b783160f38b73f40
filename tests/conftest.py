"""Backends for the suite: mongomock, a SecantusDB server over the wire, and optionally a
real MongoDB named by ``THREADMEM_TEST_MONGODB_URI``.

``store`` gives each test a fresh database on one backend (the ``backend`` fixture is
parametrized over all of them) and configures the library's default store to use it, so
APIs called without ``store=`` land in the same place.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest
from pymongo import MongoClient
from pymongo.collection import Collection
from servers import SecantusServer

import threadmem_mongo
from threadmem_mongo import ThreadStore, _config

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


# -- the SecantusDB server -------------------------------------------------------------


@pytest.fixture(scope="session")
def wire_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start an in-memory SecantusDB server for the session and yield its URI."""
    server = SecantusServer(
        tmp_path_factory.mktemp("secantus"),
        ":memory:",
        "--enable-test-commands",
        start_timeout=START_TIMEOUT,
        attempts=START_ATTEMPTS,
    )
    uri = server.start()
    try:
        yield uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def wire_client(wire_uri: str) -> Iterator[MongoClient[Document]]:
    """One client for the SecantusDB server, shared by the session."""
    client: MongoClient[Document] = MongoClient(wire_uri, serverSelectionTimeoutMS=5000)
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
def store_factory() -> Iterator[Callable[[Any], ThreadStore]]:
    """Build stores on fresh databases of any client; drops those databases afterwards."""
    made: list[tuple[Any, str]] = []

    def make(client: Any) -> ThreadStore:
        name = f"tm_test_{uuid.uuid4().hex}"
        made.append((client, name))
        return ThreadStore(client[name]["threads"])

    yield make
    for client, name in made:
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
