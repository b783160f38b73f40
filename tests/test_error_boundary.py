"""Driver errors become the library's at one boundary, ``GuardedCollection``.

Each method of the sync and async wrappers is called on a collection that raises a
chosen pymongo error, without a database: the error must come out as the library's,
except a class the caller named in ``keep``. A reading of the source then checks that
the stores reach their collections only through the wrapper.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import IndexModel
from pymongo import errors as mongo_errors

from threadmem_mongo._async_collection import AsyncGuardedCollection
from threadmem_mongo._collection import GuardedCollection
from threadmem_mongo.errors import (
    ConfigurationError,
    StoreUnavailableError,
    ThreadMemError,
    ThreadTooLargeError,
)

PACKAGE = Path(__file__).resolve().parent.parent / "threadmem_mongo"

#: Every wrapper method, with arguments that name thread "t1".
CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "find_one": (({"_id": "t1"},), {}),
    "find": (({"_id": "t1"},), {"sort": [("created", 1)], "limit": 2}),
    "aggregate": (([{"$match": {"_id": "t1"}}],), {}),
    "distinct": (("thread_id", {"thread_id": "t1"}), {}),
    "count_documents": (({"_id": "t1"},), {}),
    "index_information": ((), {}),
    "insert_one": (({"_id": "t1"},), {}),
    "insert_many": (([{"_id": "t1"}],), {}),
    "replace_one": (({"_id": "t1"}, {"_id": "t1"}), {}),
    "update_one": (({"_id": "t1"}, {"$inc": {"version": 1}}), {}),
    "update_many": (({"_id": "t1"}, {"$inc": {"version": 1}}), {}),
    "delete_many": (({"_id": "t1"},), {}),
    "find_one_and_delete": (({"_id": "t1"},), {}),
    "create_index": (([("created", 1)],), {}),
    "create_indexes": (([IndexModel([("created", 1)])],), {}),
}

#: A driver error, and the library error it must become.
TRANSLATIONS = [
    pytest.param(mongo_errors.AutoReconnect("gone"), StoreUnavailableError, id="connection"),
    pytest.param(mongo_errors.ExecutionTimeout("slow", 50), StoreUnavailableError, id="timeout"),
    pytest.param(mongo_errors.InvalidOperation("closed"), ConfigurationError, id="closed"),
    pytest.param(mongo_errors.OperationFailure("no", 13), ConfigurationError, id="unauthorized"),
    pytest.param(mongo_errors.OperationFailure("big", 10334), ThreadTooLargeError, id="too-large"),
    pytest.param(mongo_errors.DocumentTooLarge("big"), ThreadTooLargeError, id="too-large-local"),
    pytest.param(mongo_errors.OperationFailure("odd", 2), ThreadMemError, id="other"),
]


class RaisingCursor:
    """A cursor whose reading raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def sort(self, *_: Any) -> RaisingCursor:
        return self

    def limit(self, *_: Any) -> RaisingCursor:
        return self

    def __iter__(self) -> RaisingCursor:
        return self

    def __next__(self) -> Any:
        raise self.error

    def __aiter__(self) -> RaisingCursor:
        return self

    async def __anext__(self) -> Any:
        raise self.error


class RaisingCollection:
    """A stand-in collection: every call raises ``error`` (cursors when read, as pymongo's
    do). ``awaitable`` makes its methods coroutines, as ``AsyncCollection``'s are."""

    name = "threads"
    full_name = "db.threads"

    def __init__(self, error: BaseException, *, awaitable: bool) -> None:
        self.error = error
        self.awaitable = awaitable

    def find(self, *_: Any, **__: Any) -> RaisingCursor:
        return RaisingCursor(self.error)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in CALLS:
            raise AttributeError(name)

        def fail() -> Any:
            if name == "aggregate":
                return RaisingCursor(self.error)
            raise self.error

        async def fail_later(*_: Any, **__: Any) -> Any:
            return fail()

        return fail_later if self.awaitable else (lambda *_, **__: fail())


def call(api: str, error: BaseException, method: str, **extra: Any) -> None:
    args, kwargs = CALLS[method]
    if api == "sync":
        guarded: Any = GuardedCollection(RaisingCollection(error, awaitable=False))  # type: ignore[arg-type]
        getattr(guarded, method)(*args, **kwargs, **extra)
        return
    guarded = AsyncGuardedCollection(RaisingCollection(error, awaitable=True))  # type: ignore[arg-type]
    asyncio.run(getattr(guarded, method)(*args, **kwargs, **extra))


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize(("error", "expected"), TRANSLATIONS)
def test_every_call_raises_the_library_error_for_a_driver_error(
    api: str, method: str, error: BaseException, expected: type[ThreadMemError]
) -> None:
    with pytest.raises(expected) as raised:
        call(api, error, method)
    assert type(raised.value).__module__ == "threadmem_mongo.errors"
    assert raised.value.__cause__ is error


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_too_large_error_names_the_thread_the_call_was_about(api: str) -> None:
    with pytest.raises(ThreadTooLargeError) as raised:
        call(api, mongo_errors.OperationFailure("big", 10334), "update_one")
    assert "t1" in str(raised.value)


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize("method", ["insert_one", "insert_many", "replace_one", "update_one"])
def test_an_error_the_caller_keeps_is_raised_as_the_driver_raised_it(api: str, method: str) -> None:
    duplicate = mongo_errors.DuplicateKeyError("E11000 duplicate key", 11000)
    with pytest.raises(mongo_errors.DuplicateKeyError) as raised:
        call(api, duplicate, method, keep=(mongo_errors.DuplicateKeyError,))
    assert raised.value is duplicate


@pytest.mark.parametrize("api", ["sync", "async"])
def test_keeping_one_error_class_still_translates_the_others(api: str) -> None:
    with pytest.raises(StoreUnavailableError):
        call(
            api,
            mongo_errors.AutoReconnect("gone"),
            "update_one",
            keep=(mongo_errors.DuplicateKeyError,),
        )


def test_the_wrapper_exposes_the_collection_it_wraps_to_the_capability_checks() -> None:
    raw = RaisingCollection(mongo_errors.AutoReconnect("gone"), awaitable=False)
    guarded = GuardedCollection(raw)  # type: ignore[arg-type]
    assert guarded.raw is raw
    assert guarded.__wrapped__ is raw
    assert (guarded.name, guarded.full_name) == ("threads", "db.threads")


# -- the stores go through it ----------------------------------------------------------

#: The async sources that hold collections (their sync twins are generated from them).
STORE_MODULES = [
    "_async_store.py",
    "_async_page_store.py",
    "_async_blobs.py",
    "_async_image_store.py",
]

#: pymongo collection methods that send a command.
COMMANDS = {"watch", *CALLS}


def test_store_modules_send_commands_only_through_the_wrapper() -> None:
    """Every command a store sends goes to an attribute of its own that holds a
    ``GuardedCollection``: never to ``.raw``, a database, or a collection it built."""
    guarded_attributes = {"_collection", "_threads", "_files", "_chunks"}
    strays = []
    for name in STORE_MODULES:
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in COMMANDS:
                continue
            receiver = node.func.value
            through_wrapper = (
                isinstance(receiver, ast.Attribute)
                and isinstance(receiver.value, ast.Name)
                and receiver.value.id == "self"
                and receiver.attr in guarded_attributes
            )
            delegated = isinstance(receiver, ast.Attribute) and receiver.attr in {
                "_pages",
                "_blobs",
                "_images",
            }
            if not (through_wrapper or delegated or _is_own_method(receiver)):
                strays.append(f"{name}:{node.lineno} {ast.unparse(node.func)}")
    assert strays == []


def _is_own_method(receiver: ast.expr) -> bool:
    return isinstance(receiver, ast.Name) and receiver.id in {"self", "cls"}


def test_the_guarded_attributes_hold_wrappers() -> None:
    for name in STORE_MODULES:
        source = (PACKAGE / name).read_text()
        for line in source.splitlines():
            stripped = line.strip()
            for attribute in ("self._collection = ", "self._files = ", "self._chunks = "):
                if stripped.startswith(attribute):
                    assert "AsyncGuardedCollection(" in stripped or stripped.endswith(
                        "= collection"
                    ), f"{name}: {stripped}"


def test_driver_errors_are_translated_nowhere_else_in_the_stores() -> None:
    for name in STORE_MODULES:
        assert "translated_errors" not in (PACKAGE / name).read_text(), name
