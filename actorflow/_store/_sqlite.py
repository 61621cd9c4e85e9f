"""`sqlite:///path`: the embedded default store.

WAL mode, so readers never wait for the writer (`GroupCommitWriter`, its own
connection): an aiosqlite connection for reads, and one on the loop thread for
lookups of a few runs by id (`_fetch_by_key`). `synchronous=NORMAL` by default: a
commit survives a crash of the process (SIGKILL included); pass
`?synchronous=full` in the URL to also survive power loss, at one fsync per
batch. One engine owns a database file at a time (`_sqlite_file`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import aiosqlite

from .._errors import StoreFileError
from .._models import FINAL, UNFINISHED
from ._base import (
    RUN_COLUMNS,
    ChunkKind,
    ChunkRow,
    EventRow,
    HookRow,
    LoadedRun,
    RunRow,
    StreamState,
    WriteBatch,
    as_event,
    fold_stream_states,
)
from ._checkpoint import WalCheckpointer
from ._group_commit import GroupCommitted, GroupCommitWriter
from ._purge import choose, delete
from ._purge_filter import PurgeClaim, PurgedBatch, PurgeFilter
from ._run_summaries import SQLITE_STEPS_DONE
from ._schedule_rows import SCHEDULES_SCHEMA, SELECT_SCHEDULES, ScheduleRow
from ._sqlite_events import SELECT_EVENTS, with_creation
from ._sqlite_file import check_path, lock, prepare_file, unlock
from ._sqlite_writer import SQLiteTransactions

SCHEMA_VERSION = 2
"""The schema version this actorflow writes. Version 1 files (written before SQLite
stopped storing the `run_created` entry a run's row implies, see `_sqlite_events`)
are read as they are and marked 2 when opened: an actorflow from before refuses a
version 2 file with `StoreFileError`, where it would read logs without that entry
(and give a run whose only entry it is a second entry 0)."""
_UPGRADES = {"1": str(SCHEMA_VERSION)}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    generation INTEGER NOT NULL,
    args BLOB NOT NULL,
    result BLOB,
    error BLOB,
    metadata BLOB,
    parent_id TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    wake_at REAL,
    deadline_at REAL
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER,
    name TEXT,
    data BLOB,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    run_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    idx INTEGER NOT NULL,
    seq INTEGER,
    attempt INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    data BLOB,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, namespace, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hooks (
    token TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS hooks_by_run ON hooks (run_id);
"""


# fdatasync flushes a file's data without its metadata; macOS has only fsync.
_fdatasync = getattr(os, "fdatasync", os.fsync)

# Reads of up to this many runs by id run on the loop thread (see `_fetch_by_key`).
_KEYED_READ_IDS = 16


def _runs_by_id(marks: str) -> str:
    """The rows of the runs whose ids fill the placeholders `marks` (`?,?,...`)."""
    return f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({marks})"


def _id_chunks(run_ids: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    """The ids in chunks of 500, each with its `?,?,...` placeholders for `IN (...)`."""
    for start in range(0, len(run_ids), 500):
        ids = list(run_ids[start : start + 500])
        yield ids, ",".join("?" * len(ids))


class SQLiteStore(GroupCommitted):
    """The embedded store: one file, a group-commit writer, an aiosqlite reader."""

    def __init__(self, path: str, *, synchronous: str = "normal") -> None:
        if synchronous.lower() not in ("off", "normal", "full", "extra"):
            raise ValueError(f"synchronous must be off|normal|full|extra, got {synchronous!r}")
        check_path(path)
        self.path = path
        self._synchronous = synchronous.upper()
        self._checkpointer = WalCheckpointer(self._connect, sync_database=self._sync_database)
        self._transactions = SQLiteTransactions(self._connect_writer, self._checkpointer)
        self._writer = GroupCommitWriter(self._transactions)
        # The writer's own methods: these two are called many times per step.
        self.batch: Callable[[], WriteBatch] = self._writer.batch
        self.commit: Callable[[], asyncio.Future[None]] = self._writer.commit
        self._reader: aiosqlite.Connection | None = None
        self._keyed_reader: sqlite3.Connection | None = None  # see `_fetch_by_key`
        self._lock_fd: int | None = None
        self._purger: sqlite3.Connection | None = None  # see `purge_batch`
        self._purging = asyncio.Lock()

    def _sync_database(self) -> None:
        """Flush the database file's written pages, through the descriptor the store's
        lock holds open (a descriptor of our own, once closed, would drop the POSIX locks
        SQLite holds on the file in this process). Called by the checkpointer's thread."""
        fd = self._lock_fd
        if fd is not None:  # None on Windows (no lock), and once the store closed
            _fdatasync(fd)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA wal_autocheckpoint=0")  # WalCheckpointer does it off the loop
        # Concurrent runs interleave their events all over the events B-tree; SQLite's
        # default 2 MiB cache re-read pages for almost every row (measured: 9.6 against
        # 6.1 µs of writer CPU per row with 10,000 runs in flight).
        conn.execute("PRAGMA cache_size=-16384")
        return conn

    def _connect_keyed_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA busy_timeout=0")  # never wait on the loop thread
        conn.execute("PRAGMA query_only=ON")
        return conn

    async def open(self) -> None:
        await asyncio.to_thread(prepare_file, self.path)
        self._lock_fd = lock(self.path)
        try:
            await asyncio.to_thread(self._create_schema)
            await self._writer.start()
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA busy_timeout=10000")
            await self._reader.execute("PRAGMA query_only=ON")
            self._keyed_reader = await asyncio.to_thread(self._connect_keyed_reader)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._writer.stop()
        await self._checkpointer.stop()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._keyed_reader is not None:
            self._keyed_reader.close()
            self._keyed_reader = None
        async with self._purging:
            if self._purger is not None:
                self._purger.close()
                self._purger = None
        unlock(self._lock_fd)
        self._lock_fd = None

    def _create_schema(self) -> None:
        conn = self._connect()
        try:
            conn.executescript(_SCHEMA + SCHEDULES_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif row[0] in _UPGRADES:
                conn.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (_UPGRADES[row[0]],)
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreFileError(
                    f"{self.path} has schema version {row[0]}; this actorflow reads versions "
                    f"1 to {SCHEMA_VERSION} (a newer actorflow wrote it?)"
                )
        finally:
            conn.close()

    async def purge_batch(self, which: PurgeFilter, claim: PurgeClaim) -> PurgedBatch:
        """One short transaction of a purge (see `_purge`): the runs are chosen on a
        connection of the purge's own, and deleted on the writer's, between commits."""
        async with self._purging:
            if self._purger is None:
                self._purger = await asyncio.to_thread(self._connect)
            chosen = await asyncio.to_thread(choose, self._purger, which)
        if not chosen:
            return PurgedBatch(0, 0, [])
        claimed = claim(chosen)
        transactions = self._transactions
        deleted = (
            await self._writer.exclusive(lambda: transactions.call(delete, which, claimed))
            if claimed
            else None
        )
        # None deleted (all changed meanwhile, or left alone): look again, without them.
        return deleted if deleted is not None and deleted.rows else PurgedBatch(0, 1, [])

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        assert self._reader is not None, "store is not open"
        # One thread hop for execute + fetch: concurrent reads must not interleave
        # on the shared connection, or an unfinished statement keeps its read
        # transaction (an old WAL snapshot) open for the next one, which then
        # misses rows already committed (and already published to readers).
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def _fetch_by_key(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """A read of a few rows by primary key, on the event loop's thread.

        Through the reader's thread, a read costs a round trip of about 75 µs
        (measured); a lookup by key in SQLite's page cache takes a few. The
        writer commits small batches on the loop thread for the same reason.
        SQLite is never waited for here: if it is busy (a checkpoint or a
        recovery holds a lock), the read goes through the reader's thread.
        """
        rows = self._read_by_key(sql, params)
        return await self._fetchall(sql, params) if rows is None else rows

    def _read_by_key(self, sql: str, params: Sequence[Any]) -> list[Any] | None:
        """`_fetch_by_key`'s read on the loop's thread; None if it cannot be made now."""
        conn = self._keyed_reader
        if conn is None:
            return None
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return None

    async def get_run(self, run_id: str) -> RunRow | None:
        rows = await self._fetch_by_key(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (run_id,))
        return RunRow(*rows[0]) if rows else None

    async def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunRow]:
        found: dict[str, RunRow] = {}
        for ids, marks in _id_chunks(run_ids):
            fetch = self._fetch_by_key if len(ids) <= _KEYED_READ_IDS else self._fetchall
            for values in await fetch(_runs_by_id(marks), ids):
                found[values[0]] = RunRow(*values)
        return found

    def get_runs_now(self, run_ids: Sequence[str]) -> dict[str, RunRow] | None:
        if len(run_ids) > _KEYED_READ_IDS:
            return None
        rows = self._read_by_key(_runs_by_id(",".join("?" * len(run_ids))), run_ids)
        return None if rows is None else {values[0]: RunRow(*values) for values in rows}

    async def load_events(self, run_id: str, after: int = -1) -> list[EventRow]:
        rows = await self._fetchall(SELECT_EVENTS, (run_id, after))
        return [as_event(r) for r in rows]

    async def load_runs(self, run_ids: Sequence[str]) -> dict[str, LoadedRun]:
        rows = await self.get_runs(run_ids)
        loaded: dict[str, LoadedRun] = {}
        for ids, marks in _id_chunks(list(rows)):
            events: dict[str, list[EventRow]] = {}
            for found in await self._fetchall(
                f"SELECT * FROM events WHERE run_id IN ({marks}) ORDER BY run_id, idx", ids
            ):
                events.setdefault(found[0], []).append(as_event(found))
            streams = await self._stream_states(ids)
            for run_id in ids:
                empty = StreamState({}, set(), 0)
                row = rows[run_id]
                log = with_creation(row, events.get(run_id, []))
                loaded[run_id] = LoadedRun(row, log, streams.get(run_id, empty))
        return loaded

    async def steps_done(self, run_ids: Sequence[str]) -> dict[str, int]:
        done: dict[str, int] = {}
        for ids, marks in _id_chunks(run_ids):
            done.update(await self._fetchall(SQLITE_STEPS_DONE.format(marks=marks), ids))
        return done

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
        where: list[str] = []
        params: list[Any] = []
        if after is not None:
            where.append("(created_at, id) < (SELECT created_at, id FROM runs WHERE id=?)")
            params.append(after)
        if statuses is not None:
            wanted = list(statuses)
            where.append(f"status IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        if workflow is not None:
            where.append("workflow=?")
            params.append(workflow)
        if parent_id is not None:
            where.append("parent_id=?")
            params.append(parent_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, id DESC"
            " LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [RunRow(*r) for r in rows]

    async def count_runs(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for workflow, status, n in await self._fetchall(
            "SELECT workflow, status, COUNT(*) FROM runs GROUP BY workflow, status", []
        ):
            counts.setdefault(workflow, {})[status] = n
        return counts

    async def unfinished_runs(self) -> list[RunRow]:
        marks = ",".join("?" * len(UNFINISHED))
        rows = await self._fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN ({marks}) ORDER BY created_at, id",
            UNFINISHED,
        )
        return [RunRow(*r) for r in rows]

    async def finished_children_of_unfinished_parents(self) -> list[RunRow]:
        columns = ", ".join(f"c.{c.strip()}" for c in RUN_COLUMNS.split(","))
        rows = await self._fetchall(
            f"SELECT {columns} FROM runs c JOIN runs p ON p.id = c.parent_id"
            f" WHERE c.status IN ({','.join('?' * len(FINAL))})"
            f" AND p.status IN ({','.join('?' * len(UNFINISHED))})",
            (*FINAL, *UNFINISHED),
        )
        return [RunRow(*r) for r in rows]

    async def load_chunks(
        self, run_id: str, namespace: str, start: int, limit: int
    ) -> list[ChunkRow]:
        rows = await self._fetchall(
            "SELECT * FROM chunks WHERE run_id=? AND namespace=? AND idx>=? ORDER BY idx LIMIT ?",
            (run_id, namespace, start, limit),
        )
        return [ChunkRow(*r) for r in rows]

    async def stream_state(self, run_id: str) -> StreamState:
        return (await self._stream_states([run_id])).get(run_id, StreamState({}, set(), 0))

    async def _stream_states(self, run_ids: list[str]) -> dict[str, StreamState]:
        """Next index and closed flag per namespace, and total bytes, of each run's streams."""
        return fold_stream_states(
            await self._fetchall(
                "SELECT run_id, namespace, MAX(idx), SUM(LENGTH(data)),"
                " MAX(CASE WHEN kind=? THEN 1 ELSE 0 END)"
                f" FROM chunks WHERE run_id IN ({','.join('?' * len(run_ids))})"
                " GROUP BY run_id, namespace",
                [ChunkKind.CLOSE, *run_ids],
            )
        )

    async def load_hooks(self) -> list[HookRow]:
        return [HookRow(*r) for r in await self._fetchall("SELECT * FROM hooks")]

    async def load_schedules(self) -> list[ScheduleRow]:
        return [ScheduleRow.from_params(r) for r in await self._fetchall(SELECT_SCHEDULES)]
