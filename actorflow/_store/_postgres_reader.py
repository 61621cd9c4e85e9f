"""PostgresReader: a PostgreSQL store read from outside the engines that use it, never
written: the command line's `--db postgresql://...` reads.

The same synchronous reads as `SQLiteReader`, on one asyncpg connection driven by a
loop of the reader's own (the command line has no loop running). The connection is
read-only on the server's side (`default_transaction_read_only`), so no statement it
sends can change a row, and under MVCC its reads neither wait for commits nor hold
them up. Each read is a statement of its own, so it sees every commit before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from .._errors import StoreReadError
from ._base import RUN_COLUMNS, ChunkKind, ChunkRow, EventRow, RunRow, as_event
from ._postgres import CHUNK_COLUMNS, EVENT_COLUMNS, SCHEDULE_COLUMNS, split_url
from ._run_summaries import POSTGRES_STEPS_DONE, POSTGRES_STREAM_NAMES
from ._schedule_rows import ScheduleRow


class PostgresReader:
    """Read-only access to the actorflow schema at a PostgreSQL URL. Raises
    `StoreReadError` when the server cannot be reached or the schema holds no store."""

    def __init__(self, url: str) -> None:
        self._dsn, self.schema = split_url(url)
        self._runner: asyncio.Runner | None = None
        self._conn: asyncpg.Connection | None = None

    def open(self) -> None:
        self._runner = asyncio.Runner()
        try:
            self._conn = self._runner.run(self._connect())
            found = self._fetchall(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = $1"
                " AND table_name = 'schema_version'",
                (self.schema,),
            )
        except BaseException:
            self.close()
            raise
        if not found:
            self.close()
            raise StoreReadError(f"schema {self.schema!r} holds no actorflow store")

    async def _connect(self) -> asyncpg.Connection:
        settings = {
            "search_path": f'"{self.schema}"',
            "application_name": "actorflow-reader",
            "default_transaction_read_only": "on",
        }
        try:
            return await asyncpg.connect(self._dsn, server_settings=settings, timeout=10)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise StoreReadError(f"cannot connect to the store's server: {exc}") from exc

    def close(self) -> None:
        runner, self._runner = self._runner, None
        conn, self._conn = self._conn, None
        if runner is None:
            return
        try:
            if conn is not None:
                runner.run(conn.close(timeout=5))
        finally:
            runner.close()

    def refresh(self) -> None:
        """Nothing to do: every read is a statement of its own, seeing every commit."""

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        assert self._runner is not None and self._conn is not None, "reader is not open"
        try:
            return self._runner.run(self._conn.fetch(sql, *params))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreReadError(f"cannot read the store: {exc}") from exc

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self._fetchall(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1", (run_id,))
        return RunRow(*rows[0]) if rows else None

    def list_runs(
        self, *, statuses: Sequence[str] | None, workflow: str | None, limit: int
    ) -> list[RunRow]:
        rows = self._fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs"
            " WHERE (cardinality($1::text[]) = 0 OR status = ANY($1::text[]))"
            " AND ($2::text IS NULL OR workflow = $2)"
            ' ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $3',
            (list(statuses or ()), workflow, limit),
        )
        return [RunRow(*r) for r in rows]

    def count_runs(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for workflow, status, n in self._fetchall(
            "SELECT workflow, status, count(*) FROM runs GROUP BY workflow, status"
        ):
            counts.setdefault(workflow, {})[status] = n
        return counts

    def load_events(self, run_id: str, after: int = -1) -> list[EventRow]:
        rows = self._fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = $1 AND idx > $2 ORDER BY idx",
            (run_id, after),
        )
        return [as_event(r) for r in rows]

    def steps_done(self, run_ids: Sequence[str]) -> dict[str, int]:
        return dict(self._fetchall(POSTGRES_STEPS_DONE, (list(run_ids),)))

    def stream_names(self, run_id: str) -> list[str]:
        return [name for (name,) in self._fetchall(POSTGRES_STREAM_NAMES, (run_id,))]

    def load_chunks(self, run_id: str, namespace: str, start: int) -> list[ChunkRow]:
        rows = self._fetchall(
            f"SELECT {CHUNK_COLUMNS} FROM chunks"
            " WHERE run_id = $1 AND namespace = $2 AND idx >= $3 ORDER BY idx",
            (run_id, namespace, start),
        )
        return [ChunkRow(*r) for r in rows]

    def stream_end(self, run_id: str, namespace: str) -> tuple[int, bool]:
        """The next chunk index of the namespace, and whether it is closed."""
        rows = self._fetchall(
            "SELECT max(idx), coalesce(bool_or(kind = $1), false) FROM chunks"
            " WHERE run_id = $2 AND namespace = $3",
            (ChunkKind.CLOSE, run_id, namespace),
        )
        last, closed = rows[0]
        return (-1 if last is None else last) + 1, bool(closed)

    def schedule_rows(self, schedule_id: str | None = None) -> list[ScheduleRow]:
        """The schedules (or the one with `schedule_id`) by id."""
        rows = self._fetchall(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE $1::text IS NULL OR id = $1"
            ' ORDER BY id COLLATE "C"',
            (schedule_id,),
        )
        return [ScheduleRow.from_params(tuple(row)) for row in rows]
