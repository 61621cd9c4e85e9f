"""A batch as one SQL statement made of the parts it has, fenced as `commit_batch` is.

Most batches write two or three kinds of rows (a step's events and its run's update,
say). One statement of those parts alone (data-modifying `WITH` queries, each taking
its rows as arrays of columns through `unnest`) sends and decodes only their arrays
and runs no PL/pgSQL. Each shape is one statement text, which asyncpg prepares once
per connection and PostgreSQL plans once.

The fence is the same as `commit_batch`'s (`_postgres_cluster_schema`), in the same
statement: the rows of the runs the batch writes are locked `FOR SHARE` (a locking
read sees the newest version of a row a takeover changed) and checked against the
writer's id and epochs; the writer's lease is checked on the database's clock. Every
part that writes rows of a run leaves out the refused runs; the statement returns the
same four arrays as `commit_batch`. Every filter on the refused runs reads them
through a scalar subquery (evaluated once, before the first row is written), so the
locks are all taken before any row of `runs` is updated.

Lookups go by key (`= ANY(array)`), which a generic plan keeps: a join with `unnest`
of a parameter is estimated at 100 rows, for which the planner scans a small table
whole (measured: 216 us per commit for `commit_batch`'s fence check on 1,100 runs).

The parts of one statement all see the database as it was before it, so two parts
that touch the same rows cannot share one (an update of a run the batch also creates),
and neither can a batch that takes hook tokens: the check that no other run holds one
must see what committed after the token's lock was taken (`_postgres_hook_locks`), and
a statement's one snapshot is older than any lock it takes. `needs_function` tells
those batches, which go through `commit_batch` (its statements run in order, each
seeing what committed before it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, NamedTuple

from .._models import FINAL, UNFINISHED
from ._postgres_cluster_schema import CLAIM_CHANNEL, INBOX_CHANNEL
from ._postgres_watch_marks import marked_runs_notice

Columns = list[Sequence[Any]]

_RUN = ("text", "text", "text", "int", "bytea", "bytea", "bytea", "bytea", "text",
        "float8", "float8", "float8", "float8", "float8", "bool")  # fmt: skip
_EVENT = ("text", "text", "int", "int", "text", "int", "text", "bytea", "float8")
_CHUNK = ("text", "text", "int", "int", "int", "int", "bytea", "float8")
_UPDATE = ("text", "int", "bytea", "bytea", "float8", "float8", "float8", "text")
_HOOK = ("text", "text", "int")
_SCHEDULE = ("text", "text", "text", "bytea", "text", "text", "text", "int", "int", "bytea",
             "float8", "float8", "float8", "bytea")  # fmt: skip
_INBOX = ("text", "text", "text", "bytea", "float8", "text")
_TAKEN = ("bigint", "text")
_FENCE = ("text", "bigint")
# Each part's column types, in the order of `Parts`' fields (the owner apart).
_TYPES = (_RUN, _EVENT, _CHUNK, _UPDATE, _HOOK, ("text",), ("text",), _SCHEDULE, _INBOX,
          _TAKEN, _FENCE)  # fmt: skip
_ALIVE = (
    "($1::text IS NOT NULL AND EXISTS (SELECT 1 FROM engines WHERE id = $1::text"
    " AND heartbeat_at + lease_timeout * interval '1 second' > now()))"
)


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class Parts(NamedTuple):
    """A batch's rows as arrays of columns, per part (an empty first column: no rows)."""

    runs: Columns  # insert params and whether queued
    events: Columns  # led by the id of the creation each belongs to (or None)
    chunks: Columns
    updates: Columns
    hooks: Columns
    hook_deletes: Columns
    schedule_deletes: Columns  # empty: schedules are written apart (for commit_batch's
    schedules: Columns  # arguments), in `_postgres_schedule_writes`
    inbox: Columns
    inbox_taken: Columns
    fence: Columns  # run ids and the epochs the writer owns them at
    owner: str | None

    def commit_batch_args(self) -> list[Any]:
        """`commit_batch`'s arguments (see `_postgres_cluster_schema`)."""
        return [*self.runs[:14], *self.events, *self.chunks, *self.updates, *self.hooks,
                *self.hook_deletes, *self.schedule_deletes, *self.schedules, self.owner,
                *self.fence, self.runs[14], *self.inbox, *self.inbox_taken]  # fmt: skip

    def empty(self) -> bool:
        return not any(part[0] for part in self[:11])

    def needs_function(self) -> bool:
        """Whether the batch takes hook tokens or two parts touch the same rows (see the
        module docstring)."""
        return bool(self.hooks[0]) or bool(
            self.runs[0] and not set(self.updates[-1]).isdisjoint(self.runs[0])
        )

    def statement(self) -> tuple[str, list[Any]]:
        """The statement of the parts that have rows, and its arguments (a batch that
        takes no hook tokens)."""
        parts = self[:11]
        args: list[Any] = [self.owner]
        for part in parts:
            if part[0]:
                args.extend(part)
        return _statement(tuple(bool(part[0]) for part in parts)), args


class _Builder:
    """Numbers the statement's parameters as parts are added ($1 is the owner)."""

    def __init__(self, shape: tuple[bool, ...]) -> None:
        self.arrays: list[list[str]] = []
        n = 1
        for types, present in zip(_TYPES, shape, strict=True):
            self.arrays.append([f"${n + i + 1}::{t}[]" for i, t in enumerate(types)])
            n += len(types) if present else 0


@cache
def _statement(shape: tuple[bool, ...]) -> str:
    runs, events, chunks, updates, hooks, hook_deletes, sd, sw, inbox, taken, fenced = shape
    a = _Builder(shape).arrays
    run_, event_, chunk_, update_, _hook, delete_, _sd, _sw, inbox_, taken_, fence_ = a
    ctes: list[str] = []
    notify: list[str] = []
    if fenced:
        ctes.append(
            "locked AS MATERIALIZED (SELECT id, owner, epoch, watched FROM runs"
            f" WHERE id = ANY({fence_[0]}) ORDER BY id FOR SHARE)"
        )
    if fenced or runs:
        ctes.append(f"alive AS MATERIALIZED (SELECT {_ALIVE} AS ok)")
    assert not hooks, "a batch taking hook tokens goes through commit_batch"
    assert not (sd or sw), "schedules are written apart (`_postgres_schedule_writes`)"
    if fenced:
        refused = (
            f"ARRAY(SELECT f.id FROM unnest({fence_[0]}, {fence_[1]}) AS f(id, epoch) WHERE NOT"
            " (SELECT ok FROM alive) OR NOT EXISTS (SELECT 1 FROM locked l WHERE l.id = f.id"
            " AND l.owner = $1::text AND l.epoch = f.epoch))"
        )
        # A creation whose events include a refused run's (a child it starts) goes with it.
        skipped = (
            f"ARRAY(SELECT DISTINCT e.creation FROM unnest({event_[0]}, {event_[1]}) AS e(creation,"
            " run_id) WHERE e.creation IS NOT NULL AND e.run_id = ANY(fr.refused))"
            if runs and events
            else "'{}'::text[]"
        )
        ctes.append(
            "fence AS MATERIALIZED (SELECT fr.refused || s.skipped AS refused, s.skipped"
            f" FROM (SELECT {refused} AS refused) fr CROSS JOIN LATERAL (SELECT {skipped}"
            " AS skipped) s)"
        )

    def kept(column: str) -> str:
        return f"NOT {column} = ANY((SELECT refused FROM fence)::text[])" if fenced else "true"

    if runs:
        queued = "r.queued OR NOT (SELECT ok FROM alive)"
        not_skipped = "NOT r.id = ANY((SELECT skipped FROM fence)::text[])"
        ctes.append(
            "inserted AS (INSERT INTO runs (id, workflow, status, generation, args, result,"
            " error, metadata, parent_id, created_at, started_at, completed_at, wake_at,"
            " deadline_at, owner, epoch) SELECT r.id, r.workflow, r.status, r.generation,"
            " r.args, r.result, r.error, r.metadata, r.parent_id, r.created_at,"
            " r.started_at, r.completed_at, r.wake_at, r.deadline_at,"
            f" CASE WHEN {queued} THEN NULL ELSE $1::text END,"
            f" CASE WHEN {queued} THEN 0 ELSE 1 END FROM unnest({', '.join(run_)})"
            " AS r(id, workflow, status, generation, args, result, error, metadata,"
            " parent_id, created_at, started_at, completed_at, wake_at, deadline_at, queued)"
            f" WHERE {not_skipped if fenced else 'true'}"
            " ON CONFLICT (id) DO NOTHING RETURNING id)"
        )
        notify.append(
            f"SELECT '{CLAIM_CHANNEL}', '' WHERE NOT (SELECT ok FROM alive)"
            f" OR true = ANY({run_[14]})"
        )
    if events:
        # Events of a creation whose id was taken (or that was refused) go with it.
        of_creation = "(e.creation IS NULL OR e.creation IN (SELECT id FROM inserted))"
        kept_creation = "e.creation = ANY((SELECT refused FROM fence)::text[])"
        ctes.append(
            "new_events AS (INSERT INTO events SELECT e.run_id, e.idx, e.generation, e.kind,"
            f" e.seq, e.name, e.data, e.at FROM unnest({', '.join(event_)}) AS e(creation, run_id,"
            f" idx, generation, kind, seq, name, data, at) WHERE {kept('e.run_id')}"
            f"{' AND ' + of_creation if runs else ''}"
            f"{' AND NOT coalesce(' + kept_creation + ', false)' if runs and fenced else ''})"
        )
    if chunks:
        ctes.append(
            f"new_chunks AS (INSERT INTO chunks SELECT * FROM unnest({', '.join(chunk_)})"
            f" AS c(run_id, namespace, idx, seq, attempt, kind, data, at)"
            f" WHERE {kept('c.run_id')})"
        )
    if updates:
        ctes.append(
            "updated AS (UPDATE runs SET status = u.status, generation = u.generation,"
            " result = u.result, error = u.error, started_at = u.started_at,"
            " completed_at = u.completed_at, wake_at = u.wake_at"
            f" FROM unnest({', '.join(update_)}) AS u(status, generation, result, error,"
            " started_at, completed_at, wake_at, id)"
            f" WHERE runs.id = ANY({update_[7]}) AND runs.id = u.id AND {kept('u.id')})"
        )
        # A finished child whose parent lives elsewhere: its outcome goes to the parent's
        # inbox (the status is the one this statement writes).
        ctes.append(
            "child_done AS (INSERT INTO inbox (run_id, kind, key, data, at)"
            " SELECT c.parent_id, 'child_done', c.id, NULL, extract(epoch FROM now())"
            f" FROM unnest({update_[7]}, {update_[0]}) AS u(id, status) JOIN runs c ON c.id = u.id"
            f" JOIN runs p ON p.id = c.parent_id WHERE c.id = ANY({update_[7]})"
            f" AND u.status IN ({_sql_list(FINAL)}) AND p.status IN ({_sql_list(UNFINISHED)})"
            f" AND p.owner IS DISTINCT FROM $1::text AND {kept('u.id')} RETURNING 1)"
        )
        notify.append(f"SELECT '{INBOX_CHANNEL}', '' WHERE EXISTS (SELECT 1 FROM child_done)")
    if hook_deletes:
        ctes.append(
            f"hooks_deleted AS (DELETE FROM hooks WHERE run_id = ANY({delete_[0]})"
            f" AND {kept('run_id')})"
        )
    if inbox:
        # Keyed by the sender's uid: a batch written again after a lost connection
        # does not send its messages twice.
        ctes.append(
            "inbox_written AS (INSERT INTO inbox (run_id, kind, key, data, at, uid)"
            f" SELECT * FROM unnest({', '.join(inbox_)}) ON CONFLICT (uid) DO NOTHING)"
        )
        notify.append(f"SELECT '{INBOX_CHANNEL}', ''")
    if taken:
        ctes.append(
            f"inbox_taken AS (DELETE FROM inbox WHERE id = ANY({taken_[0]}) AND id IN (SELECT t.id"
            f" FROM unnest({taken_[0]}, {taken_[1]}) AS t(id, run_id) WHERE {kept('t.run_id')}))"
        )
    if fenced:
        # Every run written here that a reader elsewhere can follow is fenced (the others
        # are created here), and its mark is read under its row lock: see
        # `_postgres_watch_marks`.
        notify.append(marked_runs_notice("SELECT id FROM locked WHERE watched"))
    except_skipped = " EXCEPT SELECT unnest(skipped)" if fenced else ""
    columns = [
        f"ARRAY(SELECT unnest({run_[0]}) EXCEPT SELECT id FROM inserted{except_skipped})"
        if runs
        else "NULL::text[]",
        "refused" if fenced else "NULL::text[]",
        "NULL::text[]",
        "NULL::text[]",
    ]
    if notify:
        columns.append(
            "(SELECT count(pg_notify(n.channel, n.payload)) FROM"
            f" ({' UNION ALL '.join(notify)}) AS n(channel, payload))"
        )
    # Every shape names the writer ($1), if only to give the parameter its type.
    select = f"SELECT {', '.join(columns)}{' FROM fence' if fenced else ''}"
    select += " WHERE $1::text IS NULL OR true"
    return f"WITH {', '.join(ctes)} {select}" if ctes else select


# The shapes of an engine's usual batches (runs, events, chunks, updates, hooks, hook
# deletes, schedule deletes, schedule writes, inbox, inbox taken, fenced): a creation,
# a step's events, a run's end, each with stream chunks.
_USUAL = (
    (True, True, False, False, False, False, False, False, False, False, False),
    (False, True, False, False, False, False, False, False, False, False, True),
    (False, True, False, True, False, False, False, False, False, False, True),
    (False, True, False, True, False, True, False, False, False, False, True),
    (True, True, False, True, False, False, False, False, False, False, True),
    (False, True, True, False, False, False, False, False, False, False, True),
    (False, False, True, False, False, False, False, False, False, False, True),
    (False, True, True, True, False, False, False, False, False, False, True),
)


def usual_statements() -> list[tuple[str, int]]:
    """The statements of the usual batch shapes, with their number of arguments: the
    writer prepares each when it connects, so that no run pays for preparing one."""
    return [
        (_statement(shape), 1 + sum(len(t) for t, on in zip(_TYPES, shape, strict=True) if on))
        for shape in _USUAL
    ]
