"""Where the library finds its MongoDB: configure(), environment variables, failures."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest
from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, InvalidOperation, ServerSelectionTimeoutError

import threadmem_mongo
from threadmem_mongo import (
    ConfigurationError,
    RoleMessage,
    RoleThread,
    StoreUnavailableError,
    ThreadStore,
    _config,
)

ENV_VARS = ("THREADMEM_MONGODB_URI", "MONGODB_URI", "THREADMEM_DATABASE", "THREADMEM_TIMEOUT")
DEAD_URI = "mongodb://127.0.0.1:1/?directConnection=true"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_embedded_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Make the embedded fallback store, where the package has one, unavailable."""
    monkeypatch.setenv("THREADMEM_HOME", str(tmp_path))
    if importlib.util.find_spec("threadmem_mongo._embedded") is not None:
        monkeypatch.setattr("threadmem_mongo._embedded.find_executable", lambda: None)


@pytest.fixture
def wire_database(wire_client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    name = f"tm_test_{uuid.uuid4().hex}"
    yield name
    wire_client.drop_database(name)


def default_database() -> str:
    """Return the database name of the store the library uses without ``store=``."""
    return RoleThread().store.collection.database.name


# -- configure() ---------------------------------------------------------------------------------


def test_configure_client_is_used_without_store_argument() -> None:
    client = mongomock.MongoClient()
    threadmem_mongo.configure(client=client, database="appdb")
    thread = RoleThread(name="x")
    assert client["appdb"]["threads"].find_one({"_id": thread.id})["name"] == "x"
    assert [t.id for t in RoleThread.find(name="x")] == [thread.id]
    assert RoleMessage.find() == []


def test_configure_mongomock_uri_gives_an_in_memory_store() -> None:
    threadmem_mongo.configure(uri="mongomock://")
    thread = RoleThread()
    thread.post("user", "hi")
    assert RoleThread.get(thread.id).messages() == thread.messages()
    assert thread.store.collection.database.name == "threadmem"
    assert thread.store.collection.name == "threads"


def test_mongomock_uri_names_the_database() -> None:
    threadmem_mongo.configure(uri="mongomock://chatdb")
    assert default_database() == "chatdb"


def test_configure_database_overrides_the_uri_database() -> None:
    threadmem_mongo.configure(uri="mongomock://fromuri", database="explicit")
    assert default_database() == "explicit"


def test_configure_again_replaces_the_configuration() -> None:
    threadmem_mongo.configure(uri="mongomock://first")
    assert default_database() == "first"
    threadmem_mongo.configure(uri="mongomock://second")
    assert default_database() == "second"


def test_configure_refuses_uri_and_client_together() -> None:
    with pytest.raises(ConfigurationError):
        threadmem_mongo.configure(uri="mongomock://", client=mongomock.MongoClient())


@pytest.mark.parametrize("timeout", [0, -1, True, float("nan")])
def test_configure_refuses_a_timeout_that_is_not_positive(timeout: Any) -> None:
    with pytest.raises(ConfigurationError):
        threadmem_mongo.configure(uri="mongomock://", timeout=timeout)


def test_invalid_uri_is_a_configuration_error() -> None:
    threadmem_mongo.configure(uri="not-a-mongodb-uri")
    with pytest.raises(ConfigurationError):
        RoleThread()


# -- environment variables -----------------------------------------------------------------------


def test_threadmem_mongodb_uri_env_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADMEM_MONGODB_URI", "mongomock://fromenv")
    assert default_database() == "fromenv"


def test_mongodb_uri_env_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongomock://fallback")
    assert default_database() == "fallback"


def test_threadmem_mongodb_uri_env_wins_over_mongodb_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongomock://fallback")
    monkeypatch.setenv("THREADMEM_MONGODB_URI", "mongomock://preferred")
    assert default_database() == "preferred"


def test_threadmem_database_env_overrides_the_uri_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADMEM_MONGODB_URI", "mongomock://fromuri")
    monkeypatch.setenv("THREADMEM_DATABASE", "fromenv")
    assert default_database() == "fromenv"


def test_configure_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADMEM_MONGODB_URI", "mongomock://fromenv")
    monkeypatch.setenv("THREADMEM_DATABASE", "envdb")
    threadmem_mongo.configure(uri="mongomock://fromuri", database="configured")
    assert default_database() == "configured"


@pytest.mark.parametrize("value", ["soon", "0", "-2"])
def test_bad_timeout_env_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("THREADMEM_MONGODB_URI", "mongomock://")
    monkeypatch.setenv("THREADMEM_TIMEOUT", value)
    with pytest.raises(ConfigurationError):
        RoleThread()


@pytest.mark.usefixtures("no_embedded_store")
def test_nothing_configured_and_no_embedded_store_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        RoleThread()
    with pytest.raises(ConfigurationError):
        RoleThread.get("some-id")
    with pytest.raises(ConfigurationError):
        RoleThread.find(owner_id="o")
    with pytest.raises(ConfigurationError):
        RoleMessage.find(role="user")
    with pytest.raises(ConfigurationError):
        RoleThread.from_openai([{"role": "user", "content": "hi"}])


def test_configuration_error_is_a_threadmem_error() -> None:
    assert issubclass(ConfigurationError, threadmem_mongo.ThreadMemError)


# -- a real server ----------------------------------------------------------------------------


@pytest.mark.wire
def test_configure_uri_connects_to_the_wire_server(
    wire_uri: str, wire_client: MongoClient[dict[str, Any]], wire_database: str
) -> None:
    threadmem_mongo.configure(uri=wire_uri, database=wire_database, timeout=5)
    thread = RoleThread(owner_id="o")
    thread.post("user", "over the wire")
    doc = wire_client[wire_database]["threads"].find_one({"_id": thread.id})
    assert doc is not None
    assert [m["text"] for m in doc["messages"]] == ["over the wire"]


@pytest.mark.wire
def test_env_uri_connects_to_the_wire_server(
    monkeypatch: pytest.MonkeyPatch,
    wire_uri: str,
    wire_client: MongoClient[dict[str, Any]],
    wire_database: str,
) -> None:
    monkeypatch.setenv("THREADMEM_MONGODB_URI", wire_uri)
    monkeypatch.setenv("THREADMEM_DATABASE", wire_database)
    thread = RoleThread()
    assert wire_client[wire_database]["threads"].count_documents({"_id": thread.id}) == 1


@pytest.mark.wire
def test_reconfigure_closes_the_client_the_library_made(wire_uri: str, wire_database: str) -> None:
    threadmem_mongo.configure(uri=wire_uri, database=wire_database)
    old_store = RoleThread().store
    threadmem_mongo.configure(uri=wire_uri, database=wire_database)
    with pytest.raises(InvalidOperation):
        old_store.collection.find_one()
    assert len(RoleThread.find()) == 1


@pytest.mark.wire
def test_reset_leaves_a_client_passed_in_open(
    wire_client: MongoClient[dict[str, Any]], wire_database: str
) -> None:
    threadmem_mongo.configure(client=wire_client, database=wire_database)
    RoleThread()
    _config.reset()
    assert wire_client[wire_database]["threads"].count_documents({}) == 1


# -- an unreachable server -------------------------------------------------------------------


def assert_gives_up_after(client: MongoClient[Any], seconds: float) -> None:
    """The client's waits for a server, and its operations, end after ``seconds``: the
    bound a call on a dead server runs into (its duration is the benchmarks' business)."""
    assert client.options.server_selection_timeout == seconds
    assert client.options.pool_options.connect_timeout == seconds
    assert client.options.timeout == seconds


def test_dead_server_raises_store_unavailable_quickly() -> None:
    threadmem_mongo.configure(uri=DEAD_URI, timeout=0.1)
    with pytest.raises(StoreUnavailableError) as info:
        RoleThread()
    assert isinstance(info.value.__cause__, ServerSelectionTimeoutError)
    assert_gives_up_after(_config.default_store().collection.database.client, 0.1)


def test_dead_server_from_env_timeout_raises_store_unavailable_quickly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADMEM_MONGODB_URI", DEAD_URI)
    monkeypatch.setenv("THREADMEM_TIMEOUT", "0.1")
    with pytest.raises(StoreUnavailableError) as info:
        RoleThread.get("some-id")
    assert isinstance(info.value.__cause__, ServerSelectionTimeoutError)
    assert_gives_up_after(_config.default_store().collection.database.client, 0.1)


def test_store_on_a_dead_client_raises_store_unavailable() -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(
        DEAD_URI, serverSelectionTimeoutMS=100, connectTimeoutMS=100
    )
    try:
        store = ThreadStore(client["db"]["threads"])
        with pytest.raises(StoreUnavailableError) as created:
            RoleThread(store=store)
        with pytest.raises(StoreUnavailableError) as found:
            RoleMessage.find(store=store)
        assert isinstance(created.value.__cause__, ConnectionFailure)
        assert isinstance(found.value.__cause__, ConnectionFailure)
    finally:
        client.close()
