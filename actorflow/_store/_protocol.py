"""The store protocol every backend implements (`Store`), and the one shared stores add
(`SharedStore`); the rows they move are in `_base`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._base import (
    ChunkRow,
    CommitListener,
    CommitStats,
    EventRow,
    FailureListener,
    HookRow,
    LoadedRun,
    RunRow,
    StreamState,
    WriteBatch,
)
from ._purge_filter import PurgeClaim, PurgedBatch, PurgeFilter
from ._schedule_rows import ScheduleRow

if TYPE_CHECKING:
    from .._cluster._node import ClusterNode


@runtime_checkable
class SharedStore(Protocol):
    """A store many engines share (PostgreSQL): each engine joins its cluster."""

    def join_cluster(self, lease_timeout: float, execute: bool) -> ClusterNode:
        """This engine's membership (not yet open); from now on every commit is fenced
        by it (see `_cluster`)."""


class Store(Protocol):
    """What the engine needs from a backend. All reads see every committed write."""

    async def open(self) -> None:
        """Create the schema if needed and start the writer."""

    async def close(self) -> None:
        """Commit what is pending, then release every resource."""

    def set_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(batch)` after each commit, before the batch's future resolves."""

    def set_failure_listener(self, listener: FailureListener) -> None:
        """Call `listener(batch, error)` when a batch fails to commit, before any later
        batch is written, so that it can `discard_pending` what depends on the lost rows."""

    def discard_pending(self, run_ids: set[str]) -> dict[str, RunRow]:
        """Drop every uncommitted row of `run_ids` (see `WriteBatch.discard`); returns
        the creations dropped with them."""

    def batch(self) -> WriteBatch:
        """The open batch; append rows to it, then call `commit()` without awaiting in between
        (a batch may be sealed by `commit()`, and a new one opened)."""

    def commit_stats(self) -> CommitStats:
        """What the store's commits have done since it opened."""

    def commit(self) -> asyncio.Future[None]:
        """Commit the open batch (and everything before it); resolves once durable.

        The future is shared by every writer of the batch: code that may be
        cancelled must await it through `shielded()`, or its cancellation
        would cancel the future for all of them.
        """

    async def get_run(self, run_id: str) -> RunRow | None:
        """The run's row, or None."""

    async def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunRow]:
        """The row of each run that exists, in a few bulk reads."""

    def get_runs_now(self, run_ids: Sequence[str]) -> dict[str, RunRow] | None:
        """`get_runs` answered without waiting, as a lookup by key on the caller's thread;
        None when the store cannot (a read is a round trip, or the reader is busy)."""

    async def load_events(self, run_id: str, after: int = -1) -> list[EventRow]:
        """The run's events with `idx > after`, in order."""

    async def load_runs(self, run_ids: Sequence[str]) -> dict[str, LoadedRun]:
        """Row, whole log and stream state of each run that exists, in a few bulk reads."""

    async def steps_done(self, run_ids: Sequence[str]) -> dict[str, int]:
        """How many steps of each run's current execution completed (none: left out)."""

    async def list_runs(
        self,
        *,
        statuses: Iterable[str] | None,
        workflow: str | None,
        parent_id: str | None,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> list[RunRow]:
        """Runs matching every given filter, newest first; with `after` (a run id),
        only runs listed after that one in this order (none if it does not exist)."""

    async def count_runs(self) -> dict[str, dict[str, int]]:
        """How many runs each workflow has, by stored status text."""

    async def unfinished_runs(self) -> list[RunRow]:
        """Every run that is not final, oldest first."""

    async def finished_children_of_unfinished_parents(self) -> list[RunRow]:
        """Final child runs whose parent is not final (their news may not have reached it)."""

    async def load_chunks(
        self, run_id: str, namespace: str, start: int, limit: int
    ) -> list[ChunkRow]:
        """Chunks with `idx >= start` in order, at most `limit`."""

    async def stream_state(self, run_id: str) -> StreamState:
        """Next index and closed flag per namespace, and total bytes, for a run's streams."""

    async def load_hooks(self) -> list[HookRow]:
        """Every hook token held by an unfinished run."""

    async def load_schedules(self) -> list[ScheduleRow]:
        """Every schedule, by id (written through `WriteBatch.schedule_writes`)."""

    async def purge_batch(self, which: PurgeFilter, claim: PurgeClaim) -> PurgedBatch:
        """Delete some of the finished runs `which` selects and `claim` lets go, with their
        events, chunks and hooks, keeping runs still referenced (see `_purge`)."""
