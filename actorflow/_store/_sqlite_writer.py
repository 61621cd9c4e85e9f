"""SQLiteTransactions: how the group commit writes a batch to SQLite, in one transaction.

Supplies the `Transactions` of `GroupCommitWriter` (`_group_commit.py`): the
write connection, and one call that commits every row of a batch.

Why not aiosqlite for writes: a batch touches several tables, and aiosqlite
needs a thread hop per statement (BEGIN, each executemany, COMMIT; ~250 µs per
batch measured here). This runs the whole transaction in one call on its own
connection. Batches of up to 512 rows run inline on the event loop thread
(~15 µs for a few rows, cheaper than any thread hop, which is what keeps a lone
run's latency low; about a millisecond at 512 rows); larger ones go to a
dedicated thread so the loop keeps running Python while SQLite works (sqlite3
releases the GIL while it executes). Under a steady load the runs in flight
move in step: each waits for the same commit, so the loop has nothing to do
while it runs, and committing inline saves the two thread hops. With 100 runs
in flight (batches of 225 rows), 512 instead of 64 rows inline gave 10 to 22 %
more workflows/s in six of six paired runs; bursts, whose batches hold
thousands of rows, are unchanged.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from typing import Any, Final, TypeVar

from ._base import EventRow, RunRow, WriteBatch
from ._checkpoint import WalCheckpointer
from ._schedule_rows import write_schedules
from ._sqlite_events import is_implied

T = TypeVar("T")

# `OR FAIL`: a statement that breaks a constraint stops without undoing its own rows,
# which SQLite otherwise keeps a statement journal (a savepoint per statement) for; the
# batch's transaction is rolled back whole anyway (`_write`). 2,300 instructions less
# per 3-step workflow (-0.37 %).
_RUNS_HEAD = (
    "INSERT OR FAIL INTO runs (id, workflow, status, generation, args, result, error, metadata,"
    " parent_id, created_at, started_at, completed_at, wake_at, deadline_at) VALUES "
)
# A run inserted before it has a result, an error, metadata, a parent, a timer or a
# deadline (nearly every one) binds only the columns it has: each NULL bound costs sqlite3
# an adapter lookup (about 700 instructions), and a fresh run has seven.
_FRESH_RUNS_HEAD = (
    "INSERT OR FAIL INTO runs (id, workflow, status, generation, args, created_at, started_at)"
    " VALUES "
)
_FRESH_COLUMNS: Final = itemgetter(0, 1, 2, 3, 4, 9, 10)
_FRESH_NULLS: Final = itemgetter(5, 6, 7, 8, 11, 12, 13)
_SEVEN_NULLS: Final = (None,) * 7
# The BLOB columns of each statement's rows (see `MultiRowStatements`).
_RUNS_BLOBS: Final = (4, 5, 6, 7)
_FRESH_RUNS_BLOBS: Final = (4,)
_EVENTS_BLOBS: Final = (6,)
_CHUNKS_BLOBS: Final = (6,)
_UPDATE_RUNS_BLOBS: Final = (2, 3)
_EVENTS_HEAD = "INSERT OR FAIL INTO events VALUES "
_CHUNKS_HEAD = "INSERT OR FAIL INTO chunks VALUES "
_HOOKS_HEAD = "INSERT OR REPLACE INTO hooks VALUES "
_UPDATE_RUNS = (
    "UPDATE OR FAIL runs SET status=v.column1, generation=v.column2, result=v.column3,"
    " error=v.column4, started_at=v.column5, completed_at=v.column6, wake_at=v.column7"
    " FROM (VALUES {values}) AS v WHERE runs.id = v.column8"
)
_UPDATE_RUN = (
    "UPDATE OR FAIL runs SET status=?, generation=?, result=?, error=?, started_at=?,"
    " completed_at=?, wake_at=? WHERE id=?"
)
_HAS_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)
_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_CHUNK_ROWS = 4096


class SQLiteTransactions:
    """Owns the write connection; commits each batch in one transaction.

    `inline_limit` is the batch size (rows) up to which a commit runs on the
    event loop thread instead of the writer thread.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        checkpointer: WalCheckpointer,
        inline_limit: int = 512,
    ) -> None:
        self._connect = connect
        self._checkpointer = checkpointer
        self._inline_limit = inline_limit
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._statements = MultiRowStatements()

    async def open(self) -> None:
        register_identity_adapters()
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="actorflow-writer")
        self._conn = await loop.run_in_executor(self._executor, self._connect)
        self._statements.null = null_parameter(self._conn)

    async def close(self) -> None:
        assert self._executor is not None and self._conn is not None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)
        self._conn = None

    async def write(self, batch: WriteBatch) -> None:
        """Commit every row of `batch` in one transaction (rolled back if it raises)."""
        if self._checkpointer.catch_up_due:
            await self._checkpointer.catch_up()
        if len(batch) <= self._inline_limit:
            self._write(batch)
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch)
        self._checkpointer.note_commit(len(batch))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on the writer's thread and connection; only between
        two commits (see `GroupCommitWriter.exclusive`)."""
        assert self._conn is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, fn, self._conn, *args
        )

    def _write(self, batch: WriteBatch) -> None:
        conn = self._conn
        assert conn is not None
        sql = self._statements
        conn.execute("BEGIN")
        try:
            events = batch.events
            if batch.new_runs:
                runs, events = self._new_runs(conn, batch)
                fresh = [_FRESH_COLUMNS(row) for row in runs if _FRESH_NULLS(row) == _SEVEN_NULLS]
                if len(fresh) < len(runs):
                    runs = [row for row in runs if _FRESH_NULLS(row) != _SEVEN_NULLS]
                    sql.run(conn, _RUNS_HEAD, 14, runs, _RUNS_BLOBS)
                sql.run(conn, _FRESH_RUNS_HEAD, 7, fresh, _FRESH_RUNS_BLOBS)
            sql.run(conn, _EVENTS_HEAD, 8, events, _EVENTS_BLOBS)
            sql.run(conn, _CHUNKS_HEAD, 8, batch.chunks, _CHUNKS_BLOBS)
            if batch.run_updates:
                updates = list(batch.run_updates.values())
                if _HAS_UPDATE_FROM:
                    sql.run(conn, _UPDATE_RUNS, 8, updates, _UPDATE_RUNS_BLOBS)
                else:  # pragma: no cover - SQLite older than 3.33
                    conn.executemany(_UPDATE_RUN, updates)
            sql.run(conn, _HOOKS_HEAD, 3, batch.hooks)
            deletes = [(run_id,) for run_id in batch.hook_deletes]
            sql.run(conn, "DELETE FROM hooks WHERE run_id IN ({values})", 1, deletes)
            if batch.schedule_writes:
                write_schedules(conn, sql, batch.schedule_writes)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _new_runs(
        self, conn: sqlite3.Connection, batch: WriteBatch
    ) -> tuple[list[tuple[object, ...]], list[EventRow]]:
        """Rows and events of the batch's new runs whose ids are free; the others are
        recorded in `batch.conflicts` and written not at all."""
        assert batch.run_inserts is not None, "the batch was not sealed"
        events = list(batch.events)
        if not batch.chosen_ids:  # generated ids only: nothing to check
            for row, created in batch.new_runs:
                _add_stored(events, row, created)
            return batch.run_inserts, events
        ids = [(run_id,) for run_id in batch.chosen_ids]
        taken = {
            found[0]
            for found in self._statements.query(
                conn, "SELECT id FROM runs WHERE id IN ({values})", ids
            )
        }
        runs: list[tuple[object, ...]] = []
        for (row, created), params in zip(batch.new_runs, batch.run_inserts, strict=True):
            if row.id in taken:
                batch.conflicts.add(row.id)
                continue
            taken.add(row.id)
            runs.append(params)
            _add_stored(events, row, created)
        return runs, events


def _add_stored(events: list[EventRow], row: RunRow, created: list[EventRow]) -> None:
    """Add a new run's first events to `events`, but for the `run_created` entry its row
    implies (see `_sqlite_events`), which is not stored."""
    if not created or not is_implied(created[0], row):
        events.extend(created)
    elif len(created) > 1:
        events.extend(created[1:])


def register_identity_adapters() -> None:
    """Let sqlite3 bind `bytes` and `None` parameters without searching for an adapter.

    sqlite3 binds exact int, float and str as they are, but for every other
    value (our blobs and NULLs, half of all parameters) it searches the adapter
    registry, then the value's `__adapt__` and `__conform__`, holding the GIL
    (measured: 35 % of the time of a 4,000-row insert of event rows). Registered
    identity adapters are found in the first lookup and return the value as it
    is, so what is bound does not change. They are process-wide, so an adapter
    someone else registered for these types is left in place. Each is the
    cheapest C call that returns its argument: `bytes.__bytes__` and
    `set().discard` (which returns None) take no argument parsing, where
    `bytes(b)` and `{}.get` did (400 instructions less per adapted value,
    about 8,000 per 3-step workflow). The journal's own statements now bind
    neither (see `MultiRowStatements`); a blob that is not UTF-8, the schedules'
    rows and the reads still do.
    """
    identities: tuple[tuple[type, Callable[[Any], Any]], ...] = (
        (bytes, bytes.__bytes__),  # b itself for an exact bytes object
        (type(None), set().discard),  # None, whatever it is given
    )
    for kind, identity in identities:
        if (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(kind, identity)


def _flatten(rows: Sequence[tuple[Any, ...]], blobs_as_text: bool, null: object) -> list[Any]:
    """The rows' values in one list, in order, by index into a list made at its full size
    (`list(chain.from_iterable(rows))` went through two iterators per value); None as
    `null`; with `blobs_as_text`, a `bytes` value that is UTF-8 (JSON, as nearly all
    are) as `str`. `rows` is a chunk: never empty, every row as wide as the first."""
    params: list[Any] = [None] * (len(rows) * len(rows[0]))
    i = 0
    for row in rows:
        for value in row:
            if value is None:
                value = null
            elif blobs_as_text and type(value) is bytes:
                value = _as_text(value)
            params[i] = value
            i += 1
    return params


def null_parameter(conn: sqlite3.Connection) -> object:
    """What to bind for NULL: a NaN, which SQLite binds as NULL (a `float`, which sqlite3
    binds as it is, where `None` goes through the adapter registry), if this SQLite
    does; else None."""
    (is_null,) = conn.execute("SELECT ? IS NULL", (math.nan,)).fetchone()
    return math.nan if is_null else None


def _as_text(blob: bytes) -> str | bytes:
    try:
        return blob.decode()
    except UnicodeDecodeError:
        return blob  # not UTF-8: bound as bytes, through the adapter registry


class MultiRowStatements:
    """Runs a statement over many rows with one `VALUES (...),(...)` list per chunk.

    `executemany` binds and steps row by row, re-taking the GIL after every
    row; on the writer thread, next to a busy event loop, that handoff
    dominated (measured: 891 rows/s with executemany against 34,000 rows/s in
    256-row statements while another thread ran Python). For the same reason
    chunks are as large as SQLite's variable limit allows: each statement is one
    more wait for the GIL (with the loop busy, 4096-row chunks halved the
    writer's wall time against 512-row ones). Chunks are a fixed size plus
    power-of-two remainders, so only a few statements per table are ever
    prepared (and cached by sqlite3).

    `blobs` names a table's BLOB columns (by position in the row): their values are
    bound as text and cast back to BLOB by the statement, since sqlite3 binds a `str`
    as it is but looks a `bytes` value up in its adapter registry (a key tuple built
    with `Py_BuildValue`, a dict lookup and an adapter call: 1,100 instructions a
    value). What is stored is the same bytes, as a BLOB. Every column that can hold
    `bytes` must be named, else a value would be stored as TEXT. For the same reason
    None is bound as `null` (set by the writer: a NaN, see `null_parameter`).
    """

    def __init__(self) -> None:
        self._sql: dict[tuple[str, int, int, tuple[int, ...]], str] = {}
        self.null: object = None  # bound for None: see `null_parameter`

    def run(
        self,
        conn: sqlite3.Connection,
        sql: str,
        width: int,
        rows: Sequence[Any],
        blobs: tuple[int, ...] = (),
    ) -> None:
        """Execute `sql` (a head ending in `VALUES `, or containing `{values}`) for all rows."""
        for statement, params in self._chunks(sql, width, rows, blobs):
            conn.execute(statement, params)

    def query(
        self, conn: sqlite3.Connection, sql: str, rows: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        """Like `run` for a one-column `IN ({values})` query; returns every result row."""
        found: list[tuple[Any, ...]] = []
        for statement, params in self._chunks(sql, 1, rows, ()):
            found.extend(conn.execute(statement, params).fetchall())
        return found

    def _chunks(
        self, sql: str, width: int, rows: Sequence[Any], blobs: tuple[int, ...]
    ) -> Iterator[tuple[str, list[Any]]]:
        chunk = min(_CHUNK_ROWS, _MAX_VARIABLES // width)
        start, total = 0, len(rows)
        while start < total:
            left = total - start
            size = chunk if left >= chunk else 1 << (left.bit_length() - 1)
            part = rows[start : start + size]
            yield self._statement(sql, width, size, blobs), _flatten(part, bool(blobs), self.null)
            start += size

    def _statement(self, sql: str, width: int, size: int, blobs: tuple[int, ...]) -> str:
        key = (sql, width, size, blobs)
        statement = self._sql.get(key)
        if statement is None:
            marks = ["CAST(? AS BLOB)" if i in blobs else "?" for i in range(width)]
            group = "(" + ",".join(marks) + ")" if width > 1 else marks[0]
            values = ",".join([group] * size)
            statement = sql.format(values=values) if "{values}" in sql else sql + values
            self._sql[key] = statement
        return statement
