"""Deleting finished runs (retention and `Engine.purge`), a small batch at a time.

A purge is a series of short transactions, each deleting at most `ROWS_PER_BATCH`
event rows and as many chunk rows, so that the group-commit writer, which shares
SQLite's single write lock, waits at most a few milliseconds for one of them. A run's
row goes last, in the transaction that deletes its last event or chunk: a run id
is never free while rows of it remain (a new run of that id would collide with
them), and a half-deleted run still shows as the run being purged.

Runs still referenced are kept: a finished child of an unfinished parent (the
parent may still need its outcome, see `finished_children_of_unfinished_parents`),
and a finished parent of an unfinished child (the child reports to it).

Deleting frees pages inside the SQLite file, which later writes reuse; the file
does not shrink (run `VACUUM` on it while no engine has it open to shrink it).
"""

from __future__ import annotations

import sqlite3

from .._models import UNFINISHED
from ._base import PurgeFilter

ROWS_PER_BATCH = 2000
RUNS_PER_BATCH = 200

_UNFINISHED = ",".join(f"'{s}'" for s in UNFINISHED)


def purge_batch(conn: sqlite3.Connection, which: PurgeFilter) -> tuple[int, int]:
    """One transaction of a purge: (runs deleted, rows deleted); (0, 0) once done."""
    where = [
        f"r.status IN ({','.join('?' * len(which.statuses))})",
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
    select = f"SELECT r.id FROM runs r WHERE {' AND '.join(where)}"
    # Chosen before the write transaction, which holds SQLite's one write lock (and so
    # keeps commits waiting) only for the deletes; they check the choice again.
    found = [run_id for (run_id,) in conn.execute(f"{select} LIMIT {RUNS_PER_BATCH}", params)]
    if not found:
        return 0, 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        marks = ",".join("?" * len(found))
        ids = [
            run_id
            for (run_id,) in conn.execute(f"{select} AND r.id IN ({marks})", [*params, *found])
        ]
        if not ids:
            conn.execute("COMMIT")
            return 0, 1  # all changed meanwhile (restarted, say): look again
        marks = ",".join("?" * len(ids))
        rows = 0
        for table, key in (("events", "idx"), ("chunks", "namespace, idx")):
            (count,) = conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id IN ({marks})", ids
            ).fetchone()
            if count <= ROWS_PER_BATCH:  # the usual case: small runs, deleted whole
                rows += conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", ids).rowcount
            else:
                rows += conn.execute(
                    f"DELETE FROM {table} WHERE (run_id, {key}) IN (SELECT run_id, {key} "
                    f"FROM {table} WHERE run_id IN ({marks}) LIMIT {ROWS_PER_BATCH})",
                    ids,
                ).rowcount
        emptied = f"""id IN ({marks})
            AND NOT EXISTS (SELECT 1 FROM events e WHERE e.run_id = runs.id)
            AND NOT EXISTS (SELECT 1 FROM chunks k WHERE k.run_id = runs.id)"""
        conn.execute(
            f"DELETE FROM hooks WHERE run_id IN (SELECT id FROM runs WHERE {emptied})", ids
        )
        runs = conn.execute(f"DELETE FROM runs WHERE {emptied}", ids).rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return runs, rows + runs
