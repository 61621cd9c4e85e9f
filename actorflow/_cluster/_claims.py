"""Claiming runs: those of dead engines, and queued ones (no owner), for an engine with room.

A claim is one `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)`: engines
claiming at once take disjoint runs, without waiting for each other, and a run a
lapsed owner is committing to (its commit holds the row `FOR SHARE`) is skipped
and taken on the next round. Each claim raises the run's epoch, which fences the
previous owner's commits. Dead engines' runs are spread: each live engine takes
its share (the orphans divided by the live executing engines) per round, and so do
queued runs; a round that took some is followed by another shortly after, so what a
slower engine leaves is taken too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .._models import FINAL, UNFINISHED

if TYPE_CHECKING:
    import asyncpg

_ALIVE = "heartbeat_at + lease_timeout * interval '1 second' > now()"
_DEAD = f"SELECT id FROM engines WHERE NOT ({_ALIVE})"

# An engine whose advisory lock no session holds has lost its lease connection (its
# process died, or the network dropped it): its lease is expired at once, instead of
# lapsing `lease_timeout` after its last heartbeat. (Fencing keeps this safe for an
# engine that is in fact alive: its commits are refused, its next renewal fails.)
EXPIRE_UNLOCKED = f"""
UPDATE engines e SET heartbeat_at = 'epoch'
WHERE e.id <> $2 AND {
    _ALIVE.replace("heartbeat_at", "e.heartbeat_at").replace("lease_timeout", "e.lease_timeout")
}
AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = $1::int8::oid AND l.objid = e.lock_key::int8::oid AND l.objsubid = 2)
RETURNING e.id
"""

CLAIM_ORPHANS = f"""
WITH share AS (
    SELECT ceil(count(*)::float8 / greatest(1,
        (SELECT count(*) FROM engines WHERE execute AND {_ALIVE})))::int AS n
    FROM runs WHERE owner IN ({_DEAD}) AND status = ANY($2::text[])
), picked AS (
    SELECT id FROM runs WHERE owner IN ({_DEAD}) AND status = ANY($2::text[])
    ORDER BY created_at, id LIMIT least((SELECT n FROM share), $3)
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r SET owner = $1, epoch = r.epoch + 1 FROM picked WHERE r.id = picked.id
RETURNING r.id, r.status, r.wake_at, r.epoch
"""

CLAIM_QUEUED = f"""
WITH share AS (
    SELECT ceil(count(*)::float8 / greatest(1,
        (SELECT count(*) FROM engines WHERE execute AND {_ALIVE})))::int AS n
    FROM runs WHERE owner IS NULL AND status = ANY($2::text[])
), picked AS (
    SELECT id FROM runs WHERE owner IS NULL AND status = ANY($2::text[])
    ORDER BY created_at, id LIMIT least((SELECT n FROM share), $3) FOR UPDATE SKIP LOCKED
)
UPDATE runs r SET owner = $1, epoch = r.epoch + 1 FROM picked WHERE r.id = picked.id
RETURNING r.id, r.status, r.wake_at, r.epoch
"""

# Dead engines with nothing left to claim are forgotten.
FORGET_DEAD = f"""
DELETE FROM engines e WHERE NOT ({
    _ALIVE.replace("heartbeat_at", "e.heartbeat_at").replace("lease_timeout", "e.lease_timeout")
})
AND NOT EXISTS (SELECT 1 FROM runs WHERE owner = e.id AND status = ANY($1::text[]))
"""

ORPHANS_LEFT = f"SELECT count(*) FROM runs WHERE owner IN ({_DEAD}) AND status = ANY($1::text[])"

FINISHED_CHILDREN = """
SELECT id, parent_id, status, result, error FROM runs
WHERE parent_id = ANY($1::text[]) AND status = ANY($2::text[])
"""


class Claimed(NamedTuple):
    """A run just claimed: what placing it needs."""

    id: str
    status: str
    wake_at: float | None
    epoch: int


async def claim_orphans(conn: asyncpg.Connection, engine_id: str, limit: int) -> list[Claimed]:
    """Claim up to `limit` (and this engine's share) of the runs of dead engines."""
    rows = await conn.fetch(CLAIM_ORPHANS, engine_id, list(UNFINISHED), limit)
    return [Claimed(*row) for row in rows]


async def claim_queued(conn: asyncpg.Connection, engine_id: str, limit: int) -> list[Claimed]:
    """Claim up to `limit` (and this engine's share) of the runs waiting for an owner,
    oldest first."""
    rows = await conn.fetch(CLAIM_QUEUED, engine_id, list(UNFINISHED), limit)
    return [Claimed(*row) for row in rows]


async def orphans_left(conn: asyncpg.Connection) -> int:
    """How many unfinished runs dead engines still own (others may be claiming them)."""
    return int(await conn.fetchval(ORPHANS_LEFT, list(UNFINISHED)))


async def forget_dead(conn: asyncpg.Connection) -> None:
    await conn.execute(FORGET_DEAD, list(UNFINISHED))


async def finished_children(
    conn: asyncpg.Connection, parents: list[str]
) -> list[tuple[str, str, str, bytes | None, bytes | None]]:
    """(child, parent, status, result, error) of the final children of `parents`."""
    rows = await conn.fetch(FINISHED_CHILDREN, parents, list(FINAL))
    return [tuple(row) for row in rows]


async def expire_unlocked(conn: asyncpg.Connection, lock_space: int, engine_id: str) -> int:
    """Expire the leases of engines whose lease connection is gone; how many."""
    return len(await conn.fetch(EXPIRE_UNLOCKED, lock_space, engine_id))
