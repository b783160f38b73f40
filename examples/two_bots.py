"""Two bots share one thread, each through its own RoleThread object.

Each bot would normally run in its own process; here they take turns in one process,
but they share nothing except the thread id. Each bot holds its own ``RoleThread``,
re-reads the thread before it answers, and posts under its own role name.

The example uses ``THREADMEM_MONGODB_URI`` (and ``THREADMEM_DATABASE``) if set, else the
embedded local store.
"""

from __future__ import annotations

from collections.abc import Callable

from threadmem_mongo import RoleThread, V1Role

Reply = Callable[[list[dict[str, str]]], str]


# --8<-- [start:prompt]
def as_prompt(thread: RoleThread, me: str) -> list[dict[str, str]]:
    """Return the thread as chat messages seen by the bot whose role is ``me``."""
    prompt = []
    for message in thread.messages(include_private=False):
        if message.role == me:
            prompt.append({"role": "assistant", "content": message.text})
        else:
            prompt.append({"role": "user", "content": f"{message.role}: {message.text}"})
    return prompt


# --8<-- [end:prompt]


# --8<-- [start:bot]
class Bot:
    """A participant that answers the latest message of a shared thread."""

    def __init__(self, name: str, thread_id: str, reply: Reply) -> None:
        self.name = name
        self.thread = RoleThread.get(thread_id)  # this bot's own view of the thread
        self.reply = reply

    def take_turn(self) -> str:
        self.thread.refresh()  # pick up what the other bot posted since our last turn
        text = self.reply(as_prompt(self.thread, self.name))
        self.thread.post(self.name, text)
        return text


# --8<-- [end:bot]


def counting_reply(prompt: list[dict[str, str]]) -> str:
    """A stand-in for an LLM call: answer with the next number."""
    last = prompt[-1]["content"].rsplit(" ", 1)[-1]
    return f"{int(last) + 1}" if last.isdigit() else "1"


def describe(thread: RoleThread) -> str:
    return f"{len(thread.messages())} messages, version {thread.version}"


def main(turns: int = 4) -> RoleThread:
    # --8<-- [start:setup]
    thread = RoleThread(
        owner_id="demo",
        name="Counting game",
        role_mapping={
            "alice": V1Role(name="alice", user_id="bot-a", user_name="Alice", icon=""),
            "bob": V1Role(name="bob", user_id="bot-b", user_name="Bob", icon=""),
        },
    )
    thread.post("user", "Count up from 1, taking turns.")

    alice = Bot("alice", thread.id, counting_reply)
    bob = Bot("bob", thread.id, counting_reply)
    # --8<-- [end:setup]

    # --8<-- [start:turns]
    for turn in range(turns):
        bot = alice if turn % 2 == 0 else bob
        print(f"{bot.name}: {bot.take_turn()}")

    for bot in (alice, bob):
        print(f"{bot.name}'s view: {describe(bot.thread)}")
    alice.thread.refresh()
    print(f"alice's view after refresh(): {describe(alice.thread)}")
    # --8<-- [end:turns]
    return thread


if __name__ == "__main__":
    main()
