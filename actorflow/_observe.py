"""The observer hook: what the runtime tells an instrumentation (`actorflow.otel`).

The core never imports OpenTelemetry. It reads `current` once per commit,
per run creation, per rehydration and per eviction, and calls the observer only
when one is installed, so with none the cost is one global read at each of
those points, never per row. Spans and metrics are built from committed rows
(`committed`), so nothing uncommitted is ever reported, and a rehydrated run's
replay (of rows loaded, not committed again) is not reported twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._store import EventRow, RunRow, WriteBatch

# The key of `run_created`'s data that holds the trace context the run joins.
TRACE_CONTEXT_KEY = "trace_context"


class Observer(Protocol):
    """What an instrumentation implements. Every method is called on the loop's thread,
    inside the runtime's own work (a commit, a rehydration), and must not raise."""

    def run_creating(
        self, row: RunRow, given: Mapping[str, str] | None
    ) -> Mapping[str, str] | None:
        """A run is being created (not yet committed; `row.parent_id` is set for a child):
        the trace context (a W3C `traceparent` carrier) to store with it, or None.
        `given` is the caller's `trace_context=`."""

    def committed(self, batch: WriteBatch) -> None:
        """`batch` is durable (called by the engine, for every store)."""

    def batch_written(self, rows: int, seconds: float) -> None:
        """The group commit wrote a transaction of `rows` rows in `seconds`."""

    def commit_failed(self, batch: WriteBatch) -> None:
        """Writing `batch` failed (nothing of it is stored)."""

    def run_loaded(self, row: RunRow, events: list[EventRow], restarted: bool) -> None:
        """A run was brought into memory from its stored log `events` (rehydrated), or
        `restarted` (then `row` has its new generation, `events` are the old ones)."""

    def run_evicted(self, run_id: str) -> None:
        """A waiting or paused run left memory (to be rehydrated later)."""


class LiveRuns(Protocol):
    """An open engine's runs in memory, as gauges read them, and its concurrency limits."""

    def live_statuses(self) -> dict[str, int]:
        """How many runs in memory have each status."""

    def is_limited(self, workflow: str) -> bool:
        """Whether a concurrency limit applies to `workflow`'s runs (they may queue)."""


# The installed observer (read as `_observe.current`: an attribute read, not a call, as
# the runtime's hot paths read it whether or not anything is installed).
current: Observer | None = None
# Every open engine's live runs, from `open()` to `close()`.
open_engines: set[LiveRuns] = set()


def is_limited(workflow: str) -> bool:
    """Whether an open engine limits `workflow`'s concurrency (its runs may queue)."""
    return any(engine.is_limited(workflow) for engine in list(open_engines))


def check_trace_context(carrier: Any) -> Mapping[str, str]:
    """A caller's `trace_context=` (a W3C carrier); raises `TypeError` if it is not a
    mapping of str to str."""
    if not isinstance(carrier, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in carrier.items()
    ):
        raise TypeError(f"trace_context must be a mapping of str to str, got {carrier!r}")
    return carrier


def install(new: Observer | None) -> None:
    """Install `new` (None removes the current one); the instrumentor calls this."""
    global current
    current = new
