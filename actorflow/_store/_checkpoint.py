"""WalCheckpointer: keeps the WAL file short without stalling commits.

SQLite's automatic checkpoint runs inside whichever commit crosses its
threshold, and small commits run inline on the event loop thread
(`GroupCommitWriter`), so it stalled the whole process for milliseconds now
and then (measured: 3-step workflow latency p99 3.5 ms with it, 0.47 ms
without). The writer's connection turns it off; this runs PASSIVE checkpoints
on a connection and thread of its own, which never block the writer.

SQLite writes the WAL from its start again only when a transaction begins with
the whole WAL checkpointed, which a checkpoint running beside a steady stream of
commits never leaves it: the file grew without bound (230 MB for a 50 MB
database after 60,000 workflows), every commit extending it. So after a
checkpoint that leaves the WAL longer than `restart_frames` pages, the writer
waits, before its next transaction, for a second one that checkpoints what was
committed during the first (`catch_up`): the loop goes on meanwhile, its rows
joining the next batch. That last checkpoint, which completes, is the first to
sync the database file, and so flushed every page the periodic ones had copied
since the file last started over: the writer waited 30 to 45 ms (a steady 100
runs in flight, 150,000 workflows: p99.9 latency 29 ms). A periodic checkpoint
therefore flushes the database file itself (`sync_database`, in its thread,
beside the commits): p99.9 11.3 ms, the longest wait 13.1 ms (medians of 3
rounds; single runs of a script read 11 to 16 ms).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .._repeated_errors import RepeatedErrors

log = logging.getLogger("actorflow.store")


class WalCheckpointer:
    """Checkpoints after every `every_rows` committed rows, one checkpoint at a time."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        every_rows: int = 50_000,
        restart_frames: int = 32768,
        sync_database: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._sync_database = sync_database
        self._every_rows = every_rows
        self._pending_rows = 0
        # Set when a checkpoint ended with the WAL at least `restart_frames` pages long
        # (128 MiB of 4 KiB pages): the writer calls `catch_up` before its next
        # transaction. Not after every checkpoint, nor at 32 MiB: the writer's wait
        # (a few ms, fsyncs included) put the `sustained` benchmark's p99 latency
        # up 1.4 to 1.6x (its 20,000 workflows write ~90 MB of WAL).
        self._restart_frames = restart_frames
        self.catch_up_due = False
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._errors = RepeatedErrors(log, "WAL checkpoint")

    def note_commit(self, rows: int) -> None:
        """Count committed rows; start a checkpoint when enough have piled up."""
        self._pending_rows += rows
        if self._pending_rows >= self._every_rows and self._task is None:
            self._pending_rows = 0
            self._task = asyncio.get_running_loop().create_task(
                self._run("PASSIVE", periodic=True), name="actorflow-wal-checkpoint"
            )

    async def catch_up(self) -> None:
        """Checkpoint what was committed during the last checkpoint; the writer waits
        for it (the loop does not), so its next transaction finds the whole WAL
        checkpointed and writes the file from its start again."""
        self.catch_up_due = False
        if self._task is None:
            await self._run("PASSIVE")

    async def stop(self) -> None:
        """Wait for a running checkpoint, then fold the whole WAL into the database."""
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._task = asyncio.get_running_loop().create_task(self._run("TRUNCATE"))
            await self._task
            assert self._conn is not None
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._executor.shutdown(wait=True)
            self._executor = None
            self._conn = None

    async def _run(self, mode: str, periodic: bool = False) -> None:
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="actorflow-checkpoint")
            frames = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._checkpoint, mode, periodic
            )
        except Exception as exc:
            # A failed checkpoint loses nothing (the WAL keeps every commit); the next retries.
            self._errors.failed(exc, f" ({mode})")
        else:
            self._errors.succeeded()
            self.catch_up_due = periodic and frames >= self._restart_frames
        finally:
            self._task = None

    def _checkpoint(self, mode: str, periodic: bool) -> int:
        """Checkpoint; the WAL's length in pages. For a `periodic` one, a WAL that long is
        checkpointed again at once (what was committed meanwhile), so that what the
        writer waits for in `catch_up()` is only what was committed during that."""
        if self._conn is None:
            self._conn = self._connect()
        sql = f"PRAGMA wal_checkpoint({mode})"
        _busy, frames, _done = self._conn.execute(sql).fetchone()
        if periodic and frames >= self._restart_frames:
            self._conn.execute(sql).fetchall()
        if periodic and self._sync_database is not None:
            self._sync_database()
        return int(frames)
