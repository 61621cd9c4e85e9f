"""Deleting finished runs (retention and `Engine.purge`), a small batch at a time.

A purge is a series of short transactions, each deleting at most `ROWS_PER_BATCH`
event rows and as many chunk rows. They run on the group-commit writer's own
connection, between two of its commits (`GroupCommitWriter.exclusive`), so they
never contend for SQLite's write lock: commits wait for at most one such
transaction, and the loop not at all (a writer waiting on a lock held elsewhere
would sleep in SQLite's busy handler, on the loop thread for small batches:
measured, start -> result p99 of 241 ms during a purge of 1,000,000 events that
way). The runs to delete are chosen before, on a connection of the purge's own
(a read, which WAL lets run beside the writer), and checked again in the
transaction. A run's row goes last, in the transaction that deletes its last event
or chunk: a run id is never free while rows of it remain (a new run of that id
would collide with them), and a half-deleted run still shows as the run being
purged.

Runs the engine leaves alone are skipped (`PurgeFilter.skip`, `RunsBeingPurged`:
runs being restarted).

Runs still referenced are kept: a finished child of an unfinished parent (the
parent may still need its outcome, see `finished_children_of_unfinished_parents`),
and a finished parent of an unfinished child (the child reports to it).

Deleting frees pages inside the SQLite file, which later writes reuse; the file
does not shrink (run `VACUUM` on it while no engine has it open to shrink it).
"""

from __future__ import annotations

import sqlite3

from .._models import UNFINISHED
from ._purge_filter import PurgedBatch, PurgeFilter

ROWS_PER_BATCH = 1000
RUNS_PER_BATCH = 100

_UNFINISHED = ",".join(f"'{s}'" for s in UNFINISHED)


def _selection(which: PurgeFilter, by_id: bool = False) -> tuple[str, list[object]]:
    """`SELECT r.id FROM runs r WHERE ...` for the runs `which` selects, and its params.

    `by_id`: for a check of a few ids, appended as `AND r.id IN (...)`; the status then
    uses no index (`+r.status`), or SQLite walks the whole status index to find them.
    """
    status = "+r.status" if by_id else "r.status"
    where = [
        f"{status} IN ({','.join('?' * len(which.statuses))})",
        "r.completed_at < ?",
        f"NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_id = r.id "
        f"AND c.status IN ({_UNFINISHED}))",
        f"(r.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id "
        f"AND p.status IN ({_UNFINISHED})))",
    ]
    params: list[object] = [*which.statuses, which.before]
    if which.workflows is not None:
        where.append(f"r.workflow IN ({','.join('?' * len(which.workflows))})")
        params += which.workflows
    if which.exclude:
        where.append(f"r.workflow NOT IN ({','.join('?' * len(which.exclude))})")
        params += which.exclude
    if which.skip:
        where.append(f"r.id NOT IN ({','.join('?' * len(which.skip))})")
        params += which.skip
    return f"SELECT r.id FROM runs r WHERE {' AND '.join(where)}", params


def choose(conn: sqlite3.Connection, which: PurgeFilter) -> list[str]:
    """Up to `RUNS_PER_BATCH` ids of runs to delete (a read: no write lock)."""
    select, params = _selection(which)
    return [run_id for (run_id,) in conn.execute(f"{select} LIMIT {RUNS_PER_BATCH}", params)]


def delete(conn: sqlite3.Connection, which: PurgeFilter, chosen: list[str]) -> PurgedBatch:
    """One transaction: delete the rows of the `chosen` runs that `which` still selects
    (at most `ROWS_PER_BATCH` events and as many chunks), and the runs left with none;
    no rows if none of them is to be deleted any more."""
    select, params = _selection(which, by_id=True)
    marks = ",".join("?" * len(chosen))
    conn.execute("BEGIN IMMEDIATE")
    try:
        ids = [r for (r,) in conn.execute(f"{select} AND r.id IN ({marks})", [*params, *chosen])]
        if not ids:
            conn.execute("COMMIT")
            return PurgedBatch(0, 0, [])
        marks = ",".join("?" * len(ids))
        rows = 0
        whole = True
        for table, key in (("events", "idx"), ("chunks", "namespace, idx")):
            (count,) = conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id IN ({marks})", ids
            ).fetchone()
            if count <= ROWS_PER_BATCH:  # the usual case: small runs, deleted whole
                sql = f"DELETE FROM {table} WHERE run_id IN ({marks})"
            else:
                whole = False
                sql = (
                    f"DELETE FROM {table} WHERE (run_id, {key}) IN (SELECT run_id, {key} "
                    f"FROM {table} WHERE run_id IN ({marks}) LIMIT {ROWS_PER_BATCH})"
                )
            rows += conn.execute(sql, ids).rowcount
        emptied = f"""id IN ({marks})
            AND NOT EXISTS (SELECT 1 FROM events e WHERE e.run_id = runs.id)
            AND NOT EXISTS (SELECT 1 FROM chunks k WHERE k.run_id = runs.id)"""
        conn.execute(
            f"DELETE FROM hooks WHERE run_id IN (SELECT id FROM runs WHERE {emptied})", ids
        )
        runs = conn.execute(f"DELETE FROM runs WHERE {emptied}", ids).rowcount
        partial = (
            []
            if whole
            else [r for (r,) in conn.execute(f"SELECT id FROM runs WHERE id IN ({marks})", ids)]
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return PurgedBatch(runs, rows + runs, partial)
