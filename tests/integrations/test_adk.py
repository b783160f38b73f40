"""``ThreadMemSessionService``, the Google ADK session service, on every backend.

* Differential: the same operation sequences run on ADK's ``InMemorySessionService`` and
  on ours and must give the same observable results (sessions, events, state, listings,
  errors). Stale-session sequences run against ADK's SQL ``DatabaseSessionService``
  (SQLite), the reference for that behaviour, since the in-memory service has none;
  state values with no JSON form run against both SQL services, which store their
  ``str()``; arguments of the wrong type against whichever service raises TypeError.
* The stored form: one readable message per event, the event lossless, images in GridFS.
* Stale appends and bad input write nothing; concurrent appends and shared-state merges
  lose nothing.
* A real ``Runner`` with an ``LlmAgent`` over a scripted model persists through the
  service, and a second process (wire lane) reads the same session back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.adk.agents import LlmAgent
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.base_llm import BaseLlm, LlmCapabilities
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.runners import Runner
from google.adk.sessions import DatabaseSessionService, InMemorySessionService
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.session import Session
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.genai import types
from pymongo import AsyncMongoClient
from pymongo.collection import Collection

from threadmem_mongo import InputTypeError, InvalidInputError, RoleThread, ThreadTooLargeError
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.integrations.adk import ThreadMemSessionService

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
DOC_PAGE = ROOT / "docs" / "integrations" / "adk.md"

# -- building blocks -----------------------------------------------------------------------


def png(payload_bytes: int = 16) -> bytes:
    """A real PNG of a 1-pixel-high grey strip whose compressed size grows with the width."""
    width = max(1, payload_bytes)
    raw = b"\x00" + bytes((i * 7919) % 251 for i in range(width))
    header = width.to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )


def event(
    n: int,
    author: str = "user",
    text: str | None = None,
    *,
    state: dict[str, Any] | None = None,
    parts: list[types.Part] | None = None,
    partial: bool | None = None,
    event_id: str | None = None,
) -> Event:
    """An event with a fixed id and timestamp, so both services receive equal ones."""
    if parts is None:
        parts = [types.Part(text=text if text is not None else f"message {n}")]
    role = "user" if author == "user" else "model"
    return Event(
        id=event_id or f"event-{n}",
        invocation_id="invocation-1",
        author=author,
        timestamp=1000.0 + n,
        content=types.Content(role=role, parts=parts),
        actions=EventActions(state_delta=state or {}),
        partial=partial,
    )


@dataclass
class SessionIdOf:
    """Stands for the id of the session the sequence stored under ``name``."""

    name: str


@dataclass
class Create:
    name: str
    kwargs: dict[str, Any]


@dataclass
class Get:
    name: str
    kwargs: dict[str, Any]


@dataclass
class ListSessions:
    kwargs: dict[str, Any]


@dataclass
class Delete:
    kwargs: dict[str, Any]


@dataclass
class Append:
    """Append a fresh copy of ``event`` through the session object stored as ``name``."""

    name: str
    event: Event


@dataclass
class UserState:
    kwargs: dict[str, Any]


@dataclass
class Keep:
    """Store a hand-built session object (not from the service) as ``name``."""

    name: str
    session: Session


Operation = Create | Get | ListSessions | Delete | Append | UserState | Keep


@dataclass
class Run:
    sessions: dict[str, Session] = field(default_factory=dict)


def _resolved(kwargs: dict[str, Any], run: Run) -> dict[str, Any]:
    return {
        key: run.sessions[value.name].id if isinstance(value, SessionIdOf) else value
        for key, value in kwargs.items()
    }


def observe(value: Any) -> Any:
    """What a caller can see of a result, copied (the service may change objects later)."""
    if isinstance(value, Session):
        return {
            "id": value.id,
            "app_name": value.app_name,
            "user_id": value.user_id,
            "state": copy.deepcopy(value.state),
            "events": [e.model_dump(mode="json") for e in value.events],
            "last_update_time": value.last_update_time,
        }
    if isinstance(value, ListSessionsResponse):
        return [observe(s) for s in value.sessions]
    if isinstance(value, Event):
        return value.model_dump(mode="json")
    return copy.deepcopy(value)


#: What ADK's clock says during the sequences; event timestamps are 1000 and later.
CREATION_TIME = 100.0


@contextlib.contextmanager
def adk_test_clock_and_ids() -> Iterator[None]:
    """ADK's clock and id generator made deterministic, so that creation times and
    generated session ids compare exactly between services (both take them from ADK).

    The clock stands still: the services read it at different points (the reference
    only after its duplicate-id check, ours before), so a ticking clock would count reads.
    Sessions created at one time are listed by user id, then session id.
    """
    ids = itertools.count(1)
    platform_time.set_time_provider(lambda: CREATION_TIME)
    platform_uuid.set_id_provider(lambda: f"generated-{next(ids)}")
    try:
        yield
    finally:
        platform_time.reset_time_provider()
        platform_uuid.reset_id_provider()


async def run_sequence(service: BaseSessionService, operations: list[Operation]) -> list[Any]:
    """Run the operations and return what each one showed (a result or an error type)."""
    run = Run()
    shown: list[Any] = []
    with adk_test_clock_and_ids():
        for op in operations:
            try:
                result = await _step(service, op, run, shown)
            except Exception as exc:
                result = ("error", type(exc).__name__)
            shown.append(observe(result))
    return shown


async def _step(service: BaseSessionService, op: Operation, run: Run, shown: list[Any]) -> Any:
    if isinstance(op, Create):
        created = await service.create_session(**_resolved(op.kwargs, run))
        run.sessions[op.name] = created
        return created
    if isinstance(op, Get):
        found = await service.get_session(**_resolved(op.kwargs, run))
        if found is not None:
            run.sessions[op.name] = found
        return found
    if isinstance(op, ListSessions):
        return await service.list_sessions(**_resolved(op.kwargs, run))
    if isinstance(op, Delete):
        return await service.delete_session(**_resolved(op.kwargs, run))
    if isinstance(op, Append):
        session = run.sessions[op.name]
        try:
            return await service.append_event(session, op.event.model_copy(deep=True))
        finally:
            shown.append(("session after append", observe(session)))
    if isinstance(op, UserState):
        return await service.get_user_state(**_resolved(op.kwargs, run))
    run.sessions[op.name] = op.session.model_copy(deep=True)
    return None


async def assert_same_as_reference(
    ours: ThreadMemSessionService,
    operations: list[Operation],
    reference: BaseSessionService | None = None,
) -> list[Any]:
    expected = await run_sequence(reference or InMemorySessionService(), operations)
    actual = await run_sequence(ours, operations)
    assert actual == expected
    return actual


@pytest.fixture
def service(async_store: AsyncThreadStore) -> ThreadMemSessionService:
    return ThreadMemSessionService(store=async_store)


@contextlib.asynccontextmanager
async def sql_reference() -> Any:
    reference = DatabaseSessionService("sqlite+aiosqlite:///:memory:")
    try:
        yield reference
    finally:
        await reference.close()


APP = "support"
A = {"app_name": APP, "user_id": "alice"}
B = {"app_name": APP, "user_id": "bob"}


# -- differential sequences ------------------------------------------------------------------

SEQUENCES: dict[str, list[Operation]] = {
    "empty_session": [
        Create("s", {**A, "session_id": "s1"}),
        Get("s", {**A, "session_id": "s1"}),
        Get("s", {**A, "session_id": "s1", "config": GetSessionConfig(num_recent_events=3)}),
        ListSessions({"app_name": APP}),
        UserState(A),
    ],
    "state_scopes": [
        Create(
            "s",
            {
                **A,
                "session_id": "s1",
                "state": {"topic": "billing", "app:motd": "hi", "user:lang": "fr", "temp:x": 1},
            },
        ),
        Create("t", {**A, "session_id": "s2", "state": {"user:tier": "gold"}}),
        Create("u", {**B, "session_id": "s3", "state": {"app:motd": "hello"}}),
        Get("s", {**A, "session_id": "s1"}),
        Append(
            "s",
            event(
                1,
                state={
                    "topic": "refund",
                    "count": 1,
                    "app:open": True,
                    "user:lang": "de",
                    "temp:scratch": [1, 2],
                },
            ),
        ),
        Append("s", event(2, "agent", state={"count": 2, "nested": {"a": [1, {"b": None}]}})),
        Get("s", {**A, "session_id": "s1"}),
        Get("t", {**A, "session_id": "s2"}),
        Get("u", {**B, "session_id": "s3"}),
        UserState(A),
        UserState(B),
        UserState({"app_name": "other", "user_id": "alice"}),
        ListSessions({"app_name": APP}),
        ListSessions({**A}),
    ],
    "generated_and_stripped_ids": [
        Create("g", {**A}),
        Create("blank", {**A, "session_id": "   "}),
        Create("padded", {**A, "session_id": "  pad  "}),
        Get("g", {**A, "session_id": SessionIdOf("g")}),
        Get("p", {**A, "session_id": "pad"}),
        Get("p2", {**A, "session_id": " pad "}),
        Append("g", event(1)),
        Get("g", {**A, "session_id": SessionIdOf("g")}),
        Delete({**A, "session_id": " pad"}),
        Get("gone", {**A, "session_id": "pad"}),
    ],
    "duplicate_session_id": [
        Create("s", {**A, "session_id": "s1", "state": {"app:v": 1}}),
        Create("again", {**A, "session_id": "s1", "state": {"app:v": 2, "user:w": 3}}),
        Create("other_user", {**B, "session_id": "s1"}),
        Get("s", {**A, "session_id": "s1"}),
        ListSessions({"app_name": APP}),
    ],
    "recent_and_after_timestamp": [
        Create("s", {**A, "session_id": "s1"}),
        *[Append("s", event(n, "user" if n % 2 else "agent")) for n in range(1, 8)],
        *[
            Get("r", {**A, "session_id": "s1", "config": GetSessionConfig(**config)})
            for config in (
                {"num_recent_events": 0},
                {"num_recent_events": 1},
                {"num_recent_events": 3},
                {"num_recent_events": 50},
                {"after_timestamp": 1000.0},
                {"after_timestamp": 1004.0},
                {"after_timestamp": 1004.5},
                {"after_timestamp": 1007.0},
                {"after_timestamp": 2000.0},
                {"num_recent_events": 4, "after_timestamp": 1005.0},
                {"num_recent_events": 2, "after_timestamp": 1001.0},
                {"num_recent_events": 0, "after_timestamp": 1001.0},
            )
        ],
    ],
    "after_timestamp_out_of_order": [
        # A filter (timestamp >= the bound) over the events in stored order, then the count.
        Create("s", {**A, "session_id": "s1"}),
        Append("s", event(5)),
        Append("s", event(1)),
        Append("s", event(7)),
        Append("s", event(4)),
        Append("s", event(6)),
        *[
            Get("r", {**A, "session_id": "s1", "config": GetSessionConfig(**config)})
            for config in (
                {"after_timestamp": 1004.0},
                {"after_timestamp": 1005.0},
                {"after_timestamp": 1006.5},
                {"after_timestamp": 1004.0, "num_recent_events": 2},
                {"after_timestamp": 1004.0, "num_recent_events": 3},
                {"after_timestamp": 1000.0, "num_recent_events": 4},
                {"after_timestamp": 1008.0, "num_recent_events": 1},
            )
        ],
    ],
    "list_and_delete": [
        Create("a1", {**A, "session_id": "a1", "state": {"k": "a1"}}),
        Create("b1", {**B, "session_id": "b1", "state": {"user:name": "Bob"}}),
        Create("a2", {**A, "session_id": "a2"}),
        Create("x", {"app_name": "other", "user_id": "alice", "session_id": "x1"}),
        Append("a2", event(3)),
        Append("b1", event(2)),
        ListSessions({"app_name": APP}),
        ListSessions({**A}),
        ListSessions({"app_name": APP, "user_id": "carol"}),
        ListSessions({"app_name": "nobody"}),
        Delete({**A, "session_id": "a1"}),
        Delete({**A, "session_id": "a1"}),
        Delete({**A, "session_id": "never"}),
        Delete({**B, "session_id": "a2"}),
        ListSessions({"app_name": APP}),
        Get("a1", {**A, "session_id": "a1"}),
        UserState(B),
    ],
    "append_to_deleted_session": [
        Create("s", {**A, "session_id": "s1"}),
        Delete({**A, "session_id": "s1"}),
        Append("s", event(1, state={"user:k": 1})),
        UserState(A),
        Keep("ghost", Session(id="nope", app_name=APP, user_id="alice")),
        Append("ghost", event(2)),
    ],
    "partial_events_are_not_stored": [
        Create("s", {**A, "session_id": "s1"}),
        Append("s", event(1, "agent", "Hel", partial=True, state={"k": 1})),
        Append("s", event(2, "agent", "Hello", partial=False, state={"k": 2})),
        Get("s", {**A, "session_id": "s1"}),
    ],
    "temp_state_reaches_the_object_only": [
        Create("s", {**A, "session_id": "s1", "state": {"temp:boot": 1}}),
        Append("s", event(1, state={"temp:a": 1, "kept": 1})),
        Append("s", event(2, state={"temp:a": 2})),
        Get("fresh", {**A, "session_id": "s1"}),
    ],
    "redelivered_event_changes_nothing": [
        Create("s", {**A, "session_id": "s1"}),
        Append("s", event(1, state={"k": 1, "user:u": 1})),
        Append("s", event(1, state={"k": 1, "user:u": 1})),
        Get("s", {**A, "session_id": "s1"}),
        UserState(A),
    ],
    "redelivered_through_an_older_copy_changes_nothing": [
        Create("s", {**A, "session_id": "s1"}),
        Get("older", {**A, "session_id": "s1"}),
        Append("s", event(1, state={"k": 1})),
        Append("older", event(1, state={"k": 1})),
        Get("s", {**A, "session_id": "s1"}),
    ],
    "unicode_and_odd_keys": [
        Create(
            "s",
            {
                "app_name": "app:ü/%",
                "user_id": "user:名前",
                "session_id": "s:1/%2F",
                "state": {"a.b": 1, "$dollar": 2, "émoji 🎉": "ok", "user:x.y": "z"},
            },
        ),
        Create("t", {"app_name": "app", "user_id": "ü/%:user:名前", "session_id": "s:1/%2F"}),
        Append(
            "s",
            event(1, "agent", "héllo 🌍 <image> \x00 \u202e", state={"$k.v": [1, "é"]}),
        ),
        Get("s", {"app_name": "app:ü/%", "user_id": "user:名前", "session_id": "s:1/%2F"}),
        Get("t", {"app_name": "app", "user_id": "ü/%:user:名前", "session_id": "s:1/%2F"}),
        ListSessions({"app_name": "app:ü/%"}),
    ],
    "tool_calls_and_rich_parts": [
        Create("s", {**A, "session_id": "s1"}),
        Append(
            "s",
            event(
                1,
                "agent",
                parts=[
                    types.Part(text="thinking...", thought=True),
                    types.Part(
                        function_call=types.FunctionCall(
                            id="call-1", name="lookup", args={"q": "x", "n": [1, 2]}
                        )
                    ),
                ],
            ),
        ),
        Append(
            "s",
            event(
                2,
                "agent",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="call-1", name="lookup", response={"result": {"rows": 3}}
                        )
                    )
                ],
            ),
        ),
        Append(
            "s",
            event(
                3,
                "agent",
                parts=[
                    types.Part(executable_code=types.ExecutableCode(code="print(1)")),
                    types.Part(
                        inline_data=types.Blob(mime_type="application/pdf", data=b"%PDF-1.4")
                    ),
                    types.Part(file_data=types.FileData(file_uri="gs://b/f.txt")),
                ],
            ),
        ),
        Append("s", Event(id="bare", author="agent", invocation_id="i", timestamp=1004.0)),
        Get("s", {**A, "session_id": "s1"}),
    ],
    "images_and_large_items": [
        Create("s", {**A, "session_id": "s1"}),
        Append(
            "s",
            event(
                1,
                parts=[
                    types.Part(text="small and large"),
                    types.Part(inline_data=types.Blob(mime_type="image/png", data=png(16))),
                    types.Part(inline_data=types.Blob(mime_type="image/png", data=png(60_000))),
                    types.Part(inline_data=types.Blob(mime_type="image/svg+xml", data=b"<svg/>")),
                ],
            ),
        ),
        Append("s", event(2, "agent", "x" * 1_000_000)),
        Get("s", {**A, "session_id": "s1"}),
        Get("s", {**A, "session_id": "s1", "config": GetSessionConfig(num_recent_events=1)}),
    ],
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
async def test_sequences_match_in_memory_service(
    service: ThreadMemSessionService, name: str
) -> None:
    shown = await assert_same_as_reference(service, SEQUENCES[name])
    assert shown  # the comparison covered every step


async def test_sequences_show_what_they_claim(service: ThreadMemSessionService) -> None:
    """The reference results the differential tests compare against are not trivial."""
    shown = await run_sequence(service, SEQUENCES["duplicate_session_id"])
    assert shown[1] == ("error", "AlreadyExistsError")
    assert shown[2]["id"] == "s1"
    assert shown[3]["state"] == {"app:v": 1}
    shown = await run_sequence(service, SEQUENCES["append_to_deleted_session"])
    assert ("error", "SessionNotFoundError") in shown
    shown = await run_sequence(service, SEQUENCES["recent_and_after_timestamp"])
    counts = [len(s["events"]) for s in shown[-12:]]
    assert counts == [0, 1, 3, 7, 7, 4, 3, 1, 0, 3, 2, 0]
    shown = await run_sequence(InMemorySessionService(), SEQUENCES["after_timestamp_out_of_order"])
    ids = [[e["id"] for e in s["events"]] for s in shown[-7:]]
    assert ids == [
        ["event-5", "event-7", "event-4", "event-6"],
        ["event-5", "event-7", "event-6"],
        ["event-7"],
        ["event-4", "event-6"],
        ["event-7", "event-4", "event-6"],
        ["event-1", "event-7", "event-4", "event-6"],
        [],
    ]


# -- stale sessions, against ADK's SQL service -------------------------------------------------

STALE_SEQUENCES: dict[str, list[Operation]] = {
    "second_copy_is_stale_after_first_appends": [
        Create("s", {**A, "session_id": "s1", "state": {"k": 0}}),
        Get("first", {**A, "session_id": "s1"}),
        Get("second", {**A, "session_id": "s1"}),
        Append("first", event(1, state={"k": 1})),
        Append("second", event(2, state={"k": 2, "user:u": 2, "app:a": 2})),
        Get("after", {**A, "session_id": "s1"}),
        UserState(A),
        Append("first", event(3, state={"k": 3})),
        Append("after", event(4)),
        Get("final", {**A, "session_id": "s1"}),
    ],
    "created_object_goes_stale": [
        Create("s", {**A, "session_id": "s1"}),
        Get("other", {**A, "session_id": "s1"}),
        Append("other", event(1)),
        Append("s", event(2)),
        Get("final", {**A, "session_id": "s1"}),
    ],
    "listed_object_can_append_while_current": [
        Create("s", {**A, "session_id": "s1"}),
        ListSessions({**A}),
        Get("s", {**A, "session_id": "s1", "config": GetSessionConfig(num_recent_events=0)}),
        Append("s", event(1)),
        Get("final", {**A, "session_id": "s1"}),
    ],
    "hand_built_session_checked_by_time_and_last_event": [
        Create("s", {**A, "session_id": "s1"}),
        Append("s", event(1)),
        Keep("current", Session(id="s1", app_name=APP, user_id="alice", last_update_time=1001.0)),
        Keep("older", Session(id="s1", app_name=APP, user_id="alice", last_update_time=1000.5)),
        Append("older", event(2)),
        Append("current", event(3)),
        Get("final", {**A, "session_id": "s1"}),
    ],
}


@pytest.mark.parametrize("name", sorted(STALE_SEQUENCES))
async def test_stale_sequences_match_sql_service(
    service: ThreadMemSessionService, name: str
) -> None:
    async with sql_reference() as reference:
        shown = await assert_same_as_reference(service, STALE_SEQUENCES[name], reference)
    assert ("error", "StaleSessionError") in shown or name.startswith("listed")


# -- state values with no JSON form, against ADK's SQL services ------------------------------


class Opaque:
    """A state value with no JSON form, equal to its copies (each run copies the events)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return f"<opaque {self.name}>"


def opaque_function() -> None:
    """A function: no JSON form either, and the same object in every copy."""


WHEN = datetime.datetime(2026, 1, 2, 3, 4, 5)

ODD_STATE_SEQUENCES: dict[str, list[Operation]] = {
    "values_without_json_form_are_stored_as_text": [
        Create(
            "s",
            {
                **A,
                "session_id": "s1",
                "state": {
                    "k": Opaque("created"),
                    "when": WHEN,
                    "app:f": opaque_function,
                    "user:raw": b"\xff\x00",
                    "temp:t": Opaque("temp"),
                },
            },
        ),
        Get("s", {**A, "session_id": "s1"}),
        Append(
            "s",
            event(
                1,
                state={
                    "k": Opaque("appended"),
                    "nested": {"list": [Opaque("deep"), 1, None], "set": {3}},
                    "text": b"plain",
                    "user:raw": b"\xfe",
                    "app:f": opaque_function,
                    "temp:t": Opaque("temp"),
                },
            ),
        ),
        Get("after", {**A, "session_id": "s1"}),
        UserState(A),
        ListSessions({"app_name": APP}),
    ],
    "json_values_keep_their_rich_forms": [
        Create("s", {**A, "session_id": "s1", "state": {"when": WHEN, "b": b"text"}}),
        Append("s", event(1, state={"user:when": WHEN, "raw": b"\xff"})),
        Get("after", {**A, "session_id": "s1"}),
        UserState(A),
    ],
}


@contextlib.asynccontextmanager
async def sqlite_reference(path: Path) -> Any:
    reference = SqliteSessionService(str(path / "sessions.db"))
    yield reference


SQL_REFERENCES = {"database": lambda _: sql_reference(), "sqlite": sqlite_reference}


@pytest.mark.parametrize("kind", sorted(SQL_REFERENCES))
@pytest.mark.parametrize("name", sorted(ODD_STATE_SEQUENCES))
async def test_state_values_are_stored_as_sql_services_store_them(
    service: ThreadMemSessionService, name: str, kind: str, tmp_path: Path
) -> None:
    async with SQL_REFERENCES[kind](tmp_path) as reference:
        shown = await assert_same_as_reference(service, ODD_STATE_SEQUENCES[name], reference)
    assert ("error", "InvalidInputError") not in shown


async def test_state_values_without_json_form_come_back_as_their_str(
    service: ThreadMemSessionService,
) -> None:
    """What the SQL services do, shown: nothing refused, the str() stored, raw bytes as base64."""
    shown = await run_sequence(
        service, ODD_STATE_SEQUENCES["values_without_json_form_are_stored_as_text"]
    )
    created, after, user_state = shown[0], shown[4], shown[5]
    assert created["state"]["k"] == "<opaque created>"
    assert created["state"]["when"] == "2026-01-02T03:04:05"
    assert created["state"]["app:f"] == str(opaque_function)
    assert created["state"]["user:raw"] == base64.b64encode(b"\xff\x00").decode()
    assert "temp:t" not in created["state"]
    assert after["state"]["k"] == "<opaque appended>"
    assert after["state"]["nested"] == {"list": ["<opaque deep>", 1, None], "set": [3]}
    assert after["state"]["text"] == "plain"
    assert user_state == {"raw": base64.b64encode(b"\xfe").decode()}
    delta = after["events"][0]["actions"]["state_delta"]
    assert delta["k"] == "<opaque appended>"
    assert "temp:t" not in delta


async def test_stale_append_raises_and_writes_nothing(
    service: ThreadMemSessionService, async_raw: Collection[dict[str, Any]]
) -> None:
    await service.create_session(**A, session_id="s1", state={"k": 0})
    first = await service.get_session(**A, session_id="s1")
    second = await service.get_session(**A, session_id="s1")
    assert first is not None
    assert second is not None
    await service.append_event(first, event(1, state={"k": 1}))
    before = list(async_raw.find({}, sort=[("_id", 1)]))
    with pytest.raises(StaleSessionError):
        await service.append_event(
            second, event(2, state={"k": 2, "user:u": 1, "app:a": 1, "temp:t": 1})
        )
    assert list(async_raw.find({}, sort=[("_id", 1)])) == before
    assert [e.id for e in second.events] == []
    assert "temp:t" not in second.state
    assert second.state == {"k": 0}


async def test_concurrent_appends_with_reload_and_retry_lose_nothing(
    async_store: AsyncThreadStore,
) -> None:
    # One service per writer, as separate processes would have.
    await ThreadMemSessionService(store=async_store).create_session(**A, session_id="s1")
    writers, per_writer = 6, 5
    stale_seen = 0
    loaded = 0
    all_loaded = asyncio.Event()

    async def writer(w: int) -> None:
        nonlocal stale_seen, loaded
        service = ThreadMemSessionService(store=async_store)
        for i in range(per_writer):
            n = w * 100 + i
            while True:
                session = await service.get_session(
                    **A, session_id="s1", config=GetSessionConfig(num_recent_events=0)
                )
                assert session is not None
                if not all_loaded.is_set():
                    # Every writer first holds the same revision: all but one go stale.
                    loaded += 1
                    if loaded == writers:
                        all_loaded.set()
                    await all_loaded.wait()
                try:
                    await service.append_event(
                        session, event(n, state={f"w{w}": i, "user:last": n})
                    )
                    break
                except StaleSessionError:
                    stale_seen += 1

    await asyncio.gather(*(writer(w) for w in range(writers)))
    service = ThreadMemSessionService(store=async_store)
    stored = await service.get_session(**A, session_id="s1")
    assert stored is not None
    ids = [e.id for e in stored.events]
    assert sorted(ids) == sorted(f"event-{w * 100 + i}" for w in range(writers) for i in range(5))
    assert {k: v for k, v in stored.state.items() if k.startswith("w")} == {
        f"w{w}": per_writer - 1 for w in range(writers)
    }
    assert stale_seen >= writers - 1


async def test_tasks_sharing_one_session_object_take_turns(
    service: ThreadMemSessionService,
) -> None:
    session = await service.create_session(**A, session_id="s1")
    await asyncio.gather(
        *(service.append_event(session, event(n, state={f"k{n}": n})) for n in range(10))
    )
    stored = await service.get_session(**A, session_id="s1")
    assert stored is not None
    assert sorted(e.id for e in stored.events) == sorted(f"event-{n}" for n in range(10))
    assert stored.state == {f"k{n}": n for n in range(10)}
    assert [e.id for e in session.events] == [e.id for e in stored.events]


async def test_concurrent_shared_state_merges_from_many_sessions_all_land(
    service: ThreadMemSessionService,
) -> None:
    sessions = [await service.create_session(**A, session_id=f"s{i}") for i in range(8)]
    await asyncio.gather(
        *(
            service.append_event(s, event(i, state={f"user:k{i}": i, f"app:a{i}": i}))
            for i, s in enumerate(sessions)
        )
    )
    assert await service.get_user_state(**A) == {f"k{i}": i for i in range(8)}
    listed = await service.list_sessions(app_name=APP)
    assert all({f"app:a{i}" for i in range(8)} <= set(s.state) for s in listed.sessions)


WRITER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from google.adk.errors._stale_session_error import StaleSessionError
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types
    from pymongo import AsyncMongoClient
    from threadmem_mongo.aio import AsyncThreadStore
    from threadmem_mongo.integrations.adk import ThreadMemSessionService

    uri, database, collection, writer, count = sys.argv[1:6]

    async def main():
        client = AsyncMongoClient(uri)
        service = ThreadMemSessionService(store=AsyncThreadStore(client[database][collection]))
        stale = 0
        for i in range(int(count)):
            event = Event(
                id=f"p{writer}-{i}",
                invocation_id="i",
                author=f"writer{writer}",
                timestamp=2000.0 + i,
                content=types.Content(role="model", parts=[types.Part(text=f"{writer}/{i}")]),
                actions=EventActions(state_delta={f"p{writer}": i, f"user:p{writer}": i}),
            )
            while True:
                session = await service.get_session(
                    app_name="support", user_id="alice", session_id="shared"
                )
                try:
                    await service.append_event(session, event)
                    break
                except StaleSessionError:
                    stale += 1
        await client.close()
        print(stale)

    asyncio.run(main())
    """
)


@pytest_asyncio.fixture
async def wire_async_store(wire_uri: str) -> AsyncIterator[AsyncThreadStore]:
    """An async store on a fresh database of the SecantusDB server (dropped afterwards)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_uri)
    name = f"tm_adk_{uuid.uuid4().hex}"
    try:
        yield AsyncThreadStore(client[name]["threads"])
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.mark.wire
@pytest.mark.slow
async def test_processes_appending_to_one_session_lose_nothing(
    wire_uri: str, wire_async_store: AsyncThreadStore
) -> None:
    async_store = wire_async_store
    service = ThreadMemSessionService(store=async_store)
    await service.create_session(**A, session_id="shared")
    collection = async_store.collection
    writers, per_writer = 3, 15
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER_SCRIPT,
            wire_uri,
            collection.database.name,
            collection.name,
            str(w),
            str(per_writer),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for w in range(writers)
    ]
    outputs = [await p.communicate() for p in processes]
    assert [p.returncode for p in processes] == [0] * writers, [err for _, err in outputs]
    stored = await service.get_session(**A, session_id="shared")
    assert stored is not None
    assert sorted(e.id for e in stored.events) == sorted(
        f"p{w}-{i}" for w in range(writers) for i in range(per_writer)
    )
    for w in range(writers):
        mine = [e.id for e in stored.events if e.author == f"writer{w}"]
        assert mine == [f"p{w}-{i}" for i in range(per_writer)]
    assert {k: v for k, v in stored.state.items() if k.startswith("p")} == {
        f"p{w}": per_writer - 1 for w in range(writers)
    }
    assert await service.get_user_state(**A) == {f"p{w}": per_writer - 1 for w in range(writers)}


# -- the stored form -------------------------------------------------------------------------


async def test_each_event_is_one_readable_message_and_round_trips(
    service: ThreadMemSessionService, async_store: AsyncThreadStore
) -> None:
    session = await service.create_session(**A, session_id="s1")
    call = event(
        2,
        "helper_agent",
        parts=[
            types.Part(text="Let me check."),
            types.Part(
                function_call=types.FunctionCall(id="c1", name="lookup", args={"q": "plan"})
            ),
        ],
    )
    sent = [event(1, text="What is my plan?"), call]
    for e in sent:
        await service.append_event(session, e.model_copy(deep=True))
    thread_id = ThreadMemSessionService.thread_id(APP, "alice", "s1")
    thread = await AsyncRoleThread.get(thread_id, store=async_store)
    messages = await thread.messages()
    assert [(m.role, m.text) for m in messages] == [
        ("user", "What is my plan?"),
        ("helper_agent", 'Let me check.\n[call lookup({"q": "plan"})]'),
    ]
    assert [m.created for m in messages] == [1001.0, 1002.0]
    assert thread.owner_id == "alice"
    assert thread.name == "s1"
    assert thread.message_count == 2
    loaded = await service.get_session(**A, session_id="s1")
    assert loaded is not None
    assert loaded.events == sent
    assert (await thread.to_openai())["messages"][0] == {
        "role": "user",
        "content": "What is my plan?",
    }
    # The sync API reads the same thread.
    assert [m.role for m in RoleThread.get(thread_id).messages()] == ["user", "helper_agent"]


async def test_images_go_through_the_image_path_and_large_ones_to_gridfs(
    service: ThreadMemSessionService,
    async_store: AsyncThreadStore,
    async_raw: Collection[dict[str, Any]],
) -> None:
    small, large = png(16), png(60_000)
    assert len(base64.b64encode(large)) > async_store.image_threshold
    sent = event(
        1,
        parts=[
            types.Part(text="Compare <image> these"),
            types.Part(inline_data=types.Blob(mime_type="image/png", data=small)),
            types.Part(inline_data=types.Blob(mime_type="image/png", data=large)),
            # The library stores no SVG as an image: it stays inline in the event JSON.
            types.Part(inline_data=types.Blob(mime_type="image/svg+xml", data=b"<svg/>")),
        ],
    )
    session = await service.create_session(**A, session_id="s1")
    await service.append_event(session, sent.model_copy(deep=True))
    thread_id = ThreadMemSessionService.thread_id(APP, "alice", "s1")
    thread = await AsyncRoleThread.get(thread_id, store=async_store)
    (stored,) = await thread.messages(resolve_images=False)
    assert stored.text == "Compare [image] these\n<image>\n<image>\n[image/svg+xml]"
    assert len(stored.images) == 2
    assert stored.images[0] == "data:image/png;base64," + base64.b64encode(small).decode()
    assert stored.images[1].startswith("gridfs:")
    doc = async_raw.find_one({"_id": thread_id})
    assert doc is not None
    assert base64.b64encode(large).decode()[:200] not in json.dumps(doc, default=str)
    stored_parts = json.loads(doc["messages"][0]["metadata"]["adk_event"])["content"]["parts"]
    assert [sorted(part.get("inline_data", {})) for part in stored_parts] == [
        [],
        ["mime_type"],
        ["mime_type"],
        ["data", "mime_type"],
    ]
    assert doc["messages"][0]["metadata"]["adk_image_parts"] == [1, 2]
    loaded = await service.get_session(**A, session_id="s1")
    assert loaded is not None
    assert loaded.events == [sent]
    assert (await thread.to_openai())["messages"][0]["content"][1]["type"] == "image_url"


async def test_event_past_the_document_limit_raises_and_writes_nothing(
    service: ThreadMemSessionService, async_raw: Collection[dict[str, Any]]
) -> None:
    session = await service.create_session(**A, session_id="s1")
    await service.append_event(session, event(1))
    before = list(async_raw.find({}, sort=[("_id", 1)]))
    # The text is stored once (as the message's text, not again in the event JSON).
    with pytest.raises(ThreadTooLargeError):
        await service.append_event(session, event(2, "agent", "y" * 16_800_000, state={"k": 1}))
    assert list(async_raw.find({}, sort=[("_id", 1)])) == before
    assert [e.id for e in session.events] == ["event-1"]
    assert "k" not in session.state


async def test_thread_ids_are_deterministic_readable_and_distinct() -> None:
    make = ThreadMemSessionService.thread_id
    assert make("app", "alice", "s1") == "adk:app:alice:s1"
    assert make("app", "alice", "s1") == ThreadMemSessionService().thread_id("app", "alice", "s1")
    triples = [
        ("a:b", "c", "d"),
        ("a", "b:c", "d"),
        ("a", "b", "c:d"),
        ("a%3Ab", "c", "d"),
        ("a", "", "b:c:d"),
        ("", "", ""),
        ("a/b", "c", "d"),
        ("ü", "c", "d"),
    ]
    ids = {make(*t) for t in triples}
    assert len(ids) == len(triples)
    shared = {
        ThreadMemSessionService.app_state_thread_id("a"),
        ThreadMemSessionService.user_state_thread_id("a", "b"),
    }
    assert not shared & {make("a", "b", "c"), make("adk-app", "a", "")}


async def test_shared_state_lives_in_its_own_threads(
    service: ThreadMemSessionService, async_store: AsyncThreadStore
) -> None:
    session = await service.create_session(**A, session_id="s1", state={"app:m": 1, "user:l": 2})
    await service.append_event(session, event(1, state={"user:l": 3, "own": 4}))
    app_thread = await AsyncRoleThread.get(
        ThreadMemSessionService.app_state_thread_id(APP), store=async_store
    )
    user_thread = await AsyncRoleThread.get(
        ThreadMemSessionService.user_state_thread_id(APP, "alice"), store=async_store
    )
    assert json.loads((app_thread.metadata or {})["adk_state"]) == {"m": 1}
    assert json.loads((user_thread.metadata or {})["adk_state"]) == {"l": 3}
    session_thread = await AsyncRoleThread.get(
        ThreadMemSessionService.thread_id(APP, "alice", "s1"), store=async_store
    )
    assert json.loads((session_thread.metadata or {})["adk_state"]) == {"own": 4}
    await service.delete_session(**A, session_id="s1")
    with pytest.raises(Exception, match="does not exist"):
        await AsyncRoleThread.get(session_thread.id, store=async_store)
    assert await service.get_user_state(**A) == {"l": 3}


async def test_a_different_event_with_a_stored_id_is_refused(
    service: ThreadMemSessionService,
) -> None:
    session = await service.create_session(**A, session_id="s1")
    await service.append_event(session, event(1, text="one"))
    with pytest.raises(AlreadyExistsError):
        await service.append_event(session, event(2, text="two", event_id="event-1"))
    loaded = await service.get_session(**A, session_id="s1")
    assert loaded is not None
    assert [e.content.parts[0].text for e in loaded.events if e.content and e.content.parts] == [
        "one"
    ]


async def test_same_event_id_in_two_sessions_is_two_messages(
    service: ThreadMemSessionService,
) -> None:
    first = await service.create_session(**A, session_id="s1")
    second = await service.create_session(**B, session_id="s1")
    await service.append_event(first, event(1))
    await service.append_event(second, event(1))
    for who in (A, B):
        loaded = await service.get_session(**who, session_id="s1")
        assert loaded is not None
        assert [e.id for e in loaded.events] == ["event-1"]


async def test_default_store_is_the_configured_async_store(
    async_store: AsyncThreadStore,
) -> None:
    default = ThreadMemSessionService()
    await default.create_session(**A, session_id="s1")
    explicit = ThreadMemSessionService(store=async_store)
    assert await explicit.get_session(**A, session_id="s1") is not None


@pytest.mark.slow
async def test_long_session_reads_only_a_slice_for_recent_events(
    service: ThreadMemSessionService,
) -> None:
    session = await service.create_session(**A, session_id="s1")
    for n in range(1, 151):
        await service.append_event(session, event(n))
    recent = await service.get_session(
        **A, session_id="s1", config=GetSessionConfig(num_recent_events=2)
    )
    assert recent is not None
    assert [e.id for e in recent.events] == ["event-149", "event-150"]
    since = await service.get_session(
        **A, session_id="s1", config=GetSessionConfig(after_timestamp=1010.0)
    )
    assert since is not None
    assert [e.id for e in since.events] == [f"event-{n}" for n in range(10, 151)]


# -- bad input ---------------------------------------------------------------------------------


class Unserialisable:
    pass


SELF_CONTAINING: dict[str, Any] = {}
SELF_CONTAINING["me"] = SELF_CONTAINING


BAD_CALLS: dict[str, Callable[[ThreadMemSessionService], Awaitable[Any]]] = {
    "create app_name": lambda s: s.create_session(app_name=1, user_id="u"),  # type: ignore[arg-type]
    "create user_id": lambda s: s.create_session(app_name="a", user_id=None),  # type: ignore[arg-type]
    "create session_id": lambda s: s.create_session(app_name="a", user_id="u", session_id=5),  # type: ignore[arg-type]
    "create state type": lambda s: s.create_session(app_name="a", user_id="u", state="x"),  # type: ignore[arg-type]
    "create state key": lambda s: s.create_session(app_name="a", user_id="u", state={1: 2}),  # type: ignore[dict-item]
    "create surrogate": lambda s: s.create_session(app_name="a\ud800", user_id="u"),
    "get config": lambda s: s.get_session(app_name="a", user_id="u", session_id="s", config="x"),  # type: ignore[arg-type]
    "get session_id": lambda s: s.get_session(app_name="a", user_id="u", session_id=None),  # type: ignore[arg-type]
    "list app_name": lambda s: s.list_sessions(app_name=None),  # type: ignore[arg-type]
    "list user_id": lambda s: s.list_sessions(app_name="a", user_id=3),  # type: ignore[arg-type]
    "delete user_id": lambda s: s.delete_session(app_name="a", user_id=3, session_id="s"),  # type: ignore[arg-type]
    "user state": lambda s: s.get_user_state(app_name="a", user_id=[]),  # type: ignore[arg-type]
    "append session": lambda s: s.append_event("s", event(1)),  # type: ignore[arg-type]
    "append event": lambda s: s.append_event(
        Session(id="s1", app_name=APP, user_id="alice"),
        {"id": "e"},  # type: ignore[arg-type]
    ),
    "append event output": lambda s: s.append_event(
        Session(id="s1", app_name=APP, user_id="alice"),
        Event(author="agent", invocation_id="i", output=Unserialisable()),
    ),
    "append state value containing itself": lambda s: s.append_event(
        Session(id="s1", app_name=APP, user_id="alice"),
        event(1, state={"user:k": SELF_CONTAINING}),
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
async def test_bad_input_raises_invalid_input_and_writes_nothing(
    service: ThreadMemSessionService, async_raw: Collection[dict[str, Any]], name: str
) -> None:
    await service.create_session(**A, session_id="s1", state={"k": 1})
    before = list(async_raw.find({}, sort=[("_id", 1)]))
    with pytest.raises(InvalidInputError):
        await BAD_CALLS[name](service)
    assert list(async_raw.find({}, sort=[("_id", 1)])) == before


async def test_store_must_be_an_async_store() -> None:
    with pytest.raises(InputTypeError, match="AsyncThreadStore"):
        ThreadMemSessionService(store="mongodb://x")  # type: ignore[arg-type]


async def test_thread_id_refuses_non_strings() -> None:
    with pytest.raises(InputTypeError):
        ThreadMemSessionService.thread_id("a", 1, "s")  # type: ignore[arg-type]


#: Where a name belongs: unhashable, so ADK's services refuse it with a TypeError.
NOT_A_NAME: Any = ["s1"]

#: Calls with an argument of the wrong type that ADK's own services refuse with a
#: TypeError, and the reference whose TypeError each is compared with: the in-memory
#: service, or the SQL service where only it raises one.
WRONG_TYPES: dict[str, tuple[str, Callable[[BaseSessionService], Awaitable[Any]]]] = {
    "create app_name": (
        "memory",
        lambda s: s.create_session(app_name=NOT_A_NAME, user_id="alice", session_id="s"),
    ),
    "create user_id": (
        "memory",
        lambda s: s.create_session(app_name=APP, user_id=NOT_A_NAME, session_id="s"),
    ),
    "create session_id": ("sql", lambda s: s.create_session(**A, session_id=NOT_A_NAME)),
    "get app_name": (
        "memory",
        lambda s: s.get_session(app_name=NOT_A_NAME, user_id="alice", session_id="s1"),
    ),
    "get user_id": (
        "memory",
        lambda s: s.get_session(app_name=APP, user_id=NOT_A_NAME, session_id="s1"),
    ),
    "list app_name": ("memory", lambda s: s.list_sessions(app_name=NOT_A_NAME)),
    "list user_id": ("memory", lambda s: s.list_sessions(app_name=APP, user_id=NOT_A_NAME)),
    "delete app_name": (
        "memory",
        lambda s: s.delete_session(app_name=NOT_A_NAME, user_id="alice", session_id="s1"),
    ),
    "delete user_id": (
        "memory",
        lambda s: s.delete_session(app_name=APP, user_id=NOT_A_NAME, session_id="s1"),
    ),
    "user state app_name": (
        "memory",
        lambda s: s.get_user_state(app_name=NOT_A_NAME, user_id="alice"),
    ),
    "user state user_id": (
        "memory",
        lambda s: s.get_user_state(app_name=APP, user_id=NOT_A_NAME),
    ),
}


@pytest.mark.parametrize("name", sorted(WRONG_TYPES))
async def test_a_wrong_type_adk_refuses_with_type_error_raises_input_type_error(
    service: ThreadMemSessionService, async_raw: Collection[dict[str, Any]], name: str
) -> None:
    kind, call = WRONG_TYPES[name]
    if kind == "memory":
        reference: BaseSessionService = InMemorySessionService()
        await reference.create_session(**A, session_id="s1", state={"k": 1})
        with pytest.raises(TypeError):
            await call(reference)
    else:
        async with sql_reference() as reference:
            await reference.create_session(**A, session_id="s1", state={"k": 1})
            with pytest.raises(TypeError):
                await call(reference)
    await service.create_session(**A, session_id="s1", state={"k": 1})
    before = list(async_raw.find({}, sort=[("_id", 1)]))
    with pytest.raises(InputTypeError) as raised:
        await call(service)
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, InvalidInputError)
    assert list(async_raw.find({}, sort=[("_id", 1)])) == before


# -- a real agent loop -------------------------------------------------------------------------


class ScriptedModel(BaseLlm):
    """Asks for the weather tool, then answers from the tool's result."""

    model: str = "scripted"

    @property
    def capabilities(self) -> LlmCapabilities:
        return LlmCapabilities(output_schema_and_tools=False)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1]
        replies = [p.function_response for p in last.parts or [] if p.function_response]
        if replies:
            sky = (replies[0].response or {}).get("sky")
            text = f"It is {sky} in Paris."
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))
            return
        call = types.FunctionCall(id="call-1", name="get_weather", args={"city": "Paris"})
        yield LlmResponse(
            content=types.Content(role="model", parts=[types.Part(function_call=call)])
        )


def get_weather(city: str) -> dict[str, str]:
    """Return the weather of a city."""
    return {"city": city, "sky": "sunny"}


RELOAD_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pymongo import AsyncMongoClient
    from threadmem_mongo import RoleThread, ThreadStore
    from threadmem_mongo.aio import AsyncThreadStore
    from threadmem_mongo.integrations.adk import ThreadMemSessionService
    from pymongo import MongoClient

    uri, database, collection = sys.argv[1:4]

    async def main():
        client = AsyncMongoClient(uri)
        try:
            service = ThreadMemSessionService(store=AsyncThreadStore(client[database][collection]))
            session = await service.get_session(app_name="weather", user_id="u1", session_id="s1")
            listed = await service.list_sessions(app_name="weather")
            return {
                "events": [e.model_dump(mode="json") for e in session.events],
                "state": session.state,
                "listed": [s.id for s in listed.sessions],
            }
        finally:
            await client.close()

    found = asyncio.run(main())
    sync_client = MongoClient(uri)
    thread = RoleThread.get(
        ThreadMemSessionService.thread_id("weather", "u1", "s1"),
        store=ThreadStore(sync_client[database][collection]),
    )
    found["roles"] = [m.role for m in thread.messages()]
    sync_client.close()
    print(json.dumps(found))
    """
)


@pytest.mark.slow
async def test_runner_with_scripted_model_persists_and_another_reader_reloads(
    service: ThreadMemSessionService,
    async_store: AsyncThreadStore,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    agent = LlmAgent(
        name="weather_agent",
        model=ScriptedModel(),
        tools=[get_weather],
        instruction="Answer weather questions with the tool.",
        output_key="last_answer",
    )
    runner = Runner(agent=agent, app_name="weather", session_service=service)
    await service.create_session(
        app_name="weather", user_id="u1", session_id="s1", state={"user:city": "Paris"}
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    seen = [e async for e in runner.run_async(user_id="u1", session_id="s1", new_message=question)]
    assert [e.author for e in seen] == ["weather_agent"] * 3
    stored = await service.get_session(app_name="weather", user_id="u1", session_id="s1")
    assert stored is not None
    assert stored.state == {"last_answer": "It is sunny in Paris.", "user:city": "Paris"}
    parts = [e.content.parts[0] for e in stored.events if e.content and e.content.parts]
    assert parts[0].text == "Weather in Paris?"
    assert parts[1].function_call is not None
    assert parts[2].function_response is not None
    assert parts[3].text == "It is sunny in Paris."
    expected = {
        "events": [e.model_dump(mode="json") for e in stored.events],
        "state": stored.state,
        "listed": ["s1"],
        "roles": ["user", "weather_agent", "weather_agent", "weather_agent"],
    }
    collection = async_store.collection
    if backend == "mongomock":
        other = ThreadMemSessionService(store=AsyncThreadStore(collection))
        again = await other.get_session(app_name="weather", user_id="u1", session_id="s1")
        assert again is not None
        listed = await other.list_sessions(app_name="weather")
        thread = RoleThread.get(ThreadMemSessionService.thread_id("weather", "u1", "s1"))
        found = {
            "events": [e.model_dump(mode="json") for e in again.events],
            "state": again.state,
            "listed": [s.id for s in listed.sessions],
            "roles": [m.role for m in thread.messages()],
        }
    else:
        uri = request.getfixturevalue("wire_uri" if backend == "wire" else "external_uri")
        completed = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-c",
                RELOAD_SCRIPT,
                uri,
                collection.database.name,
                collection.name,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        found = json.loads(completed.stdout)
    assert found == expected

    # A second turn continues the reloaded session.
    follow_up = types.Content(role="user", parts=[types.Part(text="And now?")])
    async for _ in runner.run_async(user_id="u1", session_id="s1", new_message=follow_up):
        pass
    final = await service.get_session(app_name="weather", user_id="u1", session_id="s1")
    assert final is not None
    assert len(final.events) == 8


# -- the documentation example -----------------------------------------------------------------


def _doc_example() -> tuple[str, str]:
    """The marked example of the docs page and the output the page shows for it."""
    text = DOC_PAGE.read_text()
    match = re.search(
        r"<!-- example -->\s*\n```python\n(.*?)```\s*\n"
        r"Output:\s*\n```text\n(.*?)```",
        text,
        re.S,
    )
    assert match is not None, "docs/integrations/adk.md lost its marked example"
    return match.group(1), match.group(2)


@pytest.mark.wire
@pytest.mark.slow
async def test_docs_example_runs_against_the_configured_store(wire_uri: str) -> None:
    code, output = _doc_example()
    env = {
        **os.environ,
        "THREADMEM_MONGODB_URI": wire_uri,
        "THREADMEM_DATABASE": f"tm_docs_{uuid.uuid4().hex}",
    }
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == output
