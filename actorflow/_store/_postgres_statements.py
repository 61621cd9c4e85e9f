"""A batch as one SQL statement made of the parts it has: data-modifying `WITH` queries,
one per table written, each taking its rows as arrays of columns through `unnest`.

Most batches write two or three of the eight parts (a step's events and its run's
update, say). A statement of those parts alone sends and decodes only their arrays and
runs no PL/pgSQL: measured on the same batch (2 events and a run update), 0.33 ms
against 0.49 ms for `commit_batch` with its 58 arrays, a third of a 3-step workflow's
commit time. Each shape is one statement text, which asyncpg prepares once per
connection and PostgreSQL plans once.

The parts of one statement all see the database as it was before it, so two parts
that touch the same rows cannot share one: an update of a run the batch also creates,
or hooks both taken and deleted. `needs_function` tells those batches, which go
through `commit_batch` (its statements run in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

# The arrays of each part, in `commit_batch`'s order (events apart), with their types.
_RUN = ("text", "text", "text", "int", "bytea", "bytea", "bytea", "bytea", "text",
        "float8", "float8", "float8", "float8", "float8")  # fmt: skip
_EVENT = ("text", "text", "int", "int", "text", "int", "text", "bytea", "float8")
_CHUNK = ("text", "text", "int", "int", "int", "int", "bytea", "float8")
_UPDATE = ("text", "int", "bytea", "bytea", "float8", "float8", "float8", "text")
_HOOK = ("text", "text", "int")
_SCHEDULE = ("text", "text", "text", "bytea", "text", "text", "text", "int", "int", "bytea",
             "float8", "float8", "float8", "bytea")  # fmt: skip
# (name, column types, SQL with {} for the `unnest` arguments), in commit_batch's order.
_PARTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "new_runs",
        _RUN,
        "INSERT INTO runs (id, workflow, status, generation, args, result, error, metadata,"
        " parent_id, created_at, started_at, completed_at, wake_at, deadline_at)"
        " SELECT * FROM unnest({}) ON CONFLICT (id) DO NOTHING RETURNING id",
    ),
    ("new_chunks", _CHUNK, "INSERT INTO chunks SELECT * FROM unnest({})"),
    (
        "run_updates",
        _UPDATE,
        "UPDATE runs SET status = u.status, generation = u.generation, result = u.result,"
        " error = u.error, started_at = u.started_at, completed_at = u.completed_at,"
        " wake_at = u.wake_at FROM unnest({}) AS u(status, generation, result, error,"
        " started_at, completed_at, wake_at, id) WHERE runs.id = u.id",
    ),
    (
        "new_hooks",
        _HOOK,
        "INSERT INTO hooks SELECT * FROM unnest({}) ON CONFLICT (token)"
        " DO UPDATE SET run_id = EXCLUDED.run_id, seq = EXCLUDED.seq",
    ),
    ("hooks_deleted", ("text",), "DELETE FROM hooks WHERE run_id IN (SELECT unnest({}))"),
    ("schedules_deleted", ("text",), "DELETE FROM schedules WHERE id IN (SELECT unnest({}))"),
    (
        "schedules_written",
        _SCHEDULE,
        "INSERT INTO schedules SELECT * FROM unnest({}) ON CONFLICT (id) DO UPDATE SET"
        " workflow = EXCLUDED.workflow, cron = EXCLUDED.cron, args = EXCLUDED.args,"
        " timezone = EXCLUDED.timezone, overlap = EXCLUDED.overlap,"
        " catchup = EXCLUDED.catchup, paused = EXCLUDED.paused,"
        " declared = EXCLUDED.declared, metadata = EXCLUDED.metadata,"
        " created_at = EXCLUDED.created_at, watermark = EXCLUDED.watermark,"
        " next_time = EXCLUDED.next_time, state = EXCLUDED.state",
    ),
)
_EVENTS = (
    "INSERT INTO events SELECT e.run_id, e.idx, e.generation, e.kind, e.seq, e.name, e.data,"
    " e.at FROM unnest({}) AS e(creation, run_id, idx, generation, kind, seq, name, data, at)"
)
# Events of a creation whose id was taken are left out with it.
_EVENTS_OF_NEW_RUNS = " WHERE e.creation IS NULL OR e.creation IN (SELECT id FROM new_runs)"


def needs_function(
    new_run_ids: Sequence[str], updated: Sequence[str], hooks: bool, hook_deletes: bool
) -> bool:
    """Whether two parts of the batch touch the same rows (see the module docstring)."""
    return (hooks and hook_deletes) or (
        bool(new_run_ids) and not set(updated).isdisjoint(new_run_ids)
    )


def statement(
    arrays: Sequence[Sequence[Any]], events: Sequence[Sequence[Any]]
) -> tuple[str, list[Sequence[Any]]]:
    """The statement of a batch's parts that have rows, and its arguments. `arrays` are
    `commit_batch`'s but for the events' (see `PostgresTransactions._params`); `events`
    the event columns, led by their creation's id. It returns the new runs' ids that
    were taken (NULL without new runs)."""
    shape: list[bool] = []
    args: list[Sequence[Any]] = []
    at = 0
    for _name, types, _sql in _PARTS:
        part = arrays[at : at + len(types)]
        at += len(types)
        shape.append(bool(part[0]))
        if part[0]:
            args.extend(part)
    if events[0]:
        args.extend(events)
    return _statement((*shape, bool(events[0]))), args


@cache
def _statement(shape: tuple[bool, ...]) -> str:
    queries: list[str] = []
    n = 0

    def unnest(types: tuple[str, ...]) -> str:
        nonlocal n
        n += len(types)
        return ", ".join(f"${n - len(types) + i + 1}::{t}[]" for i, t in enumerate(types))

    for (name, types, sql), present in zip(_PARTS, shape, strict=False):
        if present:
            queries.append(f"{name} AS ({sql.format(unnest(types))})")
    has_runs = shape[0]
    if shape[-1]:
        events = _EVENTS.format(unnest(_EVENT))
        queries.append(f"new_events AS ({events}{_EVENTS_OF_NEW_RUNS if has_runs else ''})")
    taken = (
        "SELECT ARRAY(SELECT unnest($1::text[]) EXCEPT SELECT id FROM new_runs)"
        if has_runs
        else "SELECT NULL::text[]"
    )
    return f"WITH {', '.join(queries)} {taken}" if queries else taken


# The shapes of a workflow's usual batches: a creation, a step's events, a run's end,
# the same with stream chunks (new_runs, chunks, updates, hooks, hook deletes,
# schedule deletes, schedule writes, events).
_USUAL = (
    (True, False, False, False, False, False, False, True),
    (False, False, False, False, False, False, False, True),
    (False, False, True, False, False, False, False, True),
    (False, False, True, False, True, False, False, True),
    (True, False, True, False, False, False, False, True),
    (False, True, False, False, False, False, False, True),
    (False, True, False, False, False, False, False, False),
    (False, True, True, False, False, False, False, True),
)


def usual_statements() -> list[tuple[str, int]]:
    """The statements of the usual batch shapes, with their number of arguments: the
    writer runs each once when it connects, so that no run pays for preparing one."""
    counts = [len(types) for _name, types, _sql in _PARTS] + [len(_EVENT)]
    return [
        (_statement(shape), sum(n for n, present in zip(counts, shape, strict=True) if present))
        for shape in _USUAL
    ]
