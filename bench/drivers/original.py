"""Drives the original ``threadmem`` (0.2.39, SQLite) in its own venv.

A line protocol, so the harness can alternate the original's posts with its own: the
first line on stdin is the configuration (JSON), each later line a command, and each
command gets one JSON line back on stdout (the library's own prints go to stderr).
Times are seconds, taken inside this process. The caller points the SQLite file at a
temporary directory through ``AGENTSEA_HOME`` / ``AGENTSEA_DB_DIR`` (see
``threadmem/config.py``), so nothing lands in ``~/.agentsea``.

Commands:

* ``{"op": "workloads"}``: create (``RoleThread(owner_id=...)``); post N into a new
  thread (total time); and per thread length L, a thread of L messages stored in one
  save (``RoleThread.from_v1(...).save()``), ``RoleThread.find(id=...)`` and
  ``to_openai()`` of the result.
* ``{"op": "prepare", "length": L}``: store a thread of L messages for ``posts``.
* ``{"op": "posts", "length": L, "count": K}``: K posts into that thread.
* ``{"op": "post_new", "count": K}``: K posts into a new thread (total time).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from importlib import metadata
from typing import Any, TextIO


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


class Driver:
    def __init__(self, config: dict[str, Any]) -> None:
        from threadmem import RoleThread

        self.RoleThread = RoleThread
        self.text: str = config["text"]
        self.config = config
        self.prepared: dict[int, Any] = {}

    def prefilled(self, length: int) -> Any:
        from threadmem import V1RoleThread
        from threadmem.server.models import V1RoleMessage

        thread_id = str(uuid.uuid4())
        now = time.time()
        messages = [
            V1RoleMessage(
                id=str(uuid.uuid4()),
                role=("user", "assistant")[i % 2],
                text=self.text,
                created=now + i * 1e-6,
                thread_id=thread_id,
                private=False,
            )
            for i in range(length)
        ]
        schema = V1RoleThread(
            id=thread_id,
            owner_id="bench",
            public=False,
            messages=messages,
            created=now,
            updated=now,
        )
        thread = self.RoleThread.from_v1(schema)
        thread.save()
        return thread

    def workloads(self) -> dict[str, Any]:
        reps = self.config["reps"]
        warm = self.RoleThread(owner_id="warm")
        warm.post("user", self.text)
        creates = []
        for _ in range(reps):
            start = time.perf_counter()
            self.RoleThread(owner_id="bench")
            creates.append(time.perf_counter() - start)
        post_n = []
        for count in self.config["post_n"]:
            totals = []
            for _ in range(self.config["post_n_reps"]):
                thread = self.RoleThread(owner_id="bench")
                start = time.perf_counter()
                for _ in range(count):
                    thread.post("user", self.text)
                totals.append(time.perf_counter() - start)
            post_n.append({"count": count, "total": summary(totals)})
        rows = []
        for length in self.config["lengths"]:
            start = time.perf_counter()
            thread = self.prefilled(length)
            prefill_seconds = time.perf_counter() - start
            finds = []
            found = None
            for _ in range(reps):
                start = time.perf_counter()
                found = self.RoleThread.find(id=thread.id)[0]
                finds.append(time.perf_counter() - start)
            assert found is not None
            to_openai = []
            for _ in range(reps):
                start = time.perf_counter()
                found.to_openai()
                to_openai.append(time.perf_counter() - start)
            rows.append(
                {
                    "length": length,
                    "messages_read": len(found.messages()),
                    "prefill_seconds": prefill_seconds,
                    "find": summary(finds),
                    "to_openai": summary(to_openai),
                }
            )
        names = ("threadmem", "SQLAlchemy", "pydantic")
        return {
            "versions": {name: metadata.version(name) for name in names},
            "create": summary(creates),
            "post_n": post_n,
            "rows": rows,
        }

    def prepare(self, length: int) -> dict[str, Any]:
        start = time.perf_counter()
        thread = self.prefilled(length)
        seconds = time.perf_counter() - start
        thread.post("user", self.text)  # warm
        self.prepared[length] = thread
        return {"prefill_seconds": seconds}

    def posts(self, length: int, count: int) -> dict[str, Any]:
        thread = self.prepared[length]
        start = time.perf_counter()
        for _ in range(count):
            thread.post("user", self.text)
        return {"seconds": time.perf_counter() - start}

    def post_new(self, count: int) -> dict[str, Any]:
        thread = self.RoleThread(owner_id="bench")
        start = time.perf_counter()
        for _ in range(count):
            thread.post("user", self.text)
        return {"seconds": time.perf_counter() - start}

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "workloads":
            return self.workloads()
        if op == "prepare":
            return self.prepare(int(command["length"]))
        if op == "posts":
            return self.posts(int(command["length"]), int(command["count"]))
        if op == "post_new":
            return self.post_new(int(command["count"]))
        raise ValueError(f"unknown op {op!r}")


def serve(lines: TextIO, replies: TextIO) -> None:
    driver = Driver(json.loads(lines.readline()))
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in lines:
        if not line.strip():
            continue
        replies.write(json.dumps(driver.handle(json.loads(line))) + "\n")
        replies.flush()


def main() -> int:
    replies = sys.stdout
    sys.stdout = sys.stderr  # whatever the library prints must not break the protocol
    serve(sys.stdin, replies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
