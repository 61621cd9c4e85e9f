"""Schedules as stored: one row per schedule, written through the open batch.

A schedule's row rides in the same batch (one transaction) as the runs its
ticks start, so after a crash either both are there or neither is: a tick whose
row change was lost fires again at the next open, with the same run id.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import attrs
import orjson

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
SCHEDULE_COLUMNS = 14
_UPSERT = "INSERT OR REPLACE INTO schedules VALUES "
_DELETE = "DELETE FROM schedules WHERE id IN ({values})"
SELECT_SCHEDULES = "SELECT * FROM schedules ORDER BY id"


@attrs.define(slots=True)
class ScheduleRow:
    """A schedule and where it stands.

    `watermark` is the latest tick handled (fired, skipped or buffered): ticks
    after it and not after now are due. `running` holds the unfinished runs the
    schedule started, `buffered` the ticks waiting for them to end, `recent`
    the last ticks as `(time, run_id or None, outcome)`.
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

    def params(self) -> tuple[object, ...]:
        """The row's columns now (a batch keeps this, not the row, which goes on changing)."""
        state = {"recent": self.recent, "buffered": self.buffered, "running": self.running}
        return (
            self.id, self.workflow, self.cron, self.args, self.timezone, self.overlap,
            self.catchup, int(self.paused), int(self.declared), self.metadata,
            self.created_at, self.watermark, self.next_time, orjson.dumps(state),
        )  # fmt: skip

    @classmethod
    def from_params(cls, values: Iterable[Any]) -> ScheduleRow:
        """Inverse of `params` (and the row read back from SQLite)."""
        (id_, workflow, cron, args, zone, overlap, catchup, paused, declared, metadata,
         created_at, watermark, next_time, state) = values  # fmt: skip
        found = orjson.loads(state)
        return cls(
            id_, workflow, cron, args, zone, overlap, catchup, bool(paused), bool(declared),
            metadata, created_at, watermark, next_time,
            [tuple(r) for r in found["recent"]], found["buffered"], found["running"],
        )  # fmt: skip


# A batch's schedule writes: the params of each upserted row, None for a deleted one.
ScheduleWrites = dict[str, "tuple[object, ...] | None"]


class Statements(Protocol):
    """Runs a statement over many rows (the group commit's multi-row statements)."""

    def run(self, conn: sqlite3.Connection, sql: str, width: int, rows: Sequence[Any]) -> None: ...


def write_schedules(conn: sqlite3.Connection, sql: Statements, writes: ScheduleWrites) -> None:
    """Apply a batch's schedule writes inside its transaction, in multi-row statements
    (`executemany` would hand the GIL back and forth with the event loop per row)."""
    deletes = [(schedule_id,) for schedule_id, params in writes.items() if params is None]
    sql.run(conn, _DELETE, 1, deletes)
    sql.run(conn, _UPSERT, SCHEDULE_COLUMNS, [p for p in writes.values() if p is not None])


def apply_schedules(table: dict[str, tuple[object, ...]], writes: ScheduleWrites) -> None:
    """Apply a batch's schedule writes to the memory store's table."""
    for schedule_id, params in writes.items():
        if params is None:
            table.pop(schedule_id, None)
        else:
            table[schedule_id] = params
