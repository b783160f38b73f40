"""Timing, summaries and command monitoring shared by every section.

A figure is a list of samples (one per repetition); a :class:`Summary` keeps its median,
min and max. Bytes and round trips come from pymongo command monitoring: the size of
each command and reply as BSON, which is what the wire carries apart from the few bytes
of message header.
"""

from __future__ import annotations

import copy
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo import monitoring


@dataclass(frozen=True)
class Summary:
    """The median, min and max of a list of samples."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Summary:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def summary(samples: list[float]) -> dict[str, float]:
    """Return ``{"median", "min", "max", "n"}`` of ``samples``."""
    return Summary.of(samples).as_dict()


def timed(call: Callable[[], Any]) -> float:
    """Run ``call`` once and return the seconds it took."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@dataclass
class Window:
    """What one client sent and received while a window was open."""

    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    failures: int = 0
    keep: bool = False
    commands: list[str] = field(default_factory=list)
    #: The commands themselves, kept only when the window asks for them.
    documents: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "round_trips": self.round_trips,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "failures": self.failures,
            "commands": list(self.commands),
        }


class CommandLog(monitoring.CommandListener):
    """Counts commands, and the BSON bytes of commands and replies, per Python thread.

    Synchronous pymongo publishes command events in the thread that runs the operation,
    so a writer thread's traffic can be told apart from its neighbours'.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, Window] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        size = len(bson.encode(event.command))
        window = self._windows.get(threading.get_ident())
        if window is not None:
            with self._lock:
                window.round_trips += 1
                window.bytes_sent += size
                window.commands.append(event.command_name)
                if window.keep:
                    window.documents.append(copy.deepcopy(dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        window = self._windows.get(threading.get_ident())
        if window is not None:
            size = len(bson.encode(event.reply))
            with self._lock:
                window.bytes_received += size

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        window = self._windows.get(threading.get_ident())
        if window is not None:
            with self._lock:
                window.failures += 1

    @contextmanager
    def window(self, *, keep: bool = False) -> Iterator[Window]:
        """Count what the current thread sends and receives inside the ``with`` block.

        Args:
            keep: Also keep a copy of every command sent.
        """
        ident = threading.get_ident()
        window = Window(keep=keep)
        self._windows[ident] = window
        try:
            yield window
        finally:
            self._windows.pop(ident, None)
