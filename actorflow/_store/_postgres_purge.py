"""Deleting finished runs on PostgreSQL (retention and `Engine.purge`), a small batch at a
time, with the same rules as on SQLite (see `_purge`: which runs are kept, how many rows
one transaction deletes, a run's row last).

Each batch is one transaction on a reader connection, not the writer's: under MVCC a
delete takes no lock a commit needs but the rows it deletes, and the chosen runs are
finished ones the engine no longer writes. They are chosen and locked (`FOR UPDATE`) in
the same transaction, so a run that changed meanwhile (restarted, say) is either
waited for and checked again by PostgreSQL, or kept.

A large run is deleted over several transactions, and engines other than the one
purging it may restart it meanwhile (`RunsBeingPurged` is one engine's): restarted
after a partial delete, the run would continue a partial log. So the batch that leaves
a run deleted in part marks its row (`runs.purging`, schema version 6) and raises its
epoch, under the row lock it holds. A restart locks the row and refuses a marked one
(`_cluster/_restart.py`, `ClusterNode.take_finished`); a restart under way on an owner
that took the run before the mark has its commit refused by the fence (the epoch is no
longer the one it owns the run at). The mark stays until the run's row goes, whichever
engine's purge finishes it (a purge that stopped half-way is finished by the next one).
"""

from __future__ import annotations

from typing import Any

from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from .._models import UNFINISHED
from ._purge import ROWS_PER_BATCH, RUNS_PER_BATCH
from ._purge_filter import PurgeClaim, PurgedBatch, PurgeFilter

V6 = "ALTER TABLE runs ADD COLUMN purging BOOLEAN NOT NULL DEFAULT false;"


def _selection(which: PurgeFilter) -> tuple[str, list[Any]]:
    """`SELECT r.id FROM runs r WHERE ...` for the runs `which` selects, and its params."""
    params: list[Any] = [list(which.statuses), which.before, list(UNFINISHED)]
    where = [
        "r.status = ANY($1::text[])",
        "r.completed_at < $2",
        "NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_id = r.id AND c.status = ANY($3::text[]))",
        "(r.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id"
        " AND p.status = ANY($3::text[])))",
    ]
    if which.workflows is not None:
        params.append(list(which.workflows))
        where.append(f"r.workflow = ANY(${len(params)}::text[])")
    if which.exclude:
        params.append(list(which.exclude))
        where.append(f"NOT r.workflow = ANY(${len(params)}::text[])")
    if which.skip:
        params.append(list(which.skip))
        where.append(f"NOT r.id = ANY(${len(params)}::text[])")
    return f"SELECT r.id FROM runs r WHERE {' AND '.join(where)}", params


def _count(status: str) -> int:
    """The row count of a command status such as `DELETE 12`."""
    return int(status.rsplit(" ", 1)[-1])


async def purge_batch(
    conn: PoolConnectionProxy[Record], which: PurgeFilter, claim: PurgeClaim
) -> PurgedBatch:
    """One transaction: delete the rows of up to `RUNS_PER_BATCH` runs `which` selects and
    `claim` lets go (at most `ROWS_PER_BATCH` events and as many chunks), and the runs left
    with none; no rows once none is left."""
    select, params = _selection(which)
    async with conn.transaction():
        chosen = [
            row[0]
            for row in await conn.fetch(f"{select} LIMIT {RUNS_PER_BATCH} FOR UPDATE OF r", *params)
        ]
        if not chosen:
            return PurgedBatch(0, 0, [])
        ids = claim(chosen)
        if not ids:
            return PurgedBatch(0, 1, [])  # all left alone: look again, without them
        rows = 0
        for table, key in (("events", "idx"), ("chunks", "namespace, idx")):
            rows += _count(
                await conn.execute(
                    f"DELETE FROM {table} WHERE (run_id, {key}) IN (SELECT run_id, {key}"
                    f" FROM {table} WHERE run_id = ANY($1::text[]) LIMIT {ROWS_PER_BATCH})",
                    ids,
                )
            )
        emptied = """id = ANY($1::text[])
            AND NOT EXISTS (SELECT 1 FROM events e WHERE e.run_id = runs.id)
            AND NOT EXISTS (SELECT 1 FROM chunks k WHERE k.run_id = runs.id)"""
        await conn.execute(
            f"DELETE FROM hooks WHERE run_id IN (SELECT id FROM runs WHERE {emptied})", ids
        )
        runs = _count(await conn.execute(f"DELETE FROM runs WHERE {emptied}", ids))
        partial = [
            r[0]
            for r in await conn.fetch(
                "UPDATE runs SET purging = true, epoch = epoch + CASE WHEN purging THEN 0 ELSE 1"
                " END WHERE id = ANY($1::text[]) RETURNING id",
                ids,
            )
        ]
    return PurgedBatch(runs, rows + runs, partial)
