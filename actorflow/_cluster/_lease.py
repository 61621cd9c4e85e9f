"""EngineLease: this engine's row in `engines`, renewed from the database's clock.

One row per engine, one `UPDATE` per heartbeat, however many runs the engine
owns; and a session advisory lock on the lease's connection, which the server drops
when the process dies, so that the others expire the lease at once (`_claims`).
Losing that connection loses the lease. The lease lasts `lease_timeout` seconds
after the database's `now()` at the last renewal; renewing refuses a lapsed lease
(another engine may have taken the runs), so a lapsed engine takes a fresh id and
starts over.

An engine that cannot renew stops its own actors before anyone may take its runs:
the renewal was sent at local time t, so the database stamped it at t or later,
and nobody may take the runs before t + lease_timeout by that clock. At
t + lease_timeout - `margin` (local, monotonic) without a newer renewal, the lease
counts as lost here. (A process paused past that, SIGSTOP or a long GC, finds it
lost on waking; its commits meanwhile are refused by the fence in `commit_batch`.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from .._dying import cancel_and_wait
from .._store._postgres_cluster_schema import CLAIM_CHANNEL
from ._claims import EXPIRE_UNLOCKED

# What a lost connection raises. The server's end of one may reach asyncpg mid-statement:
# the connection is then neither closed nor usable, and the next statement raises an
# internal error ("another operation is in progress"), to be taken as a lost connection.
LOST_CONNECTION = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)

log = logging.getLogger("actorflow.cluster")

_REGISTER = "INSERT INTO engines (id, execute, lease_timeout, lock_key) VALUES ($1, $2, $3, $4)"
_ALIVE = "heartbeat_at + lease_timeout * interval '1 second' > now()"
# Renews, and says in how many seconds the next lease of another engine lapses
# (negative: one has, its runs are to be claimed): the heartbeat doubles as the check,
# at no extra round trip, and a lease about to lapse is checked again the moment it does.
_RENEW = (
    f"WITH expired AS ({EXPIRE_UNLOCKED}) "
    f"UPDATE engines SET heartbeat_at = now() WHERE id = $2 AND {_ALIVE} RETURNING"
    " (SELECT extract(epoch FROM min(heartbeat_at + lease_timeout * interval '1 second')"
    " - now()) FROM engines WHERE id <> $2), (SELECT count(*) FROM expired)"
)
# A lapse this long after its due time is surely seen by the database's clock.
_LAPSE_SLACK = 0.02


def new_engine_id() -> str:
    """A fresh engine id (never reused: a restarted process is a new engine)."""
    return uuid.uuid4().hex


class LeaseClock:
    """When the lease, renewed at local monotonic times, must count as lost here."""

    def __init__(self, lease_timeout: float, margin: float) -> None:
        self.lease_timeout = lease_timeout
        self.margin = margin
        self.deadline = -1.0

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at `sent_at` (time.monotonic()) succeeded."""
        self.deadline = max(self.deadline, sent_at + self.lease_timeout - self.margin)

    def remaining(self, now: float | None = None) -> float:
        """Seconds until the lease counts as lost (negative: it does)."""
        return self.deadline - (time.monotonic() if now is None else now)


class EngineLease:
    """Registers the engine, then renews its lease every `lease_timeout / 10` seconds on a
    connection of its own, and calls `on_lost()` when it cannot (see the module docstring).
    After `on_lost`, `register()` again gives the engine a new id."""

    def __init__(
        self,
        connect: Callable[[], Coroutine[Any, Any, asyncpg.Connection]],
        lease_timeout: float,
        execute: bool,
        on_lost: Callable[[], None],
        lock_space: int,
    ) -> None:
        self._connect = connect
        self._lock_space = lock_space
        self.lease_timeout = lease_timeout
        self.interval = lease_timeout / 10
        self._execute = execute
        self._on_lost = on_lost
        self.clock = LeaseClock(lease_timeout, margin=min(1.0, lease_timeout / 5))
        self.engine_id = ""
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0
        # Called when a renewal sees a dead engine, or when one it saw about to lapse has.
        self.on_dead_seen: Callable[[], None] = lambda: None
        self._lapse_check: asyncio.TimerHandle | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
        return self._conn

    async def register(self) -> str:
        """Take a fresh id and hold a lease under it; returns the id. Raises what asyncpg
        raises when the database is unreachable."""
        engine_id = new_engine_id()
        lock_key = random.randrange(1, 2**31)
        conn = await self._connection()
        sent = time.monotonic()
        # The lock before the row: no engine may see the row without the lock held.
        await conn.execute("SELECT pg_advisory_unlock_all()")
        await conn.execute("SELECT pg_advisory_lock($1, $2)", self._lock_space, lock_key)
        await conn.execute(_REGISTER, engine_id, self._execute, self.lease_timeout, lock_key)
        self.clock = LeaseClock(self.lease_timeout, self.clock.margin)
        self.clock.renewed(sent)
        self.engine_id = engine_id
        return engine_id

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="actorflow-lease")

    async def stop(self) -> None:
        if self._lapse_check is not None:
            self._lapse_check.cancel()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def release(self, queued: list[str]) -> None:
        """Leave the cluster at close: this engine's unfinished runs go back to the queue
        (any engine may claim them at once, woken by NOTIFY), and its row is deleted."""
        try:
            conn = await self._connection()
            async with conn.transaction():
                await conn.execute(
                    "UPDATE runs SET owner = NULL WHERE owner = $1 AND status = ANY($2::text[])",
                    self.engine_id,
                    queued,
                )
                await conn.execute("DELETE FROM engines WHERE id = $1", self.engine_id)
                await conn.execute(f"NOTIFY {CLAIM_CHANNEL}")
        finally:
            await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not await self.renew():
                self._on_lost()
                return

    async def renew(self) -> bool:
        """Renew once; False when the lease is lost (lapsed, or not renewed in time)."""
        if self.clock.remaining() <= 0:
            return False
        sent = time.monotonic()
        try:
            conn = await self._connection()
            async with asyncio.timeout(max(0.0, self.clock.remaining())):
                found = await conn.fetchrow(_RENEW, self._lock_space, self.engine_id)
        except TimeoutError:
            log.error("engine %s could not renew its lease in time", self.engine_id)
            return False
        except (*LOST_CONNECTION, asyncpg.PostgresError) as exc:
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            if isinstance(exc, asyncpg.PostgresError) and not isinstance(
                exc, asyncpg.PostgresConnectionError
            ):
                log.warning("engine %s: lease renewal failed (%r)", self.engine_id, exc)
                return self.clock.remaining() > 0
            # The connection holding the lock is gone: the others expire the lease now.
            log.error("engine %s lost its lease's connection (%r)", self.engine_id, exc)
            return False
        if found is None:
            log.error("engine %s: its lease lapsed; its runs may be taken", self.engine_id)
            return False
        self.clock.renewed(sent)
        self.renewals += 1
        next_lapse, expired = found
        if expired:
            self.on_dead_seen()
        elif next_lapse is not None:
            if next_lapse <= 0:
                self.on_dead_seen()
            elif next_lapse < self.interval:
                self._lapse_check = asyncio.get_running_loop().call_later(
                    float(next_lapse) + _LAPSE_SLACK, self.on_dead_seen
                )
        return True
