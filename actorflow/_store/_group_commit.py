"""GroupCommitWriter: one task that commits the rows of every writer in batches.

All rows appended to the open batch while a commit is in flight ride together
in the next one, so a thousand actors cost one transaction, not a thousand.

Backend-neutral: the open and sealed batches, the order of commits, and what
happens when one fails live here; a backend supplies only `Transactions`
("commit these rows in one transaction"; SQLite's is `SQLiteTransactions`).
Batches commit in the order they were opened. A failed batch is reported to
the failure listener before any later batch is written (those may hold rows
that continue the lost ones), then its waiters get a `StoreWriteError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from mypy_extensions import mypyc_attr

from .. import _observe
from .._errors import StoreWriteError
from .._repeated_errors import RepeatedErrors
from ._base import CommitListener, CommitStats, FailureListener, RunRow, WriteBatch

log = logging.getLogger("actorflow.store")
T = TypeVar("T")


class Transactions(Protocol):
    """What a backend supplies to the group commit."""

    async def open(self) -> None:
        """Open the write connection."""

    async def close(self) -> None:
        """Close it; called once every batch is written."""

    async def write(self, batch: WriteBatch) -> None:
        """Commit every row of `batch` (sealed) in one transaction, recording the new
        runs whose id is taken in `batch.conflicts`; raise, having rolled back, if it fails."""


class GroupCommitWriter:
    """Owns the open and sealed batches and the task that commits them in order.

    `seal_rows` is the number of events and new runs at which the open batch is
    sealed and queued for commit at once, without waiting for the loop turn to
    end (see `commit`).
    """

    def __init__(self, transactions: Transactions, seal_rows: int = 8192) -> None:
        self.transactions = transactions
        self._task: asyncio.Task[None] | None = None
        self._seal_rows = seal_rows
        self._open: WriteBatch | None = None
        self._sealed: deque[WriteBatch] = deque()
        # Whether a commit is asked for; `_wakeup` is the writer task's wait for one.
        self._wanted = False
        self._wakeup: asyncio.Future[None] | None = None
        self._listener: CommitListener | None = None
        self._failure_listener: FailureListener | None = None
        self._stopping = False
        self._errors = RepeatedErrors(log, "commit")
        # Work that must run alone on the write connection (purges), between commits.
        self._jobs: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self.batches = 0
        self.rows = 0
        self.busy_seconds = 0.0  # wall time spent writing batches

    def _fail_jobs(self) -> None:
        for _, future in self._jobs:
            if not future.done():
                future.set_exception(StoreWriteError("the store was closed"))
        self._jobs.clear()

    def stats(self) -> CommitStats:
        """The counters so far."""
        return CommitStats(self.batches, self.rows, self.busy_seconds)

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._listener = listener

    def set_failure_listener(self, listener: FailureListener) -> None:
        self._failure_listener = listener

    def discard_pending(self, run_ids: set[str]) -> dict[str, RunRow]:
        """Drop the rows of `run_ids` from every batch not yet written, oldest first (so a
        creation dropped from one batch takes the run's rows in later ones with it)."""
        assert self._open is not None, "store is not open"
        dropped: dict[str, RunRow] = {}
        for batch in [*self._sealed, self._open]:
            dropped.update(batch.discard(run_ids))
        return dropped

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.transactions.open()
        self._open = WriteBatch(loop.create_future())
        self._task = asyncio.create_task(self._run(), name="actorflow-group-commit")

    async def stop(self) -> None:
        """Commit what is pending, let the task end, and close the connection.

        The task drains and returns on its own rather than being cancelled: a
        cancelled awaiter may have cancelled the open batch's shared future, so
        that future cannot tell us when the last commit is done.
        """
        if self._task is None:
            return
        self._stopping = True
        self._want()
        await self._task
        self._task = None
        await self.transactions.close()

    def batch(self) -> WriteBatch:
        """The open batch: rows appended to it go in the next commit."""
        batch = self._open
        assert batch is not None, "store is not open"
        return batch

    def commit(self) -> asyncio.Future[None]:
        """Ask for the open batch to be committed; its future resolves once it is.

        A full batch is sealed and queued at once, and a new one opened: the
        writer thread then commits while the loop goes on producing rows.
        Without that, thousands of actors woken by one commit would all append
        to one huge batch and then wait for it together, and the loop would sit
        idle for the whole commit. Batches still commit in the order they were
        opened. (Checked here, not in `batch()`: every writer commits after
        appending, and `batch()` is called several times per step.)
        """
        batch = self._open
        assert batch is not None, "store is not open"
        if len(batch.events) + len(batch.new_runs) >= self._seal_rows:
            batch.seal()
            self._sealed.append(batch)
            self._open = WriteBatch(batch.future.get_loop().create_future())
        self._want()
        return batch.future

    async def exclusive(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run `job` between two commits, with the write connection to itself: commits
        asked for meanwhile wait for it, without contending for a lock (see `_purge`).
        Raises `StoreWriteError` if the writer stops first."""
        if self._task is None or self._stopping:
            raise StoreWriteError("the store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append((job, future))
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        return await future

    async def _run_job(self) -> None:
        job, future = self._jobs.popleft()
        if future.done():  # its caller gave up (cancelled)
            return
        try:
            result = await job()
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    def _want(self) -> None:
        self._wanted = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._wanted and not self._jobs:
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
            if self._jobs and not self._sealed:
                await self._run_job()
                continue
            if not self._wanted and not self._sealed:
                continue
            if self._sealed:
                batch = self._sealed.popleft()
            else:
                # Linger one loop turn: callbacks already scheduled (a step that just
                # finished, other actors' turns) add their rows to this batch, not the next.
                await asyncio.sleep(0)
                if self._sealed:
                    continue
                self._wanted = False  # only with `_sealed` empty: sealed batches are wanted
                batch = self.batch()
                if self._stopping and not len(batch):
                    self._fail_jobs()
                    return
                self._open = WriteBatch(loop.create_future())
                batch.seal()
            began = time.perf_counter()
            try:
                await self.transactions.write(batch)
            except Exception as exc:
                self._errors.failed(exc, f" ({len(batch)} rows)")
                observer = _observe.current
                if observer is not None:
                    observer.commit_failed(batch)
                error = StoreWriteError(f"commit failed: {exc!r}")
                if self._failure_listener is not None:
                    # Before the next batch is written: it may hold rows that continue
                    # the lost ones, which must not reach the log (it would have a hole).
                    try:
                        self._failure_listener(batch, error)
                    except Exception:
                        log.exception("the store failure listener failed")
                if not batch.future.done():
                    batch.future.set_exception(error)
                    # Every awaiter gets the error; no one else needs to hear of it.
                    batch.future.exception()
                continue
            seconds = time.perf_counter() - began
            self.busy_seconds += seconds
            self._errors.succeeded()
            self.batches += 1
            self.rows += len(batch)
            if self._listener is not None:
                self._listener(batch)
            observer = _observe.current
            if observer is not None:
                observer.batch_written(len(batch), seconds)
            batch.committed()
            # An awaiter that was cancelled cancels the shared future with it.
            if not batch.future.done():
                batch.future.set_result(None)
            if self._stopping:
                self._want()


@mypyc_attr(allow_interpreted_subclasses=True)
class GroupCommitted:
    """The write half of the `Store` protocol for a store whose writes go through a
    `GroupCommitWriter` (its `_writer`); the store binds `batch` and `commit` itself."""

    _writer: GroupCommitWriter

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._writer.set_commit_listener(listener)

    def set_failure_listener(self, listener: FailureListener) -> None:
        self._writer.set_failure_listener(listener)

    def discard_pending(self, run_ids: set[str]) -> dict[str, RunRow]:
        return self._writer.discard_pending(run_ids)

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-commit writer (tests tune it)."""
        return self._writer

    def commit_stats(self) -> CommitStats:
        return self._writer.stats()
