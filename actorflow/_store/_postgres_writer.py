"""PostgresTransactions: the group commit's `Transactions` on PostgreSQL: a batch in one
call of `commit_batch`, on a connection of its own, which survives the server going away.

When the connection is lost, the batch in flight may have committed or not (the
COMMIT may have reached the server and its answer not us). The writer reconnects,
with a backoff from 50 ms doubling to 1 s, for up to `reconnect_timeout` seconds,
and asks the server which it was: a batch is one transaction, so one of its event or
chunk rows (each has a unique key) being there means all of it is. A batch that did
commit is a success; one that did not is written again. Only a server that stays
away longer fails the batch, which the engine then handles as any failed commit
(README, "Failed writes"), as it does any other error at once: the server refusing the
rows, or asyncpg a call it cannot make (`connection_lost`) or a fault of its own on a
connection that still answers (`_internal_error_lost`). Batches appended meanwhile
wait in the open batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import asyncpg

from .._errors import StoreWriteError
from ._base import HookRow, WriteBatch
from ._postgres_in_doubt import learn_refusals
from ._postgres_schedule_writes import write_schedules
from ._postgres_statements import Parts, usual_statements
from ._postgres_watch_marks import marked_runs_notice

log = logging.getLogger("actorflow.store")

# The followed runs among $1 (locked by this transaction), for the events it copied.
_NOTIFY_MARKED = (
    "SELECT pg_notify(n.channel, n.payload) FROM ("
    + marked_runs_notice("SELECT id FROM runs WHERE id = ANY($1::text[]) AND watched")
    + ") AS n(channel, payload)"
)
_COMMIT = "SELECT * FROM commit_batch(" + ", ".join(f"${i}" for i in range(1, 71)) + ")"
# Who writes, and at which epochs it owns the runs it writes (see `_cluster`): this
# engine's id (None: a client) and, for each run the batch writes, the epoch.
Fence = Callable[[WriteBatch], tuple[str | None, list[str], list[int]]]
# Errors that mean the connection is gone (not that the server refused the rows).
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
# The same, and asyncpg's InterfaceError, which it raises for a closed connection but
# also for a call it cannot make (see `connection_lost`): for callers that retry a
# bounded number of times.
CONNECTION_ERRORS = (*CONNECTION_LOST, asyncpg.InterfaceError)


class _Connection(Protocol):
    def is_closed(self) -> bool: ...


def connection_lost(exc: BaseException, conn: _Connection) -> bool:
    """Whether `exc`, raised by a call on `conn`, means the connection is gone. asyncpg
    raises `InterfaceError` both for a closed connection and for a call it cannot make
    (an argument it cannot encode, `DataError`; an operation while another is in
    progress): those are not for reconnecting, which would retry them forever. The
    connection says which it was, and also for asyncpg's internal errors (a connection
    lost mid-COPY)."""
    return isinstance(exc, CONNECTION_LOST) or conn.is_closed()


_EVENT_COLUMNS = ("run_id", "idx", "generation", "kind", "seq", "name", "data", "at")
_FIRST_RECONNECT_DELAY = 0.05
_MAX_RECONNECT_DELAY = 1.0
_PROBE_TIMEOUT = 5.0  # seconds a connection that works takes to answer `SELECT 1`


async def _internal_error_lost(exc: BaseException, conn: asyncpg.Connection) -> bool:
    """Whether `exc`, an asyncpg internal error raised by a call on `conn` (not closed),
    means the connection is gone. asyncpg raises `InternalClientError` for a connection
    the server ended mid-operation, before it has seen the connection close, and for a
    fault of its own on a connection that works: a probe tells them apart."""
    if not isinstance(exc, asyncpg.InternalClientError):
        return False
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            await conn.fetchval("SELECT 1")
    except (*CONNECTION_ERRORS, asyncpg.InternalClientError):
        return True
    return False


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[Sequence[Any]]:
    """The rows as `width` column arrays (empty ones for no rows)."""
    return list(zip(*rows, strict=True)) if rows else [()] * width


class PostgresTransactions:
    """Writes batches through `commit_batch` (see `_postgres_schema`)."""

    def __init__(
        self,
        connect: Callable[[], Coroutine[Any, Any, asyncpg.Connection]],
        reconnect_timeout: float = 10.0,
        copy_rows: int = 1024,
    ) -> None:
        self._connect = connect
        self._reconnect_timeout = reconnect_timeout
        self._copy_rows = copy_rows
        self._conn: asyncpg.Connection | None = None
        self.reconnects = 0
        self.fence: Fence | None = None

    async def open(self) -> None:
        self._conn = await self._connect()
        await self._warm_up(self._conn)

    async def _warm_up(self, conn: asyncpg.Connection) -> None:
        """Write a row to every table through `commit_batch`, and roll it back.

        The first call on a connection prepares the statement and has PostgreSQL
        compile the function and plan each of its statements (measured: the first
        `start()` after open took 56 to 80 ms, the next ones 1 to 2 ms); done here,
        that cost is paid by `open()`, not by the first run.
        """
        run_id = "actorflow-warm-up"
        run = (run_id, "-", "running", 0, b"[]", None, None, None, None, 0.0, None, None,
               None, None)  # fmt: skip
        event = (run_id, run_id, 0, 0, "run_created", None, None, None, 0.0)
        chunk = (run_id, "-", 0, None, 0, 0, None, 0.0)
        update = ("running", 0, None, None, None, None, None, run_id)
        hook = (run_id, run_id, 0)
        schedule = (run_id, "-", "-", b"[]", "UTC", "-", "-", 0, 0, None, 0.0, 0.0, None, b"{}")
        arrays = [*_columns([run], 14), *_columns([event], 9), *_columns([chunk], 8),
                  *_columns([update], 8), *_columns([hook], 3), [run_id], [run_id],
                  *_columns([schedule], 14), None, [run_id], [0], [False],
                  *_columns([(run_id, "-", None, None, 0.0, run_id)], 6), [0],
                  [run_id]]  # fmt: skip
        # Every row the writer reads it finds by key; a generic plan takes a parameter
        # array for 10 rows and scans a table of a few thousand whole (measured: the
        # commit of a run's end read 8 pages per 300 runs in `runs`, growing with it).
        await conn.execute("SET enable_seqscan = off")
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.fetchrow(_COMMIT, *arrays)
            for sql, count in usual_statements():
                await conn.fetchrow(sql, None, *[[]] * (count - 1))
        finally:
            await transaction.rollback()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def server_pid(self) -> int | None:
        """The server process of the writer's connection, if it has one (tests end it)."""
        return None if self._conn is None else int(self._conn.get_server_pid())

    async def write(self, batch: WriteBatch) -> None:
        fence = self._fence(batch)
        parts, events = self._parts(batch, fence)
        if parts.empty() and not batch.schedule_writes:
            return  # every row was dropped (runs refused earlier): nothing to send
        conn = self._conn or await self._reconnect(batch, None)
        while True:
            try:
                if batch.schedule_writes:
                    async with conn.transaction():
                        await write_schedules(conn, batch)
                        # Ticks of changed schedules, and their runs, have left the batch.
                        parts, events = self._parts(batch, fence)
                        found = await self._send(conn, parts, events, batch.hooks)
                else:
                    found = await self._send(conn, parts, events, batch.hooks)
                if found is None:
                    return
                taken, refused, hook_tokens, hook_holders = found[:4]
            except Exception as exc:
                # Anything else fails the batch (the group commit's failed writes).
                if not (connection_lost(exc, conn) or await _internal_error_lost(exc, conn)):
                    raise
                log.warning("the writer's connection was lost (%r); reconnecting", exc)
                self._conn = None
                conn.terminate()
                conn, committed = await self._reconnect_and_ask(batch, exc)
                if committed:
                    refused, held = await learn_refusals(
                        conn, fence, [(h.token, h.run_id) for h in batch.hooks]
                    )
                    batch.refused.update(refused)
                    batch.hook_conflicts.update(held)
                    return
                continue
            if taken:
                batch.conflicts.update(taken)
            if refused:
                batch.refused.update(refused)
            if hook_tokens:
                batch.hook_conflicts.update(zip(hook_tokens, hook_holders, strict=True))
            return

    async def _send(
        self,
        conn: asyncpg.Connection,
        parts: Parts,
        events: list[tuple[Any, ...]],
        hooks: list[HookRow],
    ) -> asyncpg.Record | None:
        """Send a batch's rows but its schedules' (None if it has none)."""
        found: asyncpg.Record | None
        if parts.empty():
            return None
        if len(events) >= self._copy_rows:
            found = await self._write_with_copy(conn, parts, events, hooks)
        elif parts.needs_function():
            found = await conn.fetchrow(_COMMIT, *parts.commit_batch_args())
        else:
            sql, args = parts.statement()
            found = await conn.fetchrow(sql, *args)
        assert found is not None
        return found

    async def _write_with_copy(
        self,
        conn: asyncpg.Connection,
        parts: Parts,
        events: list[tuple[Any, ...]],
        batch_hooks: list[HookRow],
    ) -> asyncpg.Record:
        """A large batch: `commit_batch` without its events, which follow by COPY (twice as
        fast as `unnest` for thousands of rows), in one transaction."""
        async with conn.transaction():
            args = parts._replace(events=_columns([], 9)).commit_batch_args()
            found = await conn.fetchrow(_COMMIT, *args)
            assert found is not None
            taken, refused, hook_tokens, _ = found
            refused = {*refused, *(h.run_id for h in batch_hooks if h.token in hook_tokens)}
            dropped = {*taken, *refused}
            rows = [
                event[1:]
                for event in events
                if (event[0] is None or event[0] not in dropped) and event[1] not in refused
            ]
            await conn.copy_records_to_table("events", records=rows, columns=_EVENT_COLUMNS)
            if parts.fence[0]:
                # `commit_batch` notified of its own rows only (see `_postgres_watch_marks`).
                await conn.execute(_NOTIFY_MARKED, parts.fence[0])
        return found

    def _parts(
        self, batch: WriteBatch, fence: tuple[str | None, list[str], list[int]]
    ) -> tuple[Parts, list[tuple[Any, ...]]]:
        """The batch's arrays, and its event rows, each led by the id of the creation it
        belongs to (or None). A chosen id taken earlier in the batch is a conflict at
        once: one statement cannot tell two creations of one id apart."""
        assert batch.run_inserts is not None, "the batch was not sealed"
        runs: list[tuple[object, ...]] = []
        events: list[tuple[object, ...]] = [(None, *event) for event in batch.events]
        seen: set[str] = set()
        for (row, created), params in zip(batch.new_runs, batch.run_inserts, strict=True):
            if row.id in seen:
                batch.conflicts.add(row.id)
                continue
            seen.add(row.id)
            runs.append(params)
            events.extend((row.id, *event) for event in created)
        hooks = {hook.token: hook for hook in batch.hooks}  # the last taking of a token wins
        owner, fenced, epochs = fence
        queued = batch.queued
        parts = Parts(
            runs=[*_columns(runs, 14), [params[0] in queued for params in runs]],
            events=_columns(events, 9),
            chunks=_columns(batch.chunks, 8),
            updates=_columns(list(batch.run_updates.values()), 8),
            hooks=_columns(list(hooks.values()), 3),
            hook_deletes=[list(batch.hook_deletes)],
            schedule_deletes=[[]],  # schedules are written apart (`write_schedules`)
            schedules=_columns([], 14),
            inbox=_columns(batch.inbox, 6),
            inbox_taken=_columns(batch.inbox_taken, 2),
            fence=[fenced, epochs],
            owner=owner,
        )
        return parts, events

    def _fence(self, batch: WriteBatch) -> tuple[str | None, list[str], list[int]]:
        return (None, [], []) if self.fence is None else self.fence(batch)

    async def _reconnect(
        self, batch: WriteBatch, cause: BaseException | None
    ) -> asyncpg.Connection:
        """A new connection, trying with a backoff for `reconnect_timeout` seconds; raises
        StoreWriteError when the server stays away."""
        deadline = time.monotonic() + self._reconnect_timeout
        delay = _FIRST_RECONNECT_DELAY
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = self._conn = await self._connect()
                await self._warm_up(conn)
            except Exception as exc:
                if not (
                    isinstance(exc, CONNECTION_LOST) if conn is None else connection_lost(exc, conn)
                ):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreWriteError(
                        f"the database is unreachable: {exc!r}; {len(batch)} rows not written"
                    ) from (cause or exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RECONNECT_DELAY)
                continue
            self.reconnects += 1
            return self._conn

    async def _reconnect_and_ask(
        self, batch: WriteBatch, cause: BaseException
    ) -> tuple[asyncpg.Connection, bool]:
        """A new connection, and whether `batch` committed before the last one was lost;
        asked again on another connection if this one is lost too (asyncpg may report
        that as an internal error: a connection left mid-operation). Raises what asking
        raised on a connection that still answers (asked again, it would fail again)."""
        while True:
            conn = await self._reconnect(batch, cause)
            try:
                return conn, await self._committed(conn, batch)
            except Exception as exc:
                if not (connection_lost(exc, conn) or await _internal_error_lost(exc, conn)):
                    raise
                log.warning("the writer's connection was lost again (%r)", exc)
                self._conn = None
                conn.terminate()
                cause = exc

    async def _committed(self, conn: asyncpg.Connection, batch: WriteBatch) -> bool:
        """Whether `batch` reached the database before its connection was lost. Raises"""
        if batch.new_runs:
            # A stored run with our creation time is ours (another one's is a conflict).
            found = await conn.fetch(
                "SELECT id, created_at FROM runs WHERE id = ANY($1::text[])",
                [row.id for row, _ in batch.new_runs],
            )
            stored = {row["id"]: row["created_at"] for row in found}
            ours = {row.id for row, _ in batch.new_runs if stored.get(row.id) == row.created_at}
            if ours:
                batch.conflicts.update(row.id for row, _ in batch.new_runs if row.id not in ours)
            return bool(ours)
        # Any of its rows with a unique key (the fence may have refused some runs' rows).
        if batch.events:
            found = await conn.fetchval(
                "SELECT 1 FROM events e JOIN unnest($1::text[], $2::int[]) AS k(run_id, idx)"
                " ON e.run_id = k.run_id AND e.idx = k.idx LIMIT 1",
                [e.run_id for e in batch.events],
                [e.idx for e in batch.events],
            )
            if found is not None:
                return True
        if batch.chunks:
            found = await conn.fetchval(
                "SELECT 1 FROM chunks c JOIN unnest($1::text[], $2::text[], $3::int[])"
                " AS k(run_id, namespace, idx) ON c.run_id = k.run_id"
                " AND c.namespace = k.namespace AND c.idx = k.idx LIMIT 1",
                [c.run_id for c in batch.chunks],
                [c.namespace for c in batch.chunks],
                [c.idx for c in batch.chunks],
            )
            if found is not None:
                return True
        # Otherwise (or all refused): run updates, hooks, schedules and inbox rows set rows
        # to values or are keyed (an inbox row by its uid), so writing the batch again
        # does what writing it once did.
        return False
