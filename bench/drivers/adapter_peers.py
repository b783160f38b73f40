"""Drives one agent-framework session store, ours or a peer, for ``bench.adapters``.

A line driver (see ``bench.venvs.LineDriver``): the first JSON line names the case and
the server; each later line is one command, answered with one JSON line once done:

* ``{"op": "prefill", "length": L}``: a new session holding L items, written through the
  framework's batch call where it has one (see each case).
* ``{"op": "append", "count": n}``: n appends of one framework item, each timed; answers
  their mean.
* ``{"op": "read", "count": n}``: n reads of the case's read; answers their mean and how
  many items the last one returned.
* ``{"op": "append_floor", "count": n}`` (threadmem-mongo cases only): n appends
  alternating with n raw pymongo ``$push``es of the same stored message into a copy of
  the session's thread (same collection indexes, same length); answers both means.
* ``{"op": "traffic", "what": "append" | "read" | "recent" | "clear"}``: one more
  append, read, read of the newest 20 or (last) deletion of the session, untimed, with
  what it sent counted by pymongo command monitoring: the commands' names and the bytes
  of their replies.
* ``{"op": "about"}``: the versions of the store's package and of pymongo.

The timing happens here, in the store's own process, so the pipe costs nothing. The
threadmem-mongo cases import the library only when chosen: the peers' venvs lack it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

import bson
from pymongo import monitoring

#: Items each read asks for, where the interface can ask for only the newest.
RECENT = 20


class CommandCounter(monitoring.CommandListener):
    """Records the commands of every client of this process (registered before any is
    made), for the ``traffic`` op."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.reply_bytes = 0

    def started(self, event: Any) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event: Any) -> None:
        self.reply_bytes += len(bson.encode(event.reply))

    def failed(self, event: Any) -> None:
        pass

    def reset(self) -> None:
        self.commands = []
        self.reply_bytes = 0


COUNTER = CommandCounter()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


class Case:
    """One store behind one framework interface."""

    #: Distribution whose version the page shows.
    package = ""

    def __init__(self, config: dict[str, Any]) -> None:
        self.uri: str = config["uri"]
        self.database: str = config["database"]
        self.collection: str = config["collection"]
        self.text: str = config["text"]

    async def setup(self) -> None:
        """Open clients and create indexes, before anything is timed."""

    async def prefill(self, length: int) -> None:
        raise NotImplementedError

    async def append(self) -> None:
        raise NotImplementedError

    async def read(self) -> int:
        """Run the case's read; return how many items it gave."""
        raise NotImplementedError

    async def recent(self) -> int:
        """Read the newest ``RECENT`` items, as the interface allows (the case's read
        where that is what it reads already); return how many it gave."""
        return await self.read()

    async def clear(self) -> None:
        """Delete the session, items and all."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the clients."""


class Floor:
    """The raw pymongo floor of a threadmem-mongo case: ``update_one`` ``$push`` of the
    message the adapter stored last, with a fresh id, into a copy of its thread."""

    def __init__(self, uri: str, database: str, collection: str) -> None:
        from pymongo import MongoClient

        from threadmem_mongo import ThreadStore

        self.client: Any = MongoClient(uri)
        self.source = self.client[database][collection]
        self.copies = self.client[database][f"{collection}_floor"]
        ThreadStore(self.copies).ensure_indexes()
        self.copy_id = ""
        self.message: dict[str, Any] = {}

    def copy(self, thread_id: str) -> None:
        """Copy the thread, every message id renewed (message ids are unique)."""
        document = self.source.find_one({"_id": thread_id})
        if document is None:
            raise RuntimeError(f"thread {thread_id!r} not found")
        for message in document["messages"]:
            message["id"] = str(uuid.uuid4())
        document["_id"] = self.copy_id = f"floor-{uuid.uuid4()}"
        self.copies.insert_one(document)
        self.message = document["messages"][-1]

    def push(self) -> None:
        message = {**self.message, "id": str(uuid.uuid4())}
        self.copies.update_one({"_id": self.copy_id}, {"$push": {"messages": message}})

    def close(self) -> None:
        self.client.close()


class Ours:
    """What the threadmem-mongo cases share: the id of the session's thread."""

    def thread_id(self) -> str:
        raise NotImplementedError


# -- OpenAI Agents SDK ----------------------------------------------------------------------


class AgentsCase(Case):
    """``Session.add_items([item])`` and ``get_items(limit=20)``."""

    package = "openai-agents"
    #: Items per ``add_items`` call of the prefill; None: all in one call.
    prefill_batch: int | None = None

    async def setup(self) -> None:
        from pymongo import AsyncMongoClient

        self.client: Any = AsyncMongoClient(self.uri)
        self.session: Any = None

    def item(self, index: int) -> dict[str, Any]:
        return {"role": "user" if index % 2 == 0 else "assistant", "content": self.text}

    def make_session(self, session_id: str) -> Any:
        raise NotImplementedError

    async def prefill(self, length: int) -> None:
        self.session = self.make_session(f"agents-{length}-{uuid.uuid4()}")
        # A first, empty read lets a store set itself up (MongoDBSession creates its
        # indexes on first use) outside the timed calls.
        await self.session.get_items(limit=1)
        items = [self.item(i) for i in range(length)]
        step = self.prefill_batch or max(length, 1)
        for start in range(0, length, step):
            await self.session.add_items(items[start : start + step])

    async def append(self) -> None:
        await self.session.add_items([self.item(0)])

    async def read(self) -> int:
        return len(await self.session.get_items(limit=RECENT))

    async def clear(self) -> None:
        await self.session.clear_session()

    async def close(self) -> None:
        await self.client.close()


class OursAgents(AgentsCase, Ours):
    package = "threadmem-mongo"

    def thread_id(self) -> str:
        return str(self.session.session_id)

    async def setup(self) -> None:
        await super().setup()
        from threadmem_mongo.aio import AsyncThreadStore

        self.store = AsyncThreadStore(self.client[self.database][self.collection])
        await self.store.ensure_indexes()

    def make_session(self, session_id: str) -> Any:
        from threadmem_mongo.integrations.openai_agents import ThreadMemSession

        return ThreadMemSession(session_id, store=self.store)


class PeerAgents(AgentsCase):
    # MongoDBSession stores one document per add_items call, so a session built by
    # conversation turns (two items each) is what its reads meet in use. Ours stores one
    # message per item however the items are batched, so one call builds the same thread.
    prefill_batch = 2

    def make_session(self, session_id: str) -> Any:
        from agents.extensions.memory.mongodb_session import MongoDBSession

        return MongoDBSession(
            session_id,
            client=self.client,
            database=self.database,
            sessions_collection=f"{self.collection}_sessions",
            messages_collection=f"{self.collection}_messages",
        )


# -- LangChain (sync: langchain-mongodb has no async methods) --------------------------------


class LangChainCase(Case):
    """``add_messages([message])`` and ``messages`` (the whole history)."""

    package = "langchain-mongodb"

    async def setup(self) -> None:
        from pymongo import MongoClient

        self.client: Any = MongoClient(self.uri)
        self.history: Any = None

    def message(self, index: int) -> Any:
        from langchain_core.messages import AIMessage, HumanMessage

        return (HumanMessage if index % 2 == 0 else AIMessage)(content=self.text)

    def make_history(self, session_id: str, history_size: int | None = None) -> Any:
        raise NotImplementedError

    async def prefill(self, length: int) -> None:
        self.history = self.make_history(f"lc-{length}-{uuid.uuid4()}")
        if length:
            self.history.add_messages([self.message(i) for i in range(length)])

    async def append(self) -> None:
        self.history.add_messages([self.message(0)])

    async def read(self) -> int:
        return len(self.history.messages)

    async def recent(self) -> int:
        return len(self.make_history(self.history.session_id, RECENT).messages)

    async def clear(self) -> None:
        self.history.clear()

    async def close(self) -> None:
        self.client.close()


class OursLangChain(LangChainCase, Ours):
    package = "threadmem-mongo"

    def thread_id(self) -> str:
        return str(self.history.session_id)

    async def setup(self) -> None:
        await super().setup()
        from threadmem_mongo import ThreadStore

        self.store = ThreadStore(self.client[self.database][self.collection])
        self.store.ensure_indexes()

    def make_history(self, session_id: str, history_size: int | None = None) -> Any:
        from threadmem_mongo.integrations.langchain import ThreadMemChatMessageHistory

        return ThreadMemChatMessageHistory(session_id, store=self.store, history_size=history_size)


class PeerLangChain(LangChainCase):
    def make_history(self, session_id: str, history_size: int | None = None) -> Any:
        from langchain_mongodb.chat_message_histories import MongoDBChatMessageHistory

        return MongoDBChatMessageHistory(
            None,
            session_id,
            database_name=self.database,
            collection_name=self.collection,
            client=self.client,
            history_size=history_size,
        )


# -- LlamaIndex ----------------------------------------------------------------------------


class LlamaCase(Case):
    """Async ``add_message(key, message)`` and the key's whole history."""

    package = "llama-index-core"

    def message(self, index: int) -> Any:
        from llama_index.core.llms import ChatMessage

        return ChatMessage(role="user" if index % 2 == 0 else "assistant", content=self.text)


class OursLlama(LlamaCase, Ours):
    package = "threadmem-mongo"

    def thread_id(self) -> str:
        return self.key

    async def setup(self) -> None:
        from pymongo import AsyncMongoClient

        from threadmem_mongo.aio import AsyncThreadStore
        from threadmem_mongo.integrations.llama_index import ThreadMemChatStore

        self.client: Any = AsyncMongoClient(self.uri)
        store = AsyncThreadStore(self.client[self.database][self.collection])
        await store.ensure_indexes()
        self.chat_store = ThreadMemChatStore(store=store)
        self.key = ""

    async def prefill(self, length: int) -> None:
        self.key = f"llama-{length}-{uuid.uuid4()}"
        if length:
            await self.chat_store.add_messages(self.key, [self.message(i) for i in range(length)])

    async def append(self) -> None:
        await self.chat_store.add_message(self.key, self.message(0))

    async def read(self) -> int:
        return len(await self.chat_store.get_messages(self.key))

    async def recent(self) -> int:
        count = await self.chat_store.count_messages(self.key)
        found = await self.chat_store.get_messages(
            self.key, offset=max(0, count - RECENT), limit=RECENT
        )
        return len(found)

    async def clear(self) -> None:
        await self.chat_store.delete_messages(self.key)

    async def close(self) -> None:
        await self.client.close()


class PeerLlama(LlamaCase):
    package = "llama-index-storage-chat-store-mongo"

    async def setup(self) -> None:
        from llama_index.storage.chat_store.mongo import MongoChatStore
        from pymongo import AsyncMongoClient, MongoClient

        self.client: Any = MongoClient(self.uri)
        self.async_client: Any = AsyncMongoClient(self.uri)
        # MongoChatStore creates no index; every call filters on session_id and sorts
        # on index, so the benchmark gives it that index rather than collection scans.
        self.client[self.database][self.collection].create_index([("session_id", 1), ("index", 1)])
        self.chat_store = MongoChatStore(
            db_name=self.database,
            collection_name=self.collection,
            mongo_client=self.client,
            amongo_client=self.async_client,
        )
        self.key = ""

    async def prefill(self, length: int) -> None:
        self.key = f"llama-{length}-{uuid.uuid4()}"
        if length:
            await self.chat_store.aset_messages(self.key, [self.message(i) for i in range(length)])

    async def append(self) -> None:
        await self.chat_store.async_add_message(self.key, self.message(0))

    async def read(self) -> int:
        return len(await self.chat_store.aget_messages(self.key))

    async def clear(self) -> None:
        await self.chat_store.adelete_messages(self.key)

    async def close(self) -> None:
        self.client.close()
        await self.async_client.close()


# -- Google ADK ----------------------------------------------------------------------------


class AdkCase(Case):
    """``append_event(session, event)`` and ``get_session(num_recent_events=20)``."""

    package = "google-adk"
    app = "bench"
    user = "user"

    def event(self, index: int) -> Any:
        from google.adk.events.event import Event
        from google.genai import types

        role = "user" if index % 2 == 0 else "model"
        return Event(
            author="user" if role == "user" else "assistant",
            invocation_id=f"inv-{index // 2}",
            content=types.Content(role=role, parts=[types.Part(text=self.text)]),
        )

    async def prefill(self, length: int) -> None:
        self.sid = f"adk-{length}-{uuid.uuid4()}"
        session = await self.service.create_session(
            app_name=self.app, user_id=self.user, session_id=self.sid
        )
        await self.fill(session, length)
        self.session = await self.service.get_session(
            app_name=self.app, user_id=self.user, session_id=self.sid, config=self.config(0)
        )

    async def fill(self, session: Any, length: int) -> None:
        for i in range(length):
            await self.service.append_event(session, self.event(i))

    @staticmethod
    def config(recent: int) -> Any:
        from google.adk.sessions.base_session_service import GetSessionConfig

        return GetSessionConfig(num_recent_events=recent)

    async def append(self) -> None:
        await self.service.append_event(self.session, self.event(0))

    async def read(self) -> int:
        session = await self.service.get_session(
            app_name=self.app, user_id=self.user, session_id=self.sid, config=self.config(RECENT)
        )
        return len(session.events)

    async def clear(self) -> None:
        await self.service.delete_session(app_name=self.app, user_id=self.user, session_id=self.sid)


class OursAdk(AdkCase, Ours):
    package = "threadmem-mongo"

    def thread_id(self) -> str:
        from threadmem_mongo.integrations.adk import ThreadMemSessionService

        return ThreadMemSessionService.thread_id(self.app, self.user, self.sid)

    async def setup(self) -> None:
        from pymongo import AsyncMongoClient

        from threadmem_mongo.aio import AsyncThreadStore
        from threadmem_mongo.integrations.adk import ThreadMemSessionService

        self.client: Any = AsyncMongoClient(self.uri)
        self.store = AsyncThreadStore(self.client[self.database][self.collection])
        await self.store.ensure_indexes()
        self.service = ThreadMemSessionService(store=self.store)

    async def fill(self, session: Any, length: int) -> None:
        """The session's thread written again with the events, each stored as
        ``append_event`` stores it, in one creation that puts the oldest in overflow
        pages as appends would have.

        10,000 ``append_event`` calls would take most of the run on SecantusDB; the
        timed appends afterwards do go through ``append_event``.
        """
        from threadmem_mongo import V1RoleThread
        from threadmem_mongo.aio import AsyncRoleThread
        from threadmem_mongo.integrations import adk

        if not length:
            return
        thread_id = adk.ThreadMemSessionService.thread_id(self.app, self.user, self.sid)
        thread = await AsyncRoleThread.get(thread_id, last=0, store=self.store)
        events = [adk._event_to_message(thread_id, self.event(i)) for i in range(length)]
        schema = V1RoleThread(
            id=thread_id,
            owner_id=thread.owner_id,
            public=thread.public,
            name=thread.name,
            metadata=thread.metadata,
            messages=[message.to_v1() for message in events],
            created=thread.created,
            updated=time.time(),
        )
        await thread.delete()
        await AsyncRoleThread.from_v1(schema, store=self.store)

    async def close(self) -> None:
        await self.client.close()


class PeerAdk(AdkCase):
    async def setup(self) -> None:
        from google.adk.integrations.mongodb import MongoDbSessionService
        from pymongo import MongoClient

        self.client: Any = MongoClient(self.uri)
        self.service = MongoDbSessionService(
            database_name=self.database,
            mongo_client=self.client,
            sessions_collection=f"{self.collection}_sessions",
            events_collection=f"{self.collection}_events",
            app_state_collection=f"{self.collection}_app_states",
            user_state_collection=f"{self.collection}_user_states",
        )

    async def fill(self, session: Any, length: int) -> None:
        """The events as ``append_event`` stores them, inserted in batches.

        Each event document is the one ``append_event`` inserts (its key, timestamp,
        revision and JSON); the session's revision and update time are then set as the
        last append would leave them.
        """
        if not length:
            return
        events = self.client[self.database][f"{self.collection}_events"]
        sessions = self.client[self.database][f"{self.collection}_sessions"]
        key = self.service._session_key(self.app, self.user, self.sid)
        docs = []
        timestamp = 0.0
        for i in range(length):
            event = self.event(i)
            timestamp = event.timestamp
            docs.append(
                {
                    "_id": self.service._event_key(self.app, self.user, self.sid, event.id),
                    "app_name": self.app,
                    "user_id": self.user,
                    "session_id": self.sid,
                    "timestamp": event.timestamp,
                    "revision": i + 1,
                    "event_data": event.model_dump_json(exclude_none=True),
                }
            )
        for start in range(0, length, 1000):
            events.insert_many(docs[start : start + 1000])
        sessions.update_one({"_id": key}, {"$set": {"revision": length, "update_time": timestamp}})

    async def close(self) -> None:
        self.client.close()


# -- Pydantic AI ---------------------------------------------------------------------------


class PydanticCase(Case):
    """``save(conversation)`` after one new message, and ``load(id, limit=20)``."""

    package = "pydantic-ai-slim"

    def make_store(self) -> Any:
        raise NotImplementedError

    def message(self, index: int) -> Any:
        from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart

        if index % 2 == 0:
            return ModelRequest(parts=[UserPromptPart(content=self.text)])
        return ModelResponse(parts=[TextPart(content=self.text)])

    async def prefill(self, length: int) -> None:
        from pydantic_ai.conversation import Conversation

        self.conversation_id = f"pai-{length}-{uuid.uuid4()}"
        self.conversation = Conversation(
            conversation_id=self.conversation_id,
            messages=[self.message(i) for i in range(length)],
        )
        await self.store.save(self.conversation)

    async def append(self) -> None:
        self.conversation.messages.append(self.message(0))
        await self.store.save(self.conversation)

    async def read(self) -> int:
        loaded = await self.store.load(self.conversation_id, limit=RECENT)
        return len(loaded.messages)

    async def clear(self) -> None:
        await self.store.delete(self.conversation_id)


class OursPydantic(PydanticCase, Ours):
    package = "threadmem-mongo"

    def thread_id(self) -> str:
        return self.conversation_id

    async def setup(self) -> None:
        from pymongo import AsyncMongoClient

        from threadmem_mongo.aio import AsyncThreadStore
        from threadmem_mongo.integrations.pydantic_ai import ThreadMemConversationStore

        self.client: Any = AsyncMongoClient(self.uri)
        store = AsyncThreadStore(self.client[self.database][self.collection])
        await store.ensure_indexes()
        self.store = ThreadMemConversationStore(store=store)

    async def close(self) -> None:
        await self.client.close()


class InMemoryPydantic(PydanticCase):
    async def setup(self) -> None:
        from pydantic_ai.conversation_store import InMemoryConversationStore

        self.store = InMemoryConversationStore()


CASES: dict[str, type[Case]] = {
    "ours-agents": OursAgents,
    "peer-agents": PeerAgents,
    "ours-langchain": OursLangChain,
    "peer-langchain": PeerLangChain,
    "ours-llama": OursLlama,
    "peer-llama": PeerLlama,
    "ours-adk": OursAdk,
    "peer-adk": PeerAdk,
    "ours-pydantic": OursPydantic,
    "peer-pydantic": InMemoryPydantic,
}


async def _timed_mean(call: Callable[[], Awaitable[Any]], count: int) -> tuple[float, Any]:
    total = 0.0
    result: Any = None
    for _ in range(count):
        start = time.perf_counter()
        result = await call()
        total += time.perf_counter() - start
    return total / count, result


async def _append_floor(case: Case, floor: Floor, count: int) -> dict[str, float]:
    """Alternate ``count`` appends with ``count`` floor pushes (order swapped each pair)."""
    ours = raw = 0.0
    for i in range(count):
        for step in ("ours", "floor") if i % 2 == 0 else ("floor", "ours"):
            start = time.perf_counter()
            if step == "ours":
                await case.append()
                ours += time.perf_counter() - start
            else:
                floor.push()
                raw += time.perf_counter() - start
    return {"mean": ours / count, "floor": raw / count}


async def _serve(case: Case, lines: Any) -> None:
    floor = Floor(case.uri, case.database, case.collection) if isinstance(case, Ours) else None
    try:
        await _answer(case, lines, floor)
    finally:
        if floor is not None:
            floor.close()


async def _answer(case: Case, lines: Any, floor: Floor | None) -> None:
    for line in lines:
        command = json.loads(line)
        op = command["op"]
        if op == "prefill":
            start = time.perf_counter()
            await case.prefill(command["length"])
            answer: dict[str, Any] = {"seconds": time.perf_counter() - start}
            if floor is not None and isinstance(case, Ours):
                # A prefilled message is stored as an appended one is (same conversion).
                floor.copy(case.thread_id())
        elif op == "append_floor":
            if floor is None:
                raise ValueError("append_floor needs a threadmem-mongo case, after prefill")
            answer = await _append_floor(case, floor, command["count"])
        elif op == "append":
            mean, _ = await _timed_mean(case.append, command["count"])
            answer = {"mean": mean}
        elif op == "read":
            mean, items = await _timed_mean(case.read, command["count"])
            answer = {"mean": mean, "items": items}
        elif op == "traffic":
            calls = {
                "append": case.append,
                "read": case.read,
                "recent": case.recent,
                "clear": case.clear,
            }
            call = calls[command["what"]]
            COUNTER.reset()
            await call()
            answer = {"commands": COUNTER.commands, "reply_bytes": COUNTER.reply_bytes}
        elif op == "about":
            answer = {"version": _version(case.package), "pymongo": _version("pymongo")}
        else:
            raise ValueError(f"unknown op {op!r}")
        print(json.dumps(answer), flush=True)


def main() -> int:
    config = json.loads(sys.stdin.readline())
    # Before any client exists: a registered listener reaches the clients made after it.
    monitoring.register(COUNTER)
    case = CASES[config["case"]](config)
    # One loop for the driver's life: the async clients are bound to the loop they
    # first ran on.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(case.setup())
        print(json.dumps({"ready": True}), flush=True)
        try:
            loop.run_until_complete(_serve(case, sys.stdin))
        finally:
            loop.run_until_complete(case.close())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
