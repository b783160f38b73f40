"""The adapters from the event loops their frameworks make, on the wire lane.

Frameworks run their sync entry points on loops of their own: the Agents SDK's
``Runner.run_sync`` on each thread's default loop, ADK's ``Runner.run`` on a new loop in
a new thread per call, and LlamaIndex's sync ``Memory`` methods through
``asyncio.run`` (or, inside async code, on a throwaway loop in a helper thread). The
default async store serves each of them (``threadmem_mongo._loops``).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from agents import RunConfig, Runner
from google.adk.agents import LlmAgent
from google.adk.runners import Runner as AdkRunner
from google.genai import types
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.memory import Memory
from test_adk import ScriptedModel as AdkScriptedModel
from test_adk import get_weather as adk_weather_tool
from test_event_loops import THREADS, run_in_threads
from test_openai_agents import ScriptedModel, script, weather_agent

import threadmem_mongo.aio
from threadmem_mongo import _config, _loops
from threadmem_mongo.integrations.adk import ThreadMemSessionService
from threadmem_mongo.integrations.llama_index import ThreadMemChatStore
from threadmem_mongo.integrations.openai_agents import ThreadMemSession

pytestmark = pytest.mark.wire

T = TypeVar("T")


@pytest.fixture
def default_async_store(wire_uri: str) -> Iterator[None]:
    """``threadmem_mongo.aio``'s default store on a fresh database of the wire server."""
    threadmem_mongo.aio.configure(uri=wire_uri, database=f"tm_adapters_{uuid.uuid4().hex}")
    yield
    _config.reset()


def in_a_thread(work: Callable[[], T]) -> T:
    """Run ``work()`` in a new thread (no event loop set); return what it returns."""
    (result,) = run_in_threads(lambda _: work(), 1)
    return result


# -- the Agents SDK: Runner.run_sync ---------------------------------------------------------

CONFIG = RunConfig(tracing_disabled=True)  # no spans exported to OpenAI


def close_this_threads_loop() -> None:
    """``run_sync`` leaves the thread's default loop open for the next run; end it."""
    asyncio.get_event_loop_policy().get_event_loop().close()


@pytest.mark.usefixtures("default_async_store")
def test_runner_run_sync_in_threads_each_with_its_own_loop() -> None:
    def work(index: int) -> str:
        session = ThreadMemSession(f"run-sync-{index}")
        try:
            result = Runner.run_sync(
                weather_agent(ScriptedModel(script())),
                "Weather in Paris?",
                session=session,
                run_config=CONFIG,
            )
        finally:
            close_this_threads_loop()
        return str(result.final_output)

    assert run_in_threads(work) == ["It is sunny in Paris."] * THREADS

    async def stored(index: int) -> list[Any]:
        return await ThreadMemSession(f"run-sync-{index}").get_items()

    for index in range(THREADS):
        items = asyncio.run(stored(index))
        kinds = [item.get("type", "message") for item in items]
        assert kinds == ["message", "function_call", "function_call_output", "message"]


@pytest.mark.usefixtures("default_async_store")
def test_runner_run_sync_turns_on_one_thread_read_back_on_another() -> None:
    # pymongo's own operations start async generators, which asyncio warns about on a
    # loop past shutdown_asyncgens (run_sync shuts them down after each run).
    warnings.filterwarnings("ignore", "asynchronous generator", ResourceWarning)
    model = ScriptedModel(script())

    def two_turns() -> list[str]:
        session = ThreadMemSession("run-sync-turns")
        agent = weather_agent(model)
        try:
            return [
                str(Runner.run_sync(agent, text, session=session, run_config=CONFIG).final_output)
                for text in ("Weather in Paris?", "What did I ask?")
            ]
        finally:
            # run_sync closed what the library made for the loop; nothing is left.
            assert asyncio.get_event_loop_policy().get_event_loop() not in _loops._keepers
            close_this_threads_loop()

    assert in_a_thread(two_turns) == ["It is sunny in Paris.", "You asked about Paris."]
    items = in_a_thread(lambda: asyncio.run(ThreadMemSession("run-sync-turns").get_items()))
    assert len(items) == 6  # two questions, a tool call, its output, two answers
    # The second turn was sent the first turn's history.
    assert "sunny in Paris" in str(model.inputs[-1])


# -- ADK: the sync Runner.run ------------------------------------------------------------------


@pytest.mark.usefixtures("default_async_store")
def test_adk_sync_runner_runs_each_call_on_a_new_loop_and_thread() -> None:
    service = ThreadMemSessionService()
    agent = LlmAgent(
        name="weather_agent",
        model=AdkScriptedModel(),
        tools=[adk_weather_tool],
        instruction="Answer weather questions with the tool.",
    )
    runner = AdkRunner(agent=agent, app_name="weather", session_service=service)
    asyncio.run(service.create_session(app_name="weather", user_id="u1", session_id="s1"))
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    answers = []
    for _ in range(2):
        events = list(runner.run(user_id="u1", session_id="s1", new_message=question))
        answers.append(events[-1].content.parts[0].text)
    assert answers == ["It is sunny in Paris."] * 2

    async def stored() -> Any:
        return await service.get_session(app_name="weather", user_id="u1", session_id="s1")

    session = asyncio.run(stored())
    assert len(session.events) == 8  # per run: question, tool call, tool reply, answer


@pytest.mark.usefixtures("default_async_store")
def test_adk_appends_from_loops_in_threads_at_once_all_land() -> None:
    service = ThreadMemSessionService()

    async def create(index: int) -> None:
        await service.create_session(app_name="app", user_id="u", session_id=f"s{index}")

    def append(index: int) -> None:
        async def go() -> None:
            from google.adk.events.event import Event

            session = await service.get_session(app_name="app", user_id="u", session_id=f"s{index}")
            assert session is not None
            for n in range(3):
                content = types.Content(role="user", parts=[types.Part(text=f"{index}-{n}")])
                await service.append_event(
                    session, Event(author="user", invocation_id="i", content=content)
                )

        asyncio.run(go())

    for index in range(THREADS):
        asyncio.run(create(index))
    run_in_threads(append)

    async def texts(index: int) -> list[str]:
        session = await service.get_session(app_name="app", user_id="u", session_id=f"s{index}")
        assert session is not None
        return [event.content.parts[0].text for event in session.events]

    for index in range(THREADS):
        assert asyncio.run(texts(index)) == [f"{index}-{n}" for n in range(3)]


# -- LlamaIndex: Memory ----------------------------------------------------------------------


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


@pytest.mark.usefixtures("default_async_store")
def test_memory_sync_put_and_get_run_each_call_on_a_new_loop() -> None:
    def conversation() -> list[str | None]:
        # No loop in this thread: LlamaIndex runs each call with asyncio.run.
        memory = Memory.from_defaults(session_id="sync-memory", chat_store=ThreadMemChatStore())
        memory.put(user("hello"))
        memory.put(assistant("hi there"))
        memory.put_messages([user("how are you?"), assistant("fine")])
        return [message.content for message in memory.get()]

    assert in_a_thread(conversation) == ["hello", "hi there", "how are you?", "fine"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("default_async_store")
async def test_memory_from_defaults_with_history_inside_async_code_then_aget() -> None:
    history = [user("hello"), assistant("hi there")]
    # Inside a running loop, LlamaIndex stores chat_history on a loop of its own, in a
    # helper thread, and closes that loop without shutting down its async generators.
    memory = Memory.from_defaults(
        session_id="async-memory", chat_history=history, chat_store=ThreadMemChatStore()
    )
    assert [message.content for message in await memory.aget()] == ["hello", "hi there"]
    await memory.aput(user("and now?"))
    assert [m.content for m in await memory.aget()] == ["hello", "hi there", "and now?"]
    # The client LlamaIndex's closed loop was served by cannot be closed: dropped, pymongo
    # reports its dead tasks (documented). Done here, so that no later test sees it.
    reported: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = reported.append
    try:
        await threadmem_mongo.aio.close()
        _config.reset()
        _loops.drop_closed_loops()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert {type(report.exc_value) for report in reported} <= {RuntimeError, ResourceWarning}
