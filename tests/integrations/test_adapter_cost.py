"""What each adapter sends and receives, counted with command monitoring on the wire lane.

Every adapter is measured on a session of 10,000 items (the default inline limits, so
almost all of them in overflow pages), against the targets its MongoDB peers meet:

* the newest 20 items in at most 3 commands and 64 KB of replies;
* clearing the session in at most 3 commands and 8 KB of replies;
* appending one item in 1 command (Agents SDK, LangChain, LlamaIndex) or at most 2 (ADK
  ``append_event``, a Pydantic AI save of one new message), when no page move is due;
* an item's stored bytes at most 1.15x the peer's document for the same item (a model
  of the peer's document, built here as the peer builds it).

Sessions are filled through each adapter's own batch write (ADK has none: its thread is
made again with the adapter's stored messages). Indexes are created before counting.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import bson
import pytest
import pytest_asyncio
from bson import ObjectId
from pymongo import AsyncMongoClient, MongoClient
from traffic import Recorder

from threadmem_mongo import ThreadStore, V1RoleThread
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

pytestmark = [pytest.mark.wire, pytest.mark.slow]
async_test = pytest.mark.asyncio

ITEMS = 10_000
TEXT = "The quick brown fox jumps over the lazy dog while the bot answers the user. " * 2
KB = 1024
#: The largest ratio of our stored bytes per item to the peer's.
BYTES_RATIO = 1.15


class Traffic:
    """A store on a client whose commands are recorded, and the counting around a call."""

    def __init__(self, recorder: Recorder, store: AsyncThreadStore) -> None:
        self.recorder = recorder
        self.store = store

    async def measure(self, call: Callable[[], Awaitable[Any]]) -> tuple[list[str], int, Any]:
        self.recorder.reset()
        result = await call()
        return self.recorder.commands, self.recorder.reply_bytes, result


@pytest_asyncio.fixture
async def traffic(wire_uri: str) -> AsyncIterator[Traffic]:
    recorder = Recorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        wire_uri, serverSelectionTimeoutMS=5000, event_listeners=[recorder]
    )
    store = AsyncThreadStore(client[f"tm_cost_{uuid.uuid4().hex}"]["threads"])
    await store.ensure_indexes()
    try:
        yield Traffic(recorder, store)
    finally:
        await client.drop_database(store.collection.database.name)
        await client.close()


async def newest_message_bytes(store: AsyncThreadStore, thread_id: str) -> int:
    """The BSON size of the thread's newest message subdocument."""
    doc = await store.collection.find_one({"_id": thread_id}, {"messages": {"$slice": -1}})
    assert doc is not None
    return len(bson.encode(doc["messages"][-1]))


def peer_item_bytes(session_field: str, payload: Any, **extra: Any) -> int:
    """The BSON size of a peer's one-document-per-item record of ``payload``."""
    return len(
        bson.encode({"_id": ObjectId(), session_field: str(uuid.uuid4()), **extra, **payload})
    )


def assert_within(commands: list[str], received: int, most_commands: int, most_bytes: int) -> None:
    assert len(commands) <= most_commands, commands
    assert received <= most_bytes, (commands, received)


# -- OpenAI Agents SDK -------------------------------------------------------------------


@async_test
async def test_agents_session_meets_the_peer_cost_targets(traffic: Traffic) -> None:
    from threadmem_mongo.integrations.openai_agents import ThreadMemSession

    session = ThreadMemSession(str(uuid.uuid4()), store=traffic.store)
    items: list[Any] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} {TEXT}"}
        for i in range(ITEMS)
    ]
    await session.add_items(items)
    await session.add_items([{"role": "user", "content": "make room"}])  # a move, if due

    commands, received, newest = await traffic.measure(lambda: session.get_items(limit=20))
    assert [item["content"] for item in newest] == [
        item["content"] for item in [*items, {"content": "make room"}][-20:]
    ]
    assert_within(commands, received, 3, 64 * KB)

    commands, received, _ = await traffic.measure(
        lambda: session.add_items([{"role": "user", "content": TEXT}])
    )
    assert commands == ["update"]

    ours = await newest_message_bytes(traffic.store, session.session_id)
    # MongoDBSession: one document per add_items call, the items as JSON strings.
    peer = peer_item_bytes(
        "session_id",
        {"seq": 10_001, "generation": 0},
        message_data=[json.dumps({"role": "user", "content": TEXT})],
    )
    assert ours <= BYTES_RATIO * peer, (ours, peer)

    commands, received, _ = await traffic.measure(session.clear_session)
    assert_within(commands, received, 3, 8 * KB)
    assert await session.get_items() == []


# -- LangChain -----------------------------------------------------------------------------


@async_test
async def test_langchain_history_meets_the_peer_cost_targets(traffic: Traffic) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

    from threadmem_mongo.integrations.langchain import ThreadMemChatMessageHistory

    session_id = str(uuid.uuid4())
    history = ThreadMemChatMessageHistory(session_id, store=traffic.store, history_size=20)
    messages = [
        HumanMessage(f"{i} {TEXT}") if i % 2 == 0 else AIMessage(f"{i} {TEXT}")
        for i in range(ITEMS)
    ]
    await history.aadd_messages(messages)
    await history.aadd_messages([HumanMessage("make room")])

    commands, received, newest = await traffic.measure(history.aget_messages)
    assert [m.content for m in newest] == [m.content for m in messages[-19:]] + ["make room"]
    assert_within(commands, received, 3, 64 * KB)

    commands, _, _ = await traffic.measure(lambda: history.aadd_messages([HumanMessage(TEXT)]))
    assert commands == ["update"]

    ours = await newest_message_bytes(traffic.store, session_id)
    # MongoDBChatMessageHistory: one document per message, the message dict as JSON.
    peer = peer_item_bytes(
        "SessionId", {"History": json.dumps(message_to_dict(HumanMessage(TEXT)))}
    )
    assert ours <= BYTES_RATIO * peer, (ours, peer)

    commands, received, _ = await traffic.measure(history.aclear)
    assert_within(commands, received, 3, 8 * KB)
    assert await history.aget_messages() == []


def test_langchain_sync_history_reads_the_newest_in_one_command(wire_uri: str) -> None:
    from langchain_core.messages import HumanMessage

    from threadmem_mongo.integrations.langchain import ThreadMemChatMessageHistory

    recorder = Recorder()
    client: MongoClient[dict[str, Any]] = MongoClient(
        wire_uri, serverSelectionTimeoutMS=5000, event_listeners=[recorder]
    )
    try:
        store = ThreadStore(client[f"tm_cost_{uuid.uuid4().hex}"]["threads"])
        store.ensure_indexes()
        history = ThreadMemChatMessageHistory("sync", store=store, history_size=3)
        # Made with 251 messages, a thread holds the newest 51 inline, the rest in pages.
        history.add_messages([HumanMessage(str(i)) for i in range(251)])
        recorder.reset()
        assert [m.content for m in history.messages] == ["248", "249", "250"]
        assert recorder.commands == ["find"]
        recorder.reset()
        history.add_messages([HumanMessage("one more")])
        assert recorder.commands == ["update"]
        recorder.reset()
        history.clear()
        assert len(recorder.commands) <= 3
    finally:
        client.drop_database(store.collection.database.name)
        client.close()


# -- Pydantic AI ---------------------------------------------------------------------------


@async_test
async def test_pydantic_ai_store_meets_the_peer_cost_targets(traffic: Traffic) -> None:
    from pydantic_ai.conversation import Conversation
    from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart

    from threadmem_mongo.integrations.pydantic_ai import ThreadMemConversationStore

    store = ThreadMemConversationStore(store=traffic.store)
    conversation_id = str(uuid.uuid4())
    messages: list[Any] = [
        ModelRequest(parts=[UserPromptPart(f"{i} {TEXT}")])
        if i % 2 == 0
        else ModelResponse(parts=[TextPart(f"{i} {TEXT}")])
        for i in range(ITEMS)
    ]
    # Made with 10,001 messages, a thread holds the newest 51 inline, the rest in pages.
    messages.append(ModelRequest(parts=[UserPromptPart("one more")]))
    await store.save(Conversation(conversation_id=conversation_id, messages=messages))

    commands, received, loaded = await traffic.measure(
        lambda: store.load(conversation_id, limit=20)
    )
    assert loaded is not None
    assert loaded.messages == messages[-20:]
    assert_within(commands, received, 3, 64 * KB)

    whole = await store.load(conversation_id)
    assert whole is not None
    whole.messages.append(ModelRequest(parts=[UserPromptPart(TEXT)]))
    commands, _, _ = await traffic.measure(lambda: store.save(whole))
    assert len(commands) <= 2, commands

    commands, received, _ = await traffic.measure(lambda: store.delete(conversation_id))
    assert_within(commands, received, 3, 8 * KB)
    assert await store.load(conversation_id) is None


# -- LlamaIndex ----------------------------------------------------------------------------


@async_test
async def test_llama_index_store_meets_the_peer_cost_targets(traffic: Traffic) -> None:
    from llama_index.core.llms import ChatMessage

    from threadmem_mongo.integrations.llama_index import ThreadMemChatStore

    store = ThreadMemChatStore(store=traffic.store)
    key = str(uuid.uuid4())
    messages = [
        ChatMessage(role="user" if i % 2 == 0 else "assistant", content=f"{i} {TEXT}")
        for i in range(ITEMS)
    ]
    await store.add_messages(key, messages)
    await store.add_message(key, ChatMessage(role="user", content="make room"))

    async def newest() -> list[ChatMessage]:
        count = await store.count_messages(key)
        return await store.get_messages(key, offset=count - 20, limit=20)

    commands, received, found = await traffic.measure(newest)
    assert [m.content for m in found] == [m.content for m in messages[-19:]] + ["make room"]
    assert_within(commands, received, 3, 64 * KB)

    # Archived messages are filtered out by the server: counting and reading the active
    # ones after archiving the oldest 100 sends back only counts and the window.
    archived = await store.archive_oldest_messages(key, 100)
    assert len(archived) == 100
    commands, received, count = await traffic.measure(lambda: store.count_messages(key))
    assert (commands, count) == (["aggregate"], ITEMS + 1 - 100)
    assert received <= 16 * KB  # counts only: the thread's and each of its 200 pages'
    commands, received, active = await traffic.measure(lambda: store.get_messages(key, limit=5))
    assert [m.content for m in active] == [m.content for m in messages[100:105]]
    assert len(commands) <= 3
    assert received <= 64 * KB

    commands, _, _ = await traffic.measure(
        lambda: store.add_message(key, ChatMessage(role="user", content=TEXT))
    )
    assert commands == ["update"]

    ours = await newest_message_bytes(traffic.store, key)
    # MongoChatStore: one document per message, the message's fields as a document.
    peer = peer_item_bytes(
        "session_id", {"index": 10_001, **ChatMessage(role="user", content=TEXT).model_dump()}
    )
    assert ours <= BYTES_RATIO * peer, (ours, peer)

    commands, received, _ = await traffic.measure(lambda: store.delete_messages(key))
    assert_within(commands, received, 3, 8 * KB)
    assert await store.count_messages(key) == 0


# -- Google ADK ----------------------------------------------------------------------------


@async_test
async def test_adk_service_meets_the_peer_cost_targets(traffic: Traffic) -> None:
    from google.adk.events.event import Event
    from google.adk.sessions.base_session_service import GetSessionConfig
    from google.genai import types

    from threadmem_mongo.integrations import adk

    service = adk.ThreadMemSessionService(store=traffic.store)
    session = await service.create_session(app_name="app", user_id="u", session_id="s")
    thread_id = service.thread_id("app", "u", "s")

    def event(i: int, text: str) -> Event:
        return Event(
            id=f"e{i}",
            invocation_id="inv",
            author="user" if i % 2 == 0 else "agent",
            content=types.Content(role="user", parts=[types.Part(text=text)]),
            timestamp=1_700_000_000.0 + i,
        )

    # ADK has no batch append: the session's thread is made again with the stored
    # messages of 10,000 events, as appends would have left them.
    created = await AsyncRoleThread.get(thread_id, store=traffic.store)
    stored = [adk._event_to_message(thread_id, event(i, f"{i} {TEXT}")) for i in range(ITEMS)]
    await created.delete()
    await AsyncRoleThread.from_v1(
        V1RoleThread(
            id=thread_id,
            owner_id="u",
            public=False,
            name="s",
            metadata=created.metadata,
            messages=[m.to_v1() for m in stored],
            created=created.created,
            updated=created.updated,
        ),
        store=traffic.store,
    )

    config = GetSessionConfig(num_recent_events=20)
    commands, received, loaded = await traffic.measure(
        lambda: service.get_session(app_name="app", user_id="u", session_id="s", config=config)
    )
    assert loaded is not None
    assert [e.id for e in loaded.events] == [f"e{i}" for i in range(ITEMS - 20, ITEMS)]
    assert_within(commands, received, 3, 64 * KB)

    # A first append may move the oldest inline events to a page; the next is counted.
    await service.append_event(loaded, event(ITEMS, "make room"))
    commands, _, _ = await traffic.measure(
        lambda: service.append_event(loaded, event(ITEMS + 1, TEXT))
    )
    assert len(commands) <= 2, commands

    ours = await newest_message_bytes(traffic.store, thread_id)
    # MongoDbSessionService: one document per event, keyed by app, user, session and
    # event id, the event as JSON text.
    appended = event(ITEMS + 1, TEXT)
    key = {"app_name": "app", "user_id": "u", "session_id": "s", "event_id": appended.id}
    peer = len(
        bson.encode(
            {
                "_id": key,
                "app_name": "app",
                "user_id": "u",
                "session_id": "s",
                "timestamp": appended.timestamp,
                "revision": ITEMS + 2,
                "event_data": appended.model_dump_json(exclude_none=True),
            }
        )
    )
    assert ours <= BYTES_RATIO * peer, (ours, peer)

    commands, received, _ = await traffic.measure(
        lambda: service.delete_session(app_name="app", user_id="u", session_id="s")
    )
    assert_within(commands, received, 3, 8 * KB)
    assert await service.get_session(app_name="app", user_id="u", session_id="s") is None
    assert session.id == "s"
