"""`postgresql://...`: the store on a PostgreSQL server, through asyncpg.

One connection is the writer's (`PostgresTransactions`, behind the group commit);
reads go through a pool of their own connections, so a read never waits behind a
commit, and under PostgreSQL's MVCC a commit never waits for a read. Every
connection's `search_path` is the store's schema (`?schema=`, default `actorflow`).
Other URL query parameters are asyncpg's: `?synchronous_commit=off`, for one, is a
server setting for the store's connections.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

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
from ._group_commit import GroupCommitted, GroupCommitWriter
from ._postgres_purge import purge_batch
from ._postgres_schema import check_schema_name, migrate
from ._postgres_writer import PostgresTransactions, connection_lost
from ._purge_filter import PurgeClaim, PurgedBatch, PurgeFilter
from ._run_summaries import POSTGRES_STEPS_DONE
from ._schedule_rows import ScheduleRow

if TYPE_CHECKING:
    from .._cluster._node import ClusterNode

_T = TypeVar("_T")

EVENT_COLUMNS = "run_id, idx, generation, kind, seq, name, data, at"
CHUNK_COLUMNS = "run_id, namespace, idx, seq, attempt, kind, data, at"
SCHEDULE_COLUMNS = (
    "id, workflow, cron, args, timezone, overlap, catchup, paused, declared, metadata,"
    " created_at, watermark, next_time, state"
)


def split_url(url: str) -> tuple[str, str]:
    """The asyncpg DSN and the schema of a store URL (`?schema=` taken out of it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = "actorflow"
    rest = []
    for key, value in query:
        if key == "schema":
            schema = check_schema_name(value)
        else:
            rest.append((key, value))
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
    return dsn, schema


class PostgresStore(GroupCommitted):
    """The store on PostgreSQL: a group-commit writer connection and a reader pool."""

    def __init__(self, url: str, *, readers: int = 4) -> None:
        self._dsn, self.schema = split_url(url)
        self._readers = readers
        self._pool: asyncpg.Pool | None = None
        self._transactions = PostgresTransactions(self._connect)
        self._writer = GroupCommitWriter(self._transactions)
        # The writer's own methods: these two are called many times per step.
        self.batch: Callable[[], WriteBatch] = self._writer.batch
        self.commit: Callable[[], asyncio.Future[None]] = self._writer.commit

    def _settings(self) -> dict[str, str]:
        # application_name: an operator finds the store's connections in pg_stat_activity.
        return {"search_path": f'"{self.schema}"', "application_name": "actorflow"}

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self._dsn, server_settings=self._settings(), timeout=10)

    async def open(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        try:
            await migrate(conn, self.schema)
        finally:
            await conn.close()
        try:
            await self._writer.start()
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._readers,
                server_settings=self._settings(),
                timeout=10,
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._writer.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def join_cluster(self, lease_timeout: float, execute: bool) -> ClusterNode:
        """This engine's membership of the engines sharing the database; every commit is
        fenced by it from now on (see `_cluster`)."""
        from .._cluster._node import ClusterNode

        # Advisory lock keys of this schema's engines: (crc32 of the schema, the engine's).
        node = ClusterNode(
            self._connect, lease_timeout, execute, zlib.crc32(self.schema.encode()) & 0x7FFFFFFF
        )
        self._transactions.fence = node.fence
        return node

    @property
    def transactions(self) -> PostgresTransactions:
        """The writer's connection (tests end it)."""
        return self._transactions

    async def _read(self, query: Callable[[PoolConnectionProxy[Record]], Awaitable[_T]]) -> _T:
        """Run `query` on a reader; once more on a fresh one if the first was dropped (a
        server restart leaves every idle pooled connection dead, found out only on use)."""
        pool = self._pool
        assert pool is not None, "store is not open"
        for last_try in (False, True):
            conn = await pool.acquire()
            try:
                return await query(conn)
            except Exception as exc:
                if not connection_lost(exc, conn):
                    raise
                # Never reset (a query on a broken connection) or reuse it: closed, the
                # pool drops it and opens a new one.
                conn.terminate()
                if last_try:
                    raise
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        return await self._read(lambda conn: conn.fetch(sql, *params))

    async def get_run(self, run_id: str) -> RunRow | None:
        rows = await self._fetch(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1", run_id)
        return RunRow(*rows[0]) if rows else None

    async def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunRow]:
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ANY($1::text[])", list(run_ids)
        )
        return {row[0]: RunRow(*row) for row in rows}

    def get_runs_now(self, run_ids: Sequence[str]) -> None:
        return None  # every read is a round trip to the server

    async def load_events(self, run_id: str, after: int = -1) -> list[EventRow]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = $1 AND idx > $2 ORDER BY idx",
            run_id,
            after,
        )
        return [as_event(row) for row in rows]

    async def load_runs(self, run_ids: Sequence[str]) -> dict[str, LoadedRun]:
        rows = await self.get_runs(run_ids)
        ids = list(rows)
        events: dict[str, list[EventRow]] = {}
        for found in await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ANY($1::text[])"
            " ORDER BY run_id, idx",
            ids,
        ):
            events.setdefault(found[0], []).append(as_event(found))
        streams = await self._stream_states(ids)
        empty = StreamState({}, set(), 0)
        return {
            run_id: LoadedRun(rows[run_id], events.get(run_id, []), streams.get(run_id, empty))
            for run_id in ids
        }

    async def steps_done(self, run_ids: Sequence[str]) -> dict[str, int]:
        return dict(await self._fetch(POSTGRES_STEPS_DONE, list(run_ids)))  # type: ignore[arg-type]

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
            # None if `after` does not exist: no row compares below it.
            params.append(after)
            where.append(
                '(created_at, id COLLATE "C") <'
                f" (SELECT created_at, id FROM runs WHERE id = ${len(params)})"
            )
        if statuses is not None:
            params.append(list(statuses))
            where.append(f"status = ANY(${len(params)}::text[])")
        if workflow is not None:
            params.append(workflow)
            where.append(f"workflow = ${len(params)}")
        if parent_id is not None:
            params.append(parent_id)
            where.append(f"parent_id = ${len(params)}")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        n = len(params)
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM runs {clause}"
            ' ORDER BY created_at DESC, id COLLATE "C" DESC'
            f" LIMIT ${n + 1} OFFSET ${n + 2}",
            *params,
            limit,
            offset,
        )
        return [RunRow(*row) for row in rows]

    async def count_runs(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for workflow, status, n in await self._fetch(
            "SELECT workflow, status, count(*) FROM runs GROUP BY workflow, status"
        ):
            counts.setdefault(workflow, {})[status] = n
        return counts

    async def purge_batch(self, which: PurgeFilter, claim: PurgeClaim) -> PurgedBatch:
        return await self._read(lambda conn: purge_batch(conn, which, claim))

    async def unfinished_runs(self) -> list[RunRow]:
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE status = ANY($1::text[])"
            " ORDER BY created_at, id",
            list(UNFINISHED),
        )
        return [RunRow(*row) for row in rows]

    async def finished_children_of_unfinished_parents(self) -> list[RunRow]:
        columns = ", ".join(f"c.{c.strip()}" for c in RUN_COLUMNS.split(","))
        rows = await self._fetch(
            f"SELECT {columns} FROM runs c JOIN runs p ON p.id = c.parent_id"
            " WHERE c.status = ANY($1::text[]) AND p.status = ANY($2::text[])",
            list(FINAL),
            list(UNFINISHED),
        )
        return [RunRow(*row) for row in rows]

    async def load_chunks(
        self, run_id: str, namespace: str, start: int, limit: int
    ) -> list[ChunkRow]:
        rows = await self._fetch(
            f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE run_id = $1 AND namespace = $2"
            " AND idx >= $3 ORDER BY idx LIMIT $4",
            run_id,
            namespace,
            start,
            limit,
        )
        return [ChunkRow(*row) for row in rows]

    async def stream_state(self, run_id: str) -> StreamState:
        return (await self._stream_states([run_id])).get(run_id, StreamState({}, set(), 0))

    async def _stream_states(self, run_ids: list[str]) -> dict[str, StreamState]:
        """Next index and closed flag per namespace, and total bytes, of each run's streams."""
        return fold_stream_states(
            await self._fetch(
                "SELECT run_id, namespace, max(idx), sum(octet_length(data)), bool_or(kind = $1)"
                " FROM chunks WHERE run_id = ANY($2::text[]) GROUP BY run_id, namespace",
                ChunkKind.CLOSE,
                run_ids,
            )
        )

    async def load_schedules(self) -> list[ScheduleRow]:
        rows = await self._fetch(
            f'SELECT {SCHEDULE_COLUMNS}, version FROM schedules ORDER BY id COLLATE "C"'
        )
        return [ScheduleRow.from_params(tuple(row)) for row in rows]

    async def load_hooks(self) -> list[HookRow]:
        return [HookRow(*row) for row in await self._fetch("SELECT token, run_id, seq FROM hooks")]
