"""ClusterNode: one engine's membership of the engines sharing a PostgreSQL database.

It holds the engine's lease (`EngineLease`), knows which runs the engine owns and
at which epoch (the fence every commit checks, `fence`), claims the runs of dead
engines and queued runs (`_claims.py`), hands the messages in the inbox to the
owned runs' actors (`_inbox.py`), and tells local readers of runs owned elsewhere
when those change (`watches`). Its work is woken by `LISTEN/NOTIFY` on a
connection of its own and by the lease's heartbeat (which notices dead engines);
a slow sweep (every `lease_timeout * 2`) catches a wake-up lost with a connection.

It talks to the engine's directory of actors through `ClusterHost`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

import asyncpg

from .._dying import cancel_and_wait
from .._errors import StoreWriteError
from .._messages import ChildDone
from .._models import FINAL, UNFINISHED
from .._store import EventRow, WriteBatch
from .._store._postgres_cluster_schema import CLAIM_CHANNEL, INBOX_CHANNEL, WATCH_CHANNEL
from .._store._postgres_writer import CONNECTION_ERRORS
from . import _claims, _restart
from ._claims import Claimed
from ._inbox import DELETE, READ_OWNED, as_message
from ._lease import LOST_CONNECTION, EngineLease
from ._watches import RunWatches, forget_gone

log = logging.getLogger("actorflow.cluster")

# Schedules were created, changed or deleted through the schedules API (not at ticks):
# every engine reads them again.
SCHEDULES_CHANNEL = "actorflow_schedules"
_CLAIM_BATCH = 5000
_CLAIM_AGAIN = 0.05  # after a round that took runs: more may wait
_ORPHANS_AGAIN = 0.2  # orphans were left (locked by a committing owner, or a claimer)
_INBOX_BATCH = 2000


class ClusterHost(Protocol):
    """What the node asks of the engine's directory of actors."""

    def adopt(self, runs: list[Claimed]) -> None:
        """Runs just claimed: rehydrate them, or park them until their timers."""

    def deliver(self, run_id: str, message: Any) -> None:
        """Put `message` in the mailbox of owned run `run_id`."""

    def drop(self, run_ids: Iterable[str], error: BaseException) -> None:
        """This engine no longer owns `run_ids`: stop their actors, writing nothing more."""

    async def changed(self, run_ids: set[str] | None) -> None:
        """Runs owned elsewhere that local readers follow changed (None: any of them)."""

    def room(self) -> int | None:
        """How many more runs this engine may own now (None: no limit)."""

    async def schedules_changed(self) -> None:
        """Schedules may have been created, changed or deleted by another engine."""


Connect = Callable[[], Coroutine[Any, Any, asyncpg.Connection]]


class ClusterNode:
    """This engine in the cluster (see the module docstring)."""

    def __init__(
        self, connect: Connect, lease_timeout: float, execute: bool, lock_space: int
    ) -> None:
        self._connect = connect
        self.execute = execute
        self.lease_timeout = lease_timeout
        self._lock_space = lock_space
        self.lease = EngineLease(connect, lease_timeout, execute, self._lease_lost, lock_space)
        self.owned: dict[str, int] = {}  # run id -> the epoch it is owned at
        self._creating: set[str] = set()  # owned from a creation not yet committed
        self._host: ClusterHost | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wanted = asyncio.Event()
        self._want_claim = True
        self._want_orphans = True
        self._want_inbox = True
        self._want_schedules = False  # the scheduler reads them all as it opens
        self._rejoin = False
        self._changed: set[str] | None = set()
        self._inflight: set[int] = set()  # inbox rows handed to actors, not yet deleted
        # Rows a commit deleted, still in `_inflight` until a read that began after that
        # commit: a read whose snapshot predates the delete still returns them.
        self._deleted: set[int] = set()
        self.watches = RunWatches(self._execute, self.owns, lambda: self.engine_id)
        self._lock = asyncio.Lock()  # the node's connection: one statement at a time
        self._again_handle: asyncio.TimerHandle | None = None
        # Counters since open: runs claimed, leases lost, runs whose commit the fence
        # refused, batches that sent a NOTIFY (queued runs, inbox rows).
        self.stats = {"claimed": 0, "lost_leases": 0, "refused": 0, "notifying_commits": 0}

    @property
    def engine_id(self) -> str:
        return self.lease.engine_id

    # -- life ------------------------------------------------------------------------------

    async def open(self, host: ClusterHost) -> None:
        """Register, listen, and claim what is there to claim (before returning)."""
        self._host = host
        await self.lease.register()
        await self._listen()
        self.lease.on_dead_seen = self._dead_seen
        self.lease.start()
        await self._work_once()
        self._task = asyncio.create_task(self._run(), name="actorflow-cluster")

    async def close(self) -> None:
        """Hand this engine's runs over (`leave`) and stop the node's work (the engine's
        actors are stopped, its store closed: nothing of theirs is pending)."""
        try:
            await self.leave()
        finally:
            await self._stop()

    async def _stop(self) -> None:
        if self._again_handle is not None:
            self._again_handle.cancel()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.lease.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def leave(self) -> None:
        """Give this engine's unfinished runs back to the queue, and leave (after the
        store's last commit: nothing of them is pending). With the database away, its
        runs are claimed once its lease lapses instead (logged)."""
        await cancel_and_wait(self._task)
        self._task = None
        await self.lease.stop()
        try:
            await self.lease.release(list(UNFINISHED))
        except (*LOST_CONNECTION, asyncpg.PostgresError) as exc:
            log.warning(
                "engine %s could not hand its runs over at close (%r); the others claim "
                "them once its lease lapses",
                self.engine_id,
                exc,
            )

    async def _listen(self) -> None:
        conn = self._conn = await self._connect()
        for channel in (CLAIM_CHANNEL, INBOX_CHANNEL, WATCH_CHANNEL, SCHEDULES_CHANNEL):
            await conn.add_listener(channel, self._notified)

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if channel == CLAIM_CHANNEL:
            self._want_claim = True
        elif channel == INBOX_CHANNEL:
            self._want_inbox = True
        elif channel == SCHEDULES_CHANNEL:
            self._want_schedules = True
        elif self._changed is not None:
            if payload == "*":
                self._changed = None
            else:
                self._changed.update(str(payload).split(" "))
        self._wanted.set()

    def _dead_seen(self) -> None:
        self._want_orphans = True
        self._wanted.set()

    def _lease_lost(self) -> None:
        """The lease lapsed or could not be renewed in time: stop every actor now, then
        rejoin under a new id (and claim runs again, with new epochs)."""
        self.stats["lost_leases"] += 1
        lost = list(self.owned)
        self.owned.clear()
        self._creating.clear()
        self._inflight.clear()
        assert self._host is not None
        self._host.drop(lost, StoreWriteError("this engine lost its lease; the run moved"))
        self._rejoin = True
        self._wanted.set()

    # -- what the engine asks ---------------------------------------------------------------

    def owns(self, run_id: str) -> bool:
        return run_id in self.owned

    def created(self, run_id: str) -> None:
        """This engine creates run `run_id` (owned from its creation, at epoch 1, unless its
        id turns out taken by a run of another engine)."""
        if run_id not in self.owned:
            self.owned[run_id] = 1
            self._creating.add(run_id)

    def finished(self, run_id: str) -> None:
        """The run's final status is committed: it needs no owner any more."""
        if self.owned.pop(run_id, None) is not None and self._host is not None:
            room = self._host.room()
            if room is not None:  # capacity freed: there may be queued runs to take
                self._want_claim = True
                self._wanted.set()

    def fence(self, batch: WriteBatch) -> tuple[str | None, list[str], list[int]]:
        """The writer's fence for `batch`: this engine's id (None for a client), and each
        run it writes with the epoch this engine owns it at (0 if it does not)."""
        # Runs this batch creates are not fenced: their rows are inserted by it, owned
        # by the writer (or queued).
        ids = list(batch.run_ids().difference([row.id for row, _ in batch.new_runs]))
        owned = self.owned
        return (self.engine_id if self.execute else None), ids, [owned.get(i, 0) for i in ids]

    def committed(self, batch: WriteBatch) -> set[str]:
        """After a commit: forget the inbox rows it deleted, the runs it refused and the
        runs it was to create whose ids were taken; returns those runs (the engine drops
        their actors)."""
        self._deleted.update(inbox_id for inbox_id, _ in batch.inbox_taken)
        if batch.queued or batch.inbox:
            self.stats["notifying_commits"] += 1
        refused = batch.refused
        self.stats["refused"] += len(refused)
        lost = set(refused)
        if self._creating:
            self._creating.difference_update(refused)  # a tick's run the schedule refused
            for row, _ in batch.new_runs:
                if row.id in self._creating:
                    self._creating.discard(row.id)
                    if row.id in batch.conflicts:  # an existing run has the id: not ours
                        lost.add(row.id)
        for run_id in lost:
            self.owned.pop(run_id, None)
        if lost and self.watches.moved(lost):
            self._wanted.set()
        return lost

    async def take_finished(self, run_id: str) -> int | None:
        """Own a finished run (to restart it); its new epoch, or None if it is not final.
        Raises `RunNotFoundError` if it was purged, `InvalidStateError` if a purge is
        deleting it (`runs.purging`: the update waits for a purge's batch holding the row
        and checks the row it left)."""
        epoch = await self._fetchval(
            "UPDATE runs SET owner = $1, epoch = epoch + 1 WHERE id = $2"
            " AND status = ANY($3::text[]) AND NOT purging RETURNING epoch",
            self.engine_id,
            run_id,
            list(FINAL),
        )
        if epoch is None:
            await self.check_not_purged(run_id)
            return None
        self.owned[run_id] = int(epoch)
        return int(epoch)

    async def check_not_purged(self, run_id: str) -> None:
        """Raise `RunNotFoundError` if run `run_id` was purged, `InvalidStateError` if a
        purge is deleting it (both last: a purge's mark stays until the row goes)."""
        purging = await self._fetchval("SELECT purging FROM runs WHERE id = $1", run_id)
        _restart.check_not_purged(run_id, purging)

    async def restart_finished(self, run_id: str, generation: int, entries: list[EventRow]) -> bool:
        """Record the restart `entries` of a finished run (see `_restart`) and queue it for
        the executing engines; False if it is no longer final at `generation`. Raises
        `StoreWriteError` if the database cannot be reached."""
        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._reconnect()
                assert self._conn is not None
                return await _restart.record_restart(self._conn, run_id, generation, entries)
            except CONNECTION_ERRORS as exc:
                # In doubt: the commit may have reached the server. Ask, on a new connection.
                try:
                    await self._reconnect()
                    assert self._conn is not None
                    if await _restart.restart_recorded(self._conn, entries):
                        return True
                    return await _restart.record_restart(self._conn, run_id, generation, entries)
                except CONNECTION_ERRORS as again:
                    raise StoreWriteError(
                        f"the restart of run {run_id!r} may not be recorded: {again!r}"
                    ) from exc

    async def announce_schedules(self) -> None:
        """Schedules were created, changed or deleted here (committed): wake every engine
        to read them (one lost is caught by their sweep)."""
        try:
            await self._execute("SELECT pg_notify($1, '')", SCHEDULES_CHANNEL)
        except (asyncpg.PostgresError, *CONNECTION_ERRORS) as exc:
            log.warning(
                "engine %s could not announce a schedule change (%r); the others see it at "
                "their next sweep",
                self.engine_id,
                exc,
            )

    async def hook_owner(self, token: str) -> str | None:
        """The run holding hook `token`, wherever it lives."""
        found = await self._fetchval("SELECT run_id FROM hooks WHERE token = $1", token)
        return None if found is None else str(found)

    async def _execute(self, sql: str, *args: Any) -> None:
        await self._fetchval(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        """`sql` on the node's connection; once more on a new one if it was lost (a server
        restart): the statements here are idempotent."""
        async with self._lock:
            for last_try in (False, True):
                try:
                    if self._conn is None or self._conn.is_closed():
                        await self._reconnect()
                    assert self._conn is not None
                    return await self._conn.fetchval(sql, *args)
                except CONNECTION_ERRORS:
                    if last_try:
                        raise
                    self._want_all()
                    await self._reconnect()

    # -- the work loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        sweep = self.lease_timeout * 2
        while True:
            try:
                async with asyncio.timeout(sweep):
                    await self._wanted.wait()
            except TimeoutError:
                self._want_claim = self._want_inbox = self._want_schedules = True
            self._wanted.clear()
            try:
                if self._conn is None or self._conn.is_closed():
                    async with self._lock:
                        await self._reconnect()
                await self._work_once()
            except (asyncpg.PostgresError, *CONNECTION_ERRORS, *LOST_CONNECTION) as exc:
                # The database is away (or refused a statement): try again shortly, on a
                # new connection, with every kind of work wanted (wake-ups may be lost).
                log.warning("engine %s: cluster work failed (%r); retrying", self.engine_id, exc)
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.terminate()
                self._want_all()
                await asyncio.sleep(min(1.0, self.lease_timeout / 5))

    def _want_all(self) -> None:
        """Wake-ups may have been lost with a connection: do every kind of work."""
        self._want_claim = self._want_inbox = self._want_orphans = self._want_schedules = True
        self._wanted.set()

    async def _reconnect(self) -> None:
        """A new connection for the node, listening (under `_lock`)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        await self._listen()

    async def _work_once(self) -> None:
        if self._rejoin:
            await self.lease.stop()
            await self.lease.register()
            self.lease.start()
            self._rejoin = False
            self.watches.rejoined()
            self._want_claim = self._want_orphans = self._want_inbox = True
        if self.execute and (self._want_claim or self._want_orphans):
            await self._claim()
        if self._want_inbox:
            self._want_inbox = False
            await self._read_inbox()
        moved = await self.watches.register_moved()
        if moved and self._changed is not None:
            self._changed.update(moved)  # what their new owners committed meanwhile
        changed, self._changed = self._changed, set()
        assert self._host is not None
        if changed is None or changed:
            await self._host.changed(changed)
        if self._want_schedules:
            self._want_schedules = False
            await self._host.schedules_changed()

    async def _claim(self) -> None:
        """One round of claims (see `_claims`); another follows shortly after one that
        took something, or that found orphans it could not take yet."""
        host = self._host
        assert host is not None
        orphans, queued = self._want_orphans, self._want_claim
        self._want_orphans = self._want_claim = False
        room = host.room()
        limit = _CLAIM_BATCH if room is None else min(room, _CLAIM_BATCH)
        if limit <= 0:
            return
        async with self._lock:
            conn = self._conn
            assert conn is not None
            claimed: list[Claimed] = []
            if orphans:
                await _claims.expire_unlocked(conn, self._lock_space, self.engine_id)
                claimed = await _claims.claim_orphans(conn, self.engine_id, limit)
            if queued and len(claimed) < limit:
                claimed += await _claims.claim_queued(conn, self.engine_id, limit - len(claimed))
            if claimed:
                self.stats["claimed"] += len(claimed)
                for run in claimed:
                    self.owned[run.id] = run.epoch
                host.adopt(claimed)
                found = await _claims.finished_children(conn, [run.id for run in claimed])
                for child_id, parent_id, status, result, error in found:
                    host.deliver(parent_id, ChildDone(child_id, status, result, error))
                self._want_inbox = True
                # A full round: more are surely there (this engine's share was larger).
                self._again(orphans, queued, 0.0 if len(claimed) == limit else _CLAIM_AGAIN)
            elif orphans:
                if await _claims.orphans_left(conn):
                    # Runs a lapsed owner is committing to, or another claimer holds.
                    self._again(True, False, _ORPHANS_AGAIN)
                else:
                    await _claims.forget_dead(conn)
                    await forget_gone(conn)

    def _again(self, orphans: bool, queued: bool, delay: float) -> None:
        def wake() -> None:
            self._want_orphans |= orphans
            self._want_claim |= queued
            self._wanted.set()

        if self._again_handle is not None:
            self._again_handle.cancel()
        self._again_handle = asyncio.get_running_loop().call_later(delay, wake)

    async def _read_inbox(self) -> None:
        host = self._host
        assert host is not None
        async with self._lock:
            conn = self._conn
            assert conn is not None
            deleted_before, self._deleted = self._deleted, set()
            rows = await conn.fetch(READ_OWNED, self.engine_id, _INBOX_BATCH)
            self._inflight.difference_update(deleted_before)
            stale: list[int] = []
            wanted: list[tuple[int, str, str, str | None, bytes | None]] = []
            for inbox_id, run_id, kind, key, data, status in rows:
                if inbox_id in self._inflight:
                    continue
                if status in FINAL:
                    stale.append(inbox_id)
                elif run_id in self.owned:
                    wanted.append((inbox_id, run_id, kind, key, data))
            children = [key for _, _, kind, key, _ in wanted if kind == "child_done"]
            outcomes: dict[str, tuple[str, bytes | None, bytes | None]] = {}
            if children:
                for child_id, status, result, error in await conn.fetch(
                    "SELECT id, status, result, error FROM runs WHERE id = ANY($1::text[])",
                    children,
                ):
                    if status in FINAL:
                        outcomes[child_id] = (status, result, error)
            if stale:
                await conn.execute(DELETE, stale)
        for inbox_id, run_id, kind, key, data in wanted:
            message = as_message(kind, key, data, (inbox_id, run_id), outcomes.get(key or ""))
            if message is None:
                continue
            self._inflight.add(inbox_id)
            host.deliver(run_id, message)
        if len(rows) == _INBOX_BATCH:
            self._want_inbox = True
            self._wanted.set()
