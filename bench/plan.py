"""What a run measures: sizes and repetitions for the full run and for ``--smoke``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: The text of every message the benchmark posts (about 200 bytes, a short chat turn).
TEXT = (
    "Benchmark message: the agent looked at the screen, found the settings button in the "
    "top right corner, clicked it, and is now waiting for the dialog to open before it "
    "types the new value."
)


def prefill_messages(count: int) -> list[dict[str, str]]:
    """OpenAI-style messages, alternating user and assistant, all of :data:`TEXT`."""
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": TEXT} for i in range(count)]


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    mode: str
    #: Messages already in the thread when the timed posts start.
    lengths: tuple[int, ...]
    #: Timed posts per repetition (a sample is their mean).
    posts_per_rep: int
    #: Repetitions of every latency figure.
    reps: int
    #: "Post N messages into a new thread" workloads, and their repetitions.
    post_n: tuple[int, ...]
    post_n_reps: int
    #: Thread length of the round-trip and bytes table.
    ops_length: int
    #: Threads per owner in the "list threads" operation.
    list_threads: int
    #: Concurrent writers, posts per writer, repetitions.
    writers: tuple[int, ...]
    posts_per_writer: int
    concurrency_reps: int
    #: Messages in the thread the memory section loads.
    memory_length: int
    memory_reps: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Plan(
    mode="full",
    lengths=(10, 100, 1000, 5000),
    posts_per_rep=10,
    reps=5,
    post_n=(10, 100, 1000),
    post_n_reps=3,
    ops_length=100,
    list_threads=3,
    writers=(1, 2, 4, 8),
    posts_per_writer=25,
    concurrency_reps=3,
    memory_length=5000,
    memory_reps=3,
)

SMOKE = Plan(
    mode="smoke",
    lengths=(10, 100),
    posts_per_rep=5,
    reps=3,
    post_n=(10, 100),
    post_n_reps=3,
    ops_length=100,
    list_threads=3,
    writers=(1, 2, 4, 8),
    posts_per_writer=5,
    concurrency_reps=1,
    memory_length=500,
    memory_reps=1,
)
