"""SQLiteReader: a store file read from outside the engine that owns it, never written.

The command line's `--db` reads go through it, while an engine runs on the file
or not. It never takes the engine's lock, never changes the journal mode and
never creates a table, and the connection is `query_only`:

- When the file has a `-wal` file next to it (an engine has it open, or one
  stopped without cleaning up), it is opened with SQLite's read-only URI mode
  (`mode=ro`), which reads the WAL through the existing `-shm` index: the
  reader sees every committed transaction, and WAL readers never block the
  writer or wait for it.
- Without one, no engine has the file open, and `mode=ro` would create `-wal`
  and `-shm` files to read a WAL-mode database: it is opened `immutable`
  instead, which reads the main file alone and creates nothing. An engine that
  opens the file meanwhile writes to a new WAL, which the next `refresh()`
  notices (the connection is opened again in `mode=ro`).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Sequence
from typing import Any

from .._errors import StoreReadError
from ._base import RUN_COLUMNS, ChunkKind, ChunkRow, EventRow, RunRow
from ._run_summaries import SQLITE_STEPS_DONE, SQLITE_STREAM_NAMES
from ._schedule_rows import SELECT_SCHEDULES, ScheduleRow
from ._sqlite_events import SELECT_EVENTS

_OWN_TABLES = {"meta", "runs", "events"}


class SQLiteReader:
    """Read-only access to an actorflow SQLite file. Raises `StoreReadError` when the file
    does not exist, is not a SQLite database, or holds no actorflow tables."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._immutable = False
        self.tables: set[str] = set()

    def open(self) -> None:
        if not os.path.isfile(self.path):
            raise StoreReadError(f"no store file at {self.path}")
        self._connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def refresh(self) -> None:
        """See what was committed since the last read; reconnect in `mode=ro` if an engine
        opened the file since it was opened `immutable`."""
        if self._immutable and os.path.exists(self.path + "-wal"):
            self.close()
            self._connect()

    def _connect(self) -> None:
        self._immutable = not os.path.exists(self.path + "-wal")
        option = "immutable=1" if self._immutable else "mode=ro"
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?{option}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA query_only=ON")
                conn.execute("PRAGMA busy_timeout=5000")
                found = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                self.tables = {name for (name,) in found}
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise StoreReadError(f"cannot read {self.path} as an actorflow store: {exc}") from exc
        if not self.tables >= _OWN_TABLES:
            conn.close()
            raise StoreReadError(f"{self.path} is not an actorflow store (no runs table)")
        self._conn = conn

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        assert self._conn is not None, "reader is not open"
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreReadError(f"cannot read {self.path}: {exc}") from exc

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self._fetchall(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (run_id,))
        return RunRow(*rows[0]) if rows else None

    def list_runs(
        self, *, statuses: Sequence[str] | None, workflow: str | None, limit: int
    ) -> list[RunRow]:
        where: list[str] = []
        params: list[Any] = []
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        if workflow is not None:
            where.append("workflow=?")
            params.append(workflow)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [RunRow(*r) for r in rows]

    def count_runs(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for workflow, status, n in self._fetchall(
            "SELECT workflow, status, COUNT(*) FROM runs GROUP BY workflow, status"
        ):
            counts.setdefault(workflow, {})[status] = n
        return counts

    def load_events(self, run_id: str, after: int = -1) -> list[EventRow]:
        rows = self._fetchall(SELECT_EVENTS, (run_id, after))
        return [EventRow(*r) for r in rows]

    def steps_done(self, run_ids: Sequence[str]) -> dict[str, int]:
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        return dict(self._fetchall(SQLITE_STEPS_DONE.format(marks=marks), run_ids))

    def stream_names(self, run_id: str) -> list[str]:
        return [name for (name,) in self._fetchall(SQLITE_STREAM_NAMES, (run_id,))]

    def load_chunks(self, run_id: str, namespace: str, start: int) -> list[ChunkRow]:
        rows = self._fetchall(
            "SELECT * FROM chunks WHERE run_id=? AND namespace=? AND idx>=? ORDER BY idx",
            (run_id, namespace, start),
        )
        return [ChunkRow(*r) for r in rows]

    def stream_end(self, run_id: str, namespace: str) -> tuple[int, bool]:
        """The next chunk index of the namespace, and whether it is closed."""
        rows = self._fetchall(
            "SELECT MAX(idx), MAX(CASE WHEN kind=? THEN 1 ELSE 0 END) FROM chunks"
            " WHERE run_id=? AND namespace=?",
            (ChunkKind.CLOSE, run_id, namespace),
        )
        last, closed = rows[0]
        return (-1 if last is None else last) + 1, bool(closed)

    def schedule_rows(self, schedule_id: str | None = None) -> list[ScheduleRow]:
        """The schedules (or the one with `schedule_id`) by id; none in a store from before
        schedules."""
        if "schedules" not in self.tables:
            return []
        if schedule_id is None:
            found = self._fetchall(SELECT_SCHEDULES)
        else:
            found = self._fetchall("SELECT * FROM schedules WHERE id=?", (schedule_id,))
        return [ScheduleRow.from_params(row) for row in found]
