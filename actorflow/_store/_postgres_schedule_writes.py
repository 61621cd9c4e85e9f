"""A batch's schedule writes on PostgreSQL, where many engines may fire one schedule.

Schema version 4 gives each schedule row the `version` of its last change (made,
changed or deleted through the schedules API, or brought in line with the code).
A change writes the whole row under a new version (the last change wins, as on one
engine); a tick's write touches only what ticks move (`watermark`, `next_time` and
`state`), and only if the version is still the one its engine read: otherwise
another engine changed the schedule (paused it, gave it a new cron, deleted it) in
the moments before this engine heard of it, and the tick is not fired. Its runs,
created in the same batch, are dropped from it before it is written (reported as
refused, so the engine drops their actors) and its scheduler reads the schedules
again (`WriteBatch.stale_schedules`).

Both happen in the batch's transaction, before its runs are created: the rows of
the schedules it writes are locked first (`FOR UPDATE`, in id order, so that two
batches cannot deadlock on them), so a change committed before sees the tick
refused, and one made after waits for the tick's commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

    from ._base import WriteBatch

V4 = "ALTER TABLE schedules ADD COLUMN version BIGINT NOT NULL DEFAULT 0;"

_STALE = """
WITH locked AS MATERIALIZED (
    SELECT id, version FROM schedules WHERE id = ANY($3::text[]) ORDER BY id FOR UPDATE
)
SELECT t.id FROM unnest($1::text[], $2::int8[]) AS t(id, version)
WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.id = t.id AND l.version = t.version)
"""

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


async def write_schedules(conn: asyncpg.Connection, batch: WriteBatch) -> None:
    """Write the batch's schedule rows, in the caller's transaction, first dropping the
    ticks (and their runs) of the schedules changed since their engine read them."""
    writes, ticks = batch.schedule_writes, batch.schedule_ticks
    versions = [version for version, _ in ticks.values()]
    stale = {row[0] for row in await conn.fetch(_STALE, list(ticks), versions, list(writes))}
    if stale:
        runs = {run_id for schedule_id in stale for run_id in ticks[schedule_id][1]}
        batch.discard(set(runs))
        batch.refused.update(runs)
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
