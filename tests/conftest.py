"""Backends for the suite: mongomock, a SecantusDB server over the wire, and optionally a
real MongoDB named by ``THREADMEM_TEST_MONGODB_URI``.

``store`` gives each test a fresh database on one backend (the ``backend`` fixture is
parametrized over all of them) and configures the library's default store to use it, so
APIs called without ``store=`` land in the same place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

import threadmem_mongo
from threadmem_mongo import ThreadStore, _config

EXTERNAL_URI_ENV = "THREADMEM_TEST_MONGODB_URI"
HOME_ENV = "THREADMEM_HOME"
SERVER_EXECUTABLE = "secantusd-py"
START_TIMEOUT = 20.0
START_ATTEMPTS = 3
PR_SET_PDEATHSIG = 1

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


def _server_executable() -> str:
    beside = Path(sys.executable).parent / SERVER_EXECUTABLE
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(SERVER_EXECUTABLE)
    if found is None:
        pytest.fail(
            f"{SERVER_EXECUTABLE} not found beside {sys.executable} or on PATH: "
            "install the test extra (pip install -e '.[test]')"
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_hello(uri: str) -> bool:
    client: MongoClient[Document] = MongoClient(
        uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250
    )
    try:
        client.admin.command("hello")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _die_with_parent() -> None:
    """In the server process (Linux): get SIGTERM when pytest dies, even if it is killed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # the fixture's own teardown still stops the server


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="session")
def wire_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start an in-memory SecantusDB server for the session and yield its URI."""
    executable = _server_executable()
    workdir = tmp_path_factory.mktemp("secantus")
    log_path = workdir / "server.log"
    for _attempt in range(START_ATTEMPTS):
        port = _free_port()
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [
                    executable,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--storage-path",
                    ":memory:",
                    "--enable-test-commands",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,  # keep it from picking up a secantusd.toml of the repo
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _answers_hello(uri):
                break
            time.sleep(0.05)
        else:
            _stop(process)
            continue  # exited (port taken?) or too slow: try again on another port
        try:
            yield uri
        finally:
            _stop(process)
        return
    tail = log_path.read_text(errors="replace")[-4000:]
    pytest.fail(f"{SERVER_EXECUTABLE} did not answer hello within {START_TIMEOUT}s:\n{tail}")


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
