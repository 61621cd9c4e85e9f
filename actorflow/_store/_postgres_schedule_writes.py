"""A batch's schedule writes on PostgreSQL, where many engines may fire one schedule.

Schema version 4 gives each schedule row the `version` of its last change (made,
changed or deleted through the schedules API, or brought in line with the code).
A change writes the whole row under a new version (the last change wins, as on one
engine); a tick's write touches only what ticks move (`watermark`, `next_time` and
`state`), and only if the version is still the one its engine read: otherwise
another engine changed the schedule (paused it, gave it a new cron, deleted it) in
the moments before this engine heard of it, and the tick is not fired. Its runs,
created in the same batch, are dropped from it before it is written (reported as
refused, so the engine drops their actors) and its scheduler reads the schedule
again (`WriteBatch.stale_schedules`).

The schedule's unfinished runs, whichever engine started them, are the truth the
overlap policy needs: the row's `running` (in `state`) is kept as the unfinished
runs among those the stored row and the write name, read in `runs` at the write
(a change keeps them too); a tick's write whose engine applied the policy believing
a run unfinished (`busy`) when none is, or the other way round, or that terminated
the others (`terminate_other`) when one it did not know of is unfinished, is refused
as above, and its engine, reading the schedule again, learns the runs started
elsewhere.

Both happen in the batch's transaction, before its runs are created: the rows of
the schedules it writes are locked first (`FOR UPDATE`, in id order, so that two
batches cannot deadlock on them), so a change committed before sees the tick
refused, and one made after waits for the tick's commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .._models import UNFINISHED
from ._schedule_rows import running_of, with_running

if TYPE_CHECKING:
    import asyncpg

    from ._base import WriteBatch

V4 = "ALTER TABLE schedules ADD COLUMN version BIGINT NOT NULL DEFAULT 0;"

_LOCK = """
SELECT id, version, state FROM schedules WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""
_UNFINISHED = "SELECT id FROM runs WHERE id = ANY($1::text[]) AND status = ANY($2::text[])"

_COLUMNS = ("id", "workflow", "cron", "args", "timezone", "overlap", "catchup", "paused",
            "declared", "metadata", "created_at", "watermark", "next_time", "state",
            "version")  # fmt: skip
_TYPES = ("text", "text", "text", "bytea", "text", "text", "text", "int", "int", "bytea",
          "float8", "float8", "float8", "bytea", "int8")  # fmt: skip
_ROWS = ", ".join(f"${i + 6}::{t}[]" for i, t in enumerate(_TYPES))
_WRITE = f"""
WITH deleted AS (DELETE FROM schedules WHERE id = ANY($1::text[])),
ticked AS (
    UPDATE schedules s SET watermark = t.watermark, next_time = t.next_time, state = t.state
    FROM unnest($2::text[], $3::float8[], $4::float8[], $5::bytea[])
        AS t(id, watermark, next_time, state)
    WHERE s.id = ANY($2::text[]) AND s.id = t.id
)
INSERT INTO schedules ({", ".join(_COLUMNS)}) SELECT * FROM unnest({_ROWS})
ON CONFLICT (id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])}
"""
_WATERMARK = _COLUMNS.index("watermark")
_STATE = _COLUMNS.index("state")


async def write_schedules(conn: asyncpg.Connection, batch: WriteBatch) -> None:
    """Write the batch's schedule rows, in the caller's transaction, first dropping the
    ticks (and their runs) whose engine's view of the schedule was out of date."""
    writes, ticks = batch.schedule_writes, batch.schedule_ticks
    stored = {row[0]: row for row in await conn.fetch(_LOCK, list(writes))}
    stale = {key for key, tick in ticks.items() if _version(stored, key) != tick.version}
    created = {row.id for row, _ in batch.new_runs}
    # Each stored schedule's runs, as the stored row and the write name them.
    views: dict[str, tuple[tuple[object, ...], list[str]]] = {}
    for key, params in writes.items():
        if params is not None and key in stored and key not in stale:
            runs = [*running_of(cast(bytes, params[_STATE])), *running_of(stored[key]["state"])]
            views[key] = params, list(dict.fromkeys(runs))
    named = [run for _, runs in views.values() for run in runs if run not in created]
    unfinished: set[str] = set()
    if named:
        unfinished = {r[0] for r in await conn.fetch(_UNFINISHED, named, list(UNFINISHED))}
    for key, (params, runs) in views.items():
        tick = ticks.get(key)
        busy = [run for run in runs if run in unfinished]
        if tick is not None and (
            tick.busy not in (None, bool(busy))
            or (tick.known is not None and not set(busy).issubset(tick.known))
        ):
            stale.add(key)
            continue
        kept = [run for run in runs if run in created or run in unfinished]
        state = with_running(cast(bytes, params[_STATE]), kept)
        writes[key] = (*params[:_STATE], state, *params[_STATE + 1 :])
    if stale:
        refused = {run_id for schedule_id in stale for run_id in ticks[schedule_id].runs}
        batch.discard(set(refused))
        batch.refused.update(refused)
        batch.stale_schedules.update(stale)
        for schedule_id in stale:
            del ticks[schedule_id], writes[schedule_id]
    deletes = [key for key, params in writes.items() if params is None]
    changes = [p for key, p in writes.items() if p is not None and key not in ticks]
    if not (deletes or ticks or changes):
        return
    moved: list[list[object]] = [list(ticks), [], [], []]
    for key in ticks:
        params = writes[key]
        assert params is not None
        for column, value in zip(moved[1:], params[_WATERMARK:], strict=False):
            column.append(value)
    rows = [list(c) for c in zip(*changes, strict=True)] if changes else [[]] * len(_COLUMNS)
    await conn.execute(_WRITE, deletes, *moved, *rows)


def _version(stored: dict[str, asyncpg.Record], schedule_id: str) -> int | None:
    row = stored.get(schedule_id)
    return None if row is None else int(row["version"])
