"""Restarting a finished run from an engine that will not run it (a client).

A finished run has no owner to send the restart to, and a client executes nothing.
So the client records the restart itself, as an engine would (`_actor/_control.py`:
a new generation, its `run_restarted` entry and the entries it inherits), in one
transaction that also gives the run up (no owner, the epoch raised) and wakes the
claimers: an executing engine claims it as any queued run and rehydrates it from
that log, as after a crash just past the restart's commit. The run's row is locked
and must still be final at the generation the record was made from: a restart
committed meanwhile by another engine wins (the caller then routes this one to it).
A run a purge has begun to delete (`runs.purging`, see `_store/_postgres_purge.py`)
or deleted is not restarted: its log is no longer whole.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import _log as L
from .._errors import InvalidStateError, RunNotFoundError
from .._models import FINAL, RunStatus
from .._store import EventRow
from .._store._postgres_cluster_schema import CLAIM_CHANNEL

if TYPE_CHECKING:
    import asyncpg

_LOCK = "SELECT status, generation, purging FROM runs WHERE id = $1 FOR UPDATE"
_INSERT_EVENTS = """
INSERT INTO events (run_id, idx, generation, kind, seq, name, data, at)
SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::int[], $6::text[],
    $7::bytea[], $8::float8[])
"""
_GIVE_UP = """
UPDATE runs SET status = $2, generation = $3, result = NULL, error = NULL, started_at = $4,
    completed_at = NULL, wake_at = NULL, owner = NULL, epoch = epoch + 1
WHERE id = $1
"""


def check_not_purged(run_id: str, purging: bool | None) -> None:
    """Raise if the `purging` column of run `run_id`'s row (None: no row) says a purge
    deleted the run (`RunNotFoundError`) or is deleting it (`InvalidStateError`)."""
    if purging is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    if purging:
        raise InvalidStateError(f"cannot restart run {run_id!r}: it is being purged")


def restart_entries(
    run_id: str, log: list[EventRow], generation: int, from_step: str | None
) -> list[EventRow]:
    """The log entries restarting a run whose log is `log`, at `generation`, writes
    (numbered on from its last). Raises `InvalidStateError` if it has no step named
    `from_step` (as its actor would)."""
    current = [e for e in log if e.generation == generation]
    record = L.restart_record(current, generation, from_step)
    if record is None:
        raise InvalidStateError(f"run {run_id!r} has no step named {from_step!r} to restart from")
    _, restarted, kept = record
    idx = log[-1].idx + 1 if log else 0
    now = time.time()
    entries = [EventRow(run_id, idx, generation + 1, L.RUN_RESTARTED, None, from_step,
                        restarted, now)]  # fmt: skip
    for offset, e in enumerate(kept, start=1):
        entries.append(EventRow(run_id, idx + offset, generation + 1, e.kind, e.seq, e.name,
                                e.data, e.at))  # fmt: skip
    return entries


async def record_restart(
    conn: asyncpg.Connection, run_id: str, generation: int, entries: list[EventRow]
) -> bool:
    """Commit the restart `entries` of run `run_id` (final, at `generation`) and queue it
    for the executing engines; False (nothing written) if the run is no longer final at
    that generation. Raises `RunNotFoundError` if it was purged, `InvalidStateError` if a
    purge is deleting it."""
    async with conn.transaction():
        found = await conn.fetchrow(_LOCK, run_id)
        check_not_purged(run_id, None if found is None else found["purging"])
        if found is None or found["status"] not in FINAL or found["generation"] != generation:
            return False
        await conn.execute(_INSERT_EVENTS, *[list(c) for c in zip(*entries, strict=True)])
        await conn.execute(_GIVE_UP, run_id, RunStatus.RUNNING.value, generation + 1, entries[0].at)
        await conn.execute("SELECT pg_notify($1, '')", CLAIM_CHANNEL)
    return True


async def restart_recorded(conn: asyncpg.Connection, entries: list[EventRow]) -> bool:
    """Whether `record_restart(..., entries)` committed (asked after its connection was
    lost mid-commit): its `run_restarted` entry is there, with its time."""
    first = entries[0]
    found = await conn.fetchval(
        "SELECT 1 FROM events WHERE run_id = $1 AND idx = $2 AND kind = $3 AND at = $4",
        first.run_id,
        first.idx,
        first.kind,
        first.at,
    )
    return found is not None
