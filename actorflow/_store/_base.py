"""The rows the stores move, and the write batch that gathers them (the protocol
itself is `_protocol.Store`).

Writes are never issued one by one. Every writer (run actors, `Engine.start`,
stream writers) appends rows to the store's *open batch* and asks for a commit;
the backend commits everything appended so far in one transaction and resolves
one future for all of them (group commit). Rows are plain tuples so that they
go to `executemany` as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, NamedTuple

from ._schedule_rows import ScheduleRow, ScheduleTicks, ScheduleWrites, TickWrite

log = logging.getLogger("actorflow.store")


@dataclass(slots=True, init=False)
class RunRow:
    """The summary row of a run. The event log is the truth; this row is its index."""

    id: str
    workflow: str
    status: str
    args: bytes
    created_at: float
    generation: int
    result: bytes | None
    error: bytes | None
    metadata: bytes | None
    parent_id: str | None
    started_at: float | None
    completed_at: float | None
    wake_at: float | None
    deadline_at: float | None

    # Written out, not generated: the `__init__` a dataclass generates is interpreted
    # Python even in a compiled build; this one is compiled (every run makes one, and
    # every run read from the store).
    def __init__(
        self,
        id: str,
        workflow: str,
        status: str,
        args: bytes,
        created_at: float,
        generation: int = 0,
        result: bytes | None = None,
        error: bytes | None = None,
        metadata: bytes | None = None,
        parent_id: str | None = None,
        started_at: float | None = None,
        completed_at: float | None = None,
        wake_at: float | None = None,
        deadline_at: float | None = None,
    ) -> None:
        self.id = id
        self.workflow = workflow
        self.status = status
        self.args = args
        self.created_at = created_at
        self.generation = generation
        self.result = result
        self.error = error
        self.metadata = metadata
        self.parent_id = parent_id
        self.started_at = started_at
        self.completed_at = completed_at
        self.wake_at = wake_at
        self.deadline_at = deadline_at

    @staticmethod
    def queued(
        id: str,
        workflow: str,
        args: bytes,
        created_at: float,
        metadata: bytes | None,
        parent_id: str | None,
        deadline_at: float | None,
    ) -> RunRow:
        """A new run's row: queued, nothing known of it yet but what it was started with."""
        # Compiled, this calls `__init__` directly: no parsing of 14 arguments per start.
        return RunRow(
            id, workflow, "queued", args, created_at, 0, None, None, metadata, parent_id,
            None, None, None, deadline_at,
        )  # fmt: skip

    def copy(self) -> RunRow:
        """An independent copy (stores hand out copies, never their own rows)."""
        return RunRow(
            self.id, self.workflow, self.status, self.args, self.created_at, self.generation,
            self.result, self.error, self.metadata, self.parent_id, self.started_at,
            self.completed_at, self.wake_at, self.deadline_at,
        )  # fmt: skip

    def insert_params(self) -> tuple[object, ...]:
        return (
            self.id,
            self.workflow,
            self.status,
            self.generation,
            self.args,
            self.result,
            self.error,
            self.metadata,
            self.parent_id,
            self.created_at,
            self.started_at,
            self.completed_at,
            self.wake_at,
            self.deadline_at,
        )

    def update_params(self) -> tuple[object, ...]:
        return (
            self.status,
            self.generation,
            self.result,
            self.error,
            self.started_at,
            self.completed_at,
            self.wake_at,
            self.id,
        )


class EventRow(NamedTuple):
    """One entry of a run's event log. `data` is JSON whose shape depends on `kind`."""

    run_id: str
    idx: int
    generation: int
    kind: str
    seq: int | None
    name: str | None
    data: bytes | None
    at: float


# The columns of `RunRow`, in its fields' order, for SELECTs whose rows build one.
RUN_COLUMNS = (
    "id, workflow, status, args, created_at, generation, result, error, metadata, parent_id,"
    " started_at, completed_at, wake_at, deadline_at"
)

# A fetched events row (its columns in `EventRow`'s order) as an EventRow, without the
# Python-level `__new__` a namedtuple call goes through.
as_event = partial(tuple.__new__, EventRow)


class ChunkKind:
    """How a chunk's `data` is to be read."""

    JSON: Final = 0
    BYTES: Final = 1
    CLOSE: Final = 2


class ChunkRow(NamedTuple):
    """One chunk of a run's stream in `namespace`; `idx` never changes once written."""

    run_id: str
    namespace: str
    idx: int
    seq: int | None
    attempt: int
    kind: int
    data: bytes | None
    at: float


class HookRow(NamedTuple):
    token: str
    run_id: str
    seq: int


class WriteBatch:
    """Rows appended by any number of writers, committed in one transaction.

    After the commit, `conflicts` holds the ids of `new_runs` that already
    existed (their rows and initial events were not written), and the store
    calls each of `callbacks`, before the batch's future resolves.

    A new run's row is read when the batch is sealed (`seal`), on the event
    loop's thread: it then carries every change made to the row while the
    batch was open (so those need no UPDATE), and none made after, whose
    events are in later batches.
    """

    __slots__ = (
        "_creating",
        "callbacks",
        "chosen_ids",
        "chunks",
        "conflicts",
        "events",
        "future",
        "hook_conflicts",
        "hook_deletes",
        "hooks",
        "inbox",
        "inbox_taken",
        "new_runs",
        "queued",
        "refused",
        "run_inserts",
        "run_updates",
        "schedule_ticks",
        "schedule_writes",
        "stale_schedules",
    )

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.new_runs: list[tuple[RunRow, list[EventRow]]] = []
        self.events: list[EventRow] = []
        self.chunks: list[ChunkRow] = []
        self.run_updates: dict[str, tuple[object, ...]] = {}
        self.hooks: list[HookRow] = []
        self.hook_deletes: list[str] = []
        # Schedules' rows as they were when written (None: deleted); see _schedule_rows.
        self.schedule_writes: ScheduleWrites = {}
        # Which of them are ticks' writes, made only if the schedule is unchanged; after
        # the commit, the schedules that had changed (their ticks' runs are `refused`).
        self.schedule_ticks: ScheduleTicks = {}
        self.stale_schedules: set[str] = set()
        self.conflicts: set[str] = set()
        # Many engines on one database (PostgreSQL): new runs left for any engine with
        # room; messages for runs owned elsewhere (`_cluster/_inbox.py`) and inbox rows
        # taken (id, run id); after the commit, the runs whose rows the fence refused.
        self.queued: set[str] = set()
        self.inbox: list[tuple[str, str, str | None, bytes | None, float, str]] = []
        self.inbox_taken: list[tuple[int, str]] = []
        self.refused: set[str] = set()
        # Hook tokens this batch would have taken from a run elsewhere -> that run.
        self.hook_conflicts: dict[str, str] = {}
        self.callbacks: list[Callable[[], None]] = []
        self.run_inserts: list[tuple[object, ...]] | None = None
        self._creating: dict[str, RunRow] = {}
        # Ids of `new_runs` that may be taken already; generated ids cannot be.
        self.chosen_ids: list[str] = []

    def create_run(self, row: RunRow, events: list[EventRow], unique: bool = False) -> None:
        """Insert `row` (unless its id is taken) with its first `events`. A `unique` id
        (generated, so no run can hold it) is not checked against existing runs."""
        self.new_runs.append((row, events))
        self._creating[row.id] = row
        if not unique:
            self.chosen_ids.append(row.id)

    def seal(self) -> None:
        """Take the rows of the new runs as they are now; nothing is added after this."""
        if self.run_inserts is None:
            self.run_inserts = [row.insert_params() for row, _ in self.new_runs]

    def committed(self) -> None:
        """Run the callbacks of a committed batch (the store calls this)."""
        for callback in self.callbacks:
            try:
                callback()
            except Exception:
                log.exception("commit callback failed")

    def run_ids(self) -> set[str]:
        """Ids of the runs with rows here, not counting runs this batch creates."""
        ids = {event.run_id for event in self.events}
        for row, events in self.new_runs:
            # The parent's `child_started` rides with its child's creation.
            ids.update(event.run_id for event in events if event.run_id != row.id)
        ids.update(chunk.run_id for chunk in self.chunks)
        ids.update(self.run_updates)
        ids.update(hook.run_id for hook in self.hooks)
        ids.update(self.hook_deletes)
        ids.update(run_id for _, run_id in self.inbox_taken)
        return ids

    def discard(self, run_ids: set[str]) -> dict[str, RunRow]:
        """Drop every row of `run_ids`, and the creation of runs whose creation carries
        one of their rows (a child started by such a run). Returns the dropped creations;
        their ids join `run_ids`."""
        dropped: dict[str, RunRow] = {}
        keep = []
        for i, (row, events) in enumerate(self.new_runs):
            if row.id in run_ids or any(event.run_id in run_ids for event in events):
                dropped[row.id] = row
                run_ids.add(row.id)
                self._creating.pop(row.id, None)
            else:
                keep.append(i)
        self.new_runs[:] = [self.new_runs[i] for i in keep]
        self.chosen_ids[:] = [run_id for run_id in self.chosen_ids if run_id not in run_ids]
        if self.run_inserts is not None:
            self.run_inserts[:] = [self.run_inserts[i] for i in keep]
        self.events[:] = [e for e in self.events if e.run_id not in run_ids]
        self.chunks[:] = [c for c in self.chunks if c.run_id not in run_ids]
        for run_id in run_ids & self.run_updates.keys():
            del self.run_updates[run_id]
        self.hooks[:] = [h for h in self.hooks if h.run_id not in run_ids]
        self.hook_deletes[:] = [r for r in self.hook_deletes if r not in run_ids]
        self.inbox_taken[:] = [t for t in self.inbox_taken if t[1] not in run_ids]
        return dropped

    def write_schedule(self, row: ScheduleRow, tick: bool) -> None:
        """Write the schedule's row: a tick's write (`tick`) is made only if what it
        expects holds, unless this batch also holds a change of it (see _schedule_rows)."""
        if tick:
            self.tick_write(row)
        else:
            self.schedule_ticks.pop(row.id, None)
        self.schedule_writes[row.id] = row.params()

    def delete_schedule(self, schedule_id: str) -> None:
        self.schedule_ticks.pop(schedule_id, None)
        self.schedule_writes[schedule_id] = None

    def tick_write(self, row: ScheduleRow) -> TickWrite | None:
        """The schedule's tick write in this batch (None if the batch holds a change of
        it: that is written whatever the ticks expected)."""
        found = self.schedule_ticks.get(row.id)
        if found is None and row.id not in self.schedule_writes:
            found = self.schedule_ticks[row.id] = TickWrite(row.version)
        return found

    def update_run(self, row: RunRow) -> None:
        """Write the row's mutable columns; a later update in the same batch wins."""
        if self._creating.get(row.id) is row and self.run_inserts is None:
            return  # the insert will carry it (see the class docstring)
        self.run_updates[row.id] = row.update_params()

    def __len__(self) -> int:
        return (
            len(self.new_runs)
            + len(self.events)
            + len(self.chunks)
            + len(self.run_updates)
            + len(self.hooks)
            + len(self.hook_deletes)
            + len(self.schedule_writes)
            + len(self.inbox)
            + len(self.inbox_taken)
        )


class StreamState(NamedTuple):
    """Per-namespace stream bookkeeping loaded when a run's actor is rehydrated."""

    next_index: dict[str, int]
    closed: set[str]
    total_bytes: int


def fold_stream_states(rows: Iterable[Any]) -> dict[str, StreamState]:
    """Stream states from rows of (run id, namespace, last index, bytes or None, closed),
    one per namespace of a run."""
    states: dict[str, StreamState] = {}
    sizes: dict[str, int] = {}
    for run_id, namespace, last, size, closed in rows:
        state = states.setdefault(run_id, StreamState({}, set(), 0))
        state.next_index[namespace] = last + 1
        if closed:
            state.closed.add(namespace)
        sizes[run_id] = sizes.get(run_id, 0) + (size or 0)
    return {run_id: s._replace(total_bytes=sizes[run_id]) for run_id, s in states.items()}


class LoadedRun(NamedTuple):
    """Everything a run's actor needs to rehydrate it."""

    row: RunRow
    events: list[EventRow]
    streams: StreamState


@dataclass(frozen=True)
class CommitStats:
    """What a store's group commit has done since it opened (`Engine.store_stats()`).

    `batches`: transactions committed; `rows`: rows they held (runs, events,
    chunks, run updates, hooks), as appended (SQLite does not write a plain
    `run_created` event, which its run's row implies: see `_sqlite_events`);
    `busy_seconds`: wall time spent committing.
    Subtract two snapshots to measure an interval.
    """

    batches: int
    rows: int
    busy_seconds: float


CommitListener = Callable[[WriteBatch], None]
FailureListener = Callable[[WriteBatch, BaseException], None]
