"""Schedules as stored: one row per schedule, written through the open batch.

A schedule's row rides in the same batch (one transaction) as the runs its
ticks start, so after a crash either both are there or neither is: a tick whose
row change was lost fires again at the next open, with the same run id.

Two kinds of writes: a change (made, changed or deleted through the schedules API,
or a declared schedule brought in line with the code) writes the whole row under a
new `version`; a tick's write (`WriteBatch.schedule_ticks`) is made only if the
row's version is still the one its engine read and, when its engine decided what
to do with a tick by the overlap policy, only if a run of the schedule is still
unfinished (`busy`) or not as the engine thought (for `terminate_other`: only if no
run it did not terminate is unfinished); its runs are created only then.
On a database shared by many engines (PostgreSQL) that keeps an engine that has
not yet heard of a change from firing under the old settings or writing them back,
and one that does not know of a run started elsewhere from starting another beside
it (`_postgres_schedule_writes`); the single-engine stores write every row whole.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import orjson

from .._serde import dumps

SCHEDULES_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    cron TEXT NOT NULL,
    args BLOB NOT NULL,
    timezone TEXT NOT NULL,
    overlap TEXT NOT NULL,
    catchup TEXT NOT NULL,
    paused INTEGER NOT NULL,
    declared INTEGER NOT NULL,
    metadata BLOB,
    created_at REAL NOT NULL,
    watermark REAL NOT NULL,
    next_time REAL,
    state BLOB NOT NULL
);
"""
SCHEDULE_COLUMNS = 14  # SQLite's, without `version` (one engine per file: no races)
_UPSERT = "INSERT OR REPLACE INTO schedules VALUES "
_DELETE = "DELETE FROM schedules WHERE id IN ({values})"
SELECT_SCHEDULES = "SELECT * FROM schedules ORDER BY id"


@attrs.define(slots=True)
class ScheduleRow:
    """A schedule and where it stands.

    `watermark` is the latest tick handled (fired, skipped or buffered): ticks
    after it and not after now are due. `running` holds the unfinished runs the
    schedule started, `buffered` the ticks waiting for them to end, `recent`
    the last ticks as `(time, run_id or None, outcome)`. `version` is the
    number its last change was written under (see the module docstring).
    """

    id: str
    workflow: str
    cron: str
    args: bytes
    timezone: str
    overlap: str
    catchup: str
    paused: bool
    declared: bool
    metadata: bytes | None
    created_at: float
    watermark: float
    next_time: float | None = None
    recent: list[tuple[float, str | None, str]] = attrs.field(factory=list)
    buffered: list[float] = attrs.field(factory=list)
    running: list[str] = attrs.field(factory=list)
    version: int = 0

    def params(self) -> tuple[object, ...]:
        """The row's columns now (a batch keeps this, not the row, which goes on changing),
        `version` last."""
        state = {"recent": self.recent, "buffered": self.buffered, "running": self.running}
        return (
            self.id, self.workflow, self.cron, self.args, self.timezone, self.overlap,
            self.catchup, int(self.paused), int(self.declared), self.metadata,
            self.created_at, self.watermark, self.next_time, dumps(state), self.version,
        )  # fmt: skip

    @classmethod
    def from_params(cls, values: Sequence[Any]) -> ScheduleRow:
        """Inverse of `params` (and the row read back: SQLite's has no `version`)."""
        (id_, workflow, cron, args, zone, overlap, catchup, paused, declared, metadata,
         created_at, watermark, next_time, state) = values[:SCHEDULE_COLUMNS]  # fmt: skip
        found = orjson.loads(state)
        return cls(
            id_, workflow, cron, args, zone, overlap, catchup, bool(paused), bool(declared),
            metadata, created_at, watermark, next_time,
            [tuple(r) for r in found["recent"]], found["buffered"], found["running"],
            values[SCHEDULE_COLUMNS] if len(values) > SCHEDULE_COLUMNS else 0,
        )  # fmt: skip


def new_version() -> int:
    """A version for a change of a schedule: random, so two engines' changes differ."""
    return secrets.randbits(62)


# A batch's schedule writes: the params of each upserted row, None for a deleted one.
ScheduleWrites = dict[str, "tuple[object, ...] | None"]


@attrs.define(slots=True)
class TickWrite:
    """A tick's write of a schedule in a batch (see the module docstring): what it
    expects (`version`; `busy`, None if no tick was decided by `skip` or a buffering
    policy; `known`, for `terminate_other`, the runs it terminated: no other may be
    unfinished) and the runs its ticks started in the batch."""

    version: int
    busy: bool | None = None
    known: list[str] | None = None
    runs: list[str] = attrs.field(factory=list)


ScheduleTicks = dict[str, TickWrite]


def running_of(state: bytes) -> list[str]:
    """The unfinished runs in a row's `state` column."""
    running: list[str] = orjson.loads(state)["running"]
    return running


def with_running(state: bytes, running: list[str]) -> bytes:
    """The `state` column with `running` as the unfinished runs."""
    found = orjson.loads(state)
    found["running"] = running
    return dumps(found)


class Statements(Protocol):
    """Runs a statement over many rows (the group commit's multi-row statements)."""

    def run(self, conn: sqlite3.Connection, sql: str, width: int, rows: Sequence[Any]) -> None: ...


def write_schedules(conn: sqlite3.Connection, sql: Statements, writes: ScheduleWrites) -> None:
    """Apply a batch's schedule writes inside its transaction, in multi-row statements
    (`executemany` would hand the GIL back and forth with the event loop per row)."""
    deletes = [(schedule_id,) for schedule_id, params in writes.items() if params is None]
    sql.run(conn, _DELETE, 1, deletes)
    upserts = [p[:SCHEDULE_COLUMNS] for p in writes.values() if p is not None]
    sql.run(conn, _UPSERT, SCHEDULE_COLUMNS, upserts)


def apply_schedules(table: dict[str, tuple[object, ...]], writes: ScheduleWrites) -> None:
    """Apply a batch's schedule writes to the memory store's table."""
    for schedule_id, params in writes.items():
        if params is None:
            table.pop(schedule_id, None)
        else:
            table[schedule_id] = params
