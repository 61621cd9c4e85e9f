"""GroupCommitWriter: one task that commits the rows of every writer in batches.

All rows appended to the open batch while a commit is in flight ride together
in the next one, so a thousand actors cost one transaction, not a thousand.

Why not aiosqlite for writes: a batch touches several tables, and aiosqlite
needs a thread hop per statement (BEGIN, each executemany, COMMIT; ~250 µs per
batch measured here). This writer runs the whole transaction in one call on
its own connection. Small batches run inline on the event loop thread (~15 µs,
cheaper than any thread hop, which is what keeps a lone run's latency low);
large ones go to a dedicated thread so the loop keeps running Python while
SQLite works (sqlite3 releases the GIL while it executes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .._errors import ActorflowError
from ._base import CommitListener, WriteBatch
from ._checkpoint import WalCheckpointer

log = logging.getLogger("actorflow.store")

_INSERT_RUN = (
    "INSERT OR IGNORE INTO runs (id, workflow, status, generation, args, result, error, metadata,"
    " parent_id, created_at, started_at, completed_at, wake_at, deadline_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_EVENT = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?)"
_INSERT_CHUNK = "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?)"
_UPDATE_RUN = (
    "UPDATE runs SET status=?, generation=?, result=?, error=?, started_at=?, completed_at=?,"
    " wake_at=? WHERE id=?"
)
_PUT_HOOK = "INSERT OR REPLACE INTO hooks VALUES (?,?,?)"
_DELETE_HOOKS = "DELETE FROM hooks WHERE run_id=?"


class StoreWriteError(ActorflowError):
    """A batch could not be committed (disk full, database corrupt, ...)."""


class GroupCommitWriter:
    """Owns the write connection and the task that commits batches.

    `inline_limit` is the batch size (rows) up to which a commit runs on the
    event loop thread instead of the writer thread.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        checkpointer: WalCheckpointer,
        inline_limit: int = 64,
    ) -> None:
        self._connect = connect
        self._checkpointer = checkpointer
        self._inline_limit = inline_limit
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._open: WriteBatch | None = None
        self._wanted = asyncio.Event()
        self._listener: CommitListener | None = None
        self.batches = 0
        self.rows = 0

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="actorflow-writer")
        self._conn = await loop.run_in_executor(self._executor, self._connect)
        self._open = WriteBatch(loop.create_future())
        self._task = asyncio.create_task(self._run(), name="actorflow-group-commit")

    async def stop(self) -> None:
        """Commit what is pending, then stop the task and close the connection."""
        if self._task is None:
            return
        if self._open is not None and len(self._open):
            await self.commit()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        assert self._executor is not None and self._conn is not None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)
        self._conn = None

    def batch(self) -> WriteBatch:
        assert self._open is not None, "store is not open"
        return self._open

    def commit(self) -> asyncio.Future[None]:
        self._wanted.set()
        return self.batch().future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wanted.wait()
            # Linger one loop turn: callbacks already scheduled (a step that just finished,
            # other actors' turns) add their rows to this batch instead of the next one.
            await asyncio.sleep(0)
            self._wanted.clear()
            batch = self.batch()
            self._open = WriteBatch(loop.create_future())
            try:
                if len(batch) <= self._inline_limit:
                    self._write(batch)
                else:
                    await loop.run_in_executor(self._executor, self._write, batch)
            except asyncio.CancelledError:
                batch.future.cancel()
                raise
            except Exception as exc:
                log.exception("commit of %d rows failed", len(batch))
                if not batch.future.done():
                    batch.future.set_exception(StoreWriteError(f"commit failed: {exc!r}"))
                    # Every awaiter gets the error; no one else needs to hear of it.
                    batch.future.exception()
                continue
            self.batches += 1
            self.rows += len(batch)
            self._checkpointer.note_commit(len(batch))
            if self._listener is not None:
                self._listener(batch)
            # An awaiter that was cancelled cancels the shared future with it.
            if not batch.future.done():
                batch.future.set_result(None)

    def _write(self, batch: WriteBatch) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN")
        try:
            for row, events in batch.new_runs:
                if conn.execute(_INSERT_RUN, row.insert_params()).rowcount == 0:
                    batch.conflicts.add(row.id)
                elif events:
                    conn.executemany(_INSERT_EVENT, events)
            if batch.events:
                conn.executemany(_INSERT_EVENT, batch.events)
            if batch.chunks:
                conn.executemany(_INSERT_CHUNK, batch.chunks)
            if batch.run_updates:
                conn.executemany(_UPDATE_RUN, batch.run_updates.values())
            if batch.hooks:
                conn.executemany(_PUT_HOOK, batch.hooks)
            if batch.hook_deletes:
                conn.executemany(_DELETE_HOOKS, [(r,) for r in batch.hook_deletes])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
