"""Command monitoring for the tests that count what an operation sends and receives."""

from __future__ import annotations

from typing import Any

import bson
from pymongo import monitoring

Document = dict[str, Any]


class Recorder(monitoring.CommandListener):
    """Keeps the command events of one client."""

    def __init__(self) -> None:
        self.started_events: list[monitoring.CommandStartedEvent] = []
        self.succeeded_events: list[monitoring.CommandSucceededEvent] = []
        self.failed_events: list[monitoring.CommandFailedEvent] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.started_events.append(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.succeeded_events.append(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.failed_events.append(event)

    def reset(self) -> None:
        self.started_events.clear()
        self.succeeded_events.clear()
        self.failed_events.clear()

    @property
    def commands(self) -> list[str]:
        return [event.command_name for event in self.started_events]

    @property
    def reply_bytes(self) -> int:
        return sum(len(bson.encode(event.reply)) for event in self.succeeded_events)

    def replies(self, name: str) -> list[Document]:
        return [dict(e.reply) for e in self.succeeded_events if e.command_name == name]

    def sent(self, name: str) -> list[Document]:
        return [dict(e.command) for e in self.started_events if e.command_name == name]
