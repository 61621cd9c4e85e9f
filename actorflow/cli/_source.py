"""Where the commands read from: a running server (`HttpClient`) or a store
(`StoreSource`), both answering in the HTTP API's JSON shapes; and how a failed
request ends a command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any, Protocol
from urllib.parse import quote

import attrs
import click

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL_STATUSES = frozenset({"completed", "failed", "terminated"})
FINAL_EVENT_KINDS = frozenset({"run_completed", "run_failed", "run_terminated"})


class RequestFailed(click.ClickException):
    """A request that failed: the command prints one line `error: <type>: <message>`
    on stderr and exits 1."""

    exit_code = 1

    def __init__(self, type: str, message: str) -> None:
        self.type = type
        super().__init__(" ".join(message.split()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.type}: {self.message}", err=True, file=file)


def segment(value: str) -> str:
    """`value` as one segment of a URL path."""
    return quote(value, safe="")


@attrs.frozen
class Chunk:
    """One chunk of a run's stream: its index, and its value (bytes, or a JSON value)."""

    index: int
    value: Any


class Source(Protocol):
    """What the read commands need, in the shapes of the HTTP API's answers."""

    def workflows(self) -> dict[str, Any]:
        """`{"workflows": [...]}`."""

    def list_runs(self, *, workflow: str | None, statuses: list[str], limit: int) -> dict[str, Any]:
        """`{"runs": [...], "next_cursor": ...}`, newest first."""

    def run(self, run_id: str) -> dict[str, Any]:
        """The run with its steps."""

    def result(self, run_id: str, wait: float) -> dict[str, Any]:
        """`{"status", "result", "error"}` once final (waiting up to `wait` seconds),
        else `{"status"}`."""

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The events recorded so far."""

    def follow_events(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Recorded events, then live ones, until the run ends."""

    def stream(self, run_id: str, namespace: str, start: int) -> Iterator[Chunk]:
        """Recorded chunks from `start`, then live ones, until the stream closes or the
        run ends."""

    def schedules(self) -> dict[str, Any]:
        """`{"schedules": [...]}`."""

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        """One schedule."""

    def close(self) -> None:
        """Release the connection or the file."""
