"""Two asyncio bots talk through one thread, each watching it live.

Bot A (the asker) posts a question, then watches the thread until an answer comes. Bot B
(the answerer) watches the thread with ``async for event in thread.watch(...)`` and
answers every ``user`` message it sees. The bots share nothing but the thread id: each
holds its own ``AsyncRoleThread``, and either could run in another process or on
another machine.

``watch()`` needs change streams, so the store must be a replica set (one node is
enough). The example uses ``THREADMEM_MONGODB_URI`` (and ``THREADMEM_DATABASE``) if set,
else the embedded local store. It is bounded: three questions, and the answerer stops
once the thread has been quiet for ``QUIET_SECONDS``.
"""

from __future__ import annotations

import asyncio

from threadmem_mongo import V1Role
from threadmem_mongo.aio import AsyncRoleThread, close

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is 6 times 7?",
]
KNOWN = {
    "capital of france": "Paris.",
    "legs does a spider": "Eight.",
    "6 times 7": "42.",
}
ASKER = "user"
ANSWERER = "assistant"
#: The answerer stops after this many seconds without anything happening in the thread.
QUIET_SECONDS = 2.0
#: The asker gives up if an answer takes longer than this.
ANSWER_TIMEOUT = 30.0


def answer(question: str) -> str:
    """A stand-in for an LLM call."""
    lowered = question.lower()
    for key, reply in KNOWN.items():
        if key in lowered:
            return reply
    return "I don't know."


async def asker(thread_id: str, questions: list[str]) -> None:
    """Bot A: ask each question, waiting for its answer before the next one."""
    thread = await AsyncRoleThread.get(thread_id)  # this bot's own view of the thread
    for question in questions:
        asked = await thread.post(ASKER, question)
        print(f"A asks:    {question}", flush=True)
        # Watching from the question on: an answer posted before the stream opened is
        # still reported, so there is no race with the other bot.
        async for event in thread.watch(after_message=asked.id, idle_timeout=ANSWER_TIMEOUT):
            message = event.message
            if event.kind == "message_added" and message is not None and message.role == ANSWERER:
                break
        else:
            raise RuntimeError(f"no answer to {question!r} within {ANSWER_TIMEOUT} s")


async def answerer(thread_id: str, after_message: str) -> int:
    """Bot B: answer every user message posted after ``after_message``; return how many."""
    thread = await AsyncRoleThread.get(thread_id)
    answered = 0
    async for event in thread.watch(after_message=after_message, idle_timeout=QUIET_SECONDS):
        message = event.message
        if event.kind == "message_added" and message is not None and message.role == ASKER:
            reply = answer(message.text)
            await thread.post(ANSWERER, reply, metadata={"in_reply_to": message.id})
            print(f"B answers: {reply}", flush=True)
            answered += 1
    return answered


async def main(questions: list[str] | None = None) -> AsyncRoleThread:
    questions = QUESTIONS if questions is None else questions
    thread = await AsyncRoleThread.create(
        owner_id="demo",
        name="Quiz",
        role_mapping={
            ASKER: V1Role(name=ASKER, user_id="bot-a", user_name="Asker", icon=""),
            ANSWERER: V1Role(name=ANSWERER, user_id="bot-b", user_name="Answerer", icon=""),
        },
    )
    opening = await thread.post("system", "Bot B answers the questions bot A asks.")
    try:
        _, answered = await asyncio.gather(
            asker(thread.id, questions), answerer(thread.id, opening.id)
        )
        await thread.refresh()
        print(f"\nTranscript ({answered} answers, version {thread.version}):")
        for message in await thread.messages():
            print(f"  {message.role}: {message.text}")
    finally:
        await close()
    return thread


if __name__ == "__main__":
    asyncio.run(main())
