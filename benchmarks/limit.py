"""limit: the physical ceiling: batched inserts of actorflow's own event rows, nothing else.

Rows are harvested from real actorflow runs (the 3-step workflow), then copied
with fresh run ids made as actorflow makes them (`new_run_id`), so ids, kinds,
payloads and sizes are exactly what actorflow writes, in the best order for
SQLite: run after run, ids ascending (appends at the end of the primary key).
The table is created from the `CREATE TABLE events` statement read back from
actorflow's database. Each batch is one transaction (BEGIN, executemany,
COMMIT) into a fresh WAL database with actorflow's default
`synchronous=NORMAL`:

- through aiosqlite (one thread hop per statement): the ceiling the task asks for;
- through sqlite3 on the calling thread: what SQLite itself can do, for reference;
- through aiosqlite with random (uuid4) run ids, at the best batch size: the
  ceiling as it was measured before actorflow's ids sorted by time, for reference.

With `--store postgresql://...`, the same rows go to PostgreSQL through asyncpg
instead (see `benchmarks/postgres.py`).

The orchestrator reports actorflow's `throughput` events/s as a percentage of
the best rate found (and of the rate at actorflow's own mean batch size, when
`throughput` ran in the same invocation).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from actorflow._ids import new_run_id

from .common import Context, Metric, log
from .shapes import three_steps

DESCRIPTION = "raw batched inserts of actorflow's event rows (the ceiling)"
DEFAULTS = {
    "batch_sizes": "1,10,100,1000,10000",
    "rows_per_size": 200_000,
    "seconds_per_size": 2.0,
    "actorflow_batch_rows": 0,  # filled in from `throughput` by the orchestrator
    "floor_samples": 2000,  # PostgreSQL: a 3-step run's commits, one after the other
}
QUICK = {**DEFAULTS, "batch_sizes": "1,100,1000", "rows_per_size": 5000, "seconds_per_size": 0.2,
         "floor_samples": 50}  # fmt: skip
TABLE = [
    Metric("ceiling_events_per_s", "ceiling (aiosqlite; asyncpg on PostgreSQL)", "/s"),
    Metric("ceiling_batch_rows", "  at batch size", "rows"),
    Metric("at_actorflow_batch_events_per_s", "ceiling at actorflow's mean batch", "/s"),
    Metric("sqlite3_ceiling_events_per_s", "sqlite3 direct (reference)", "/s"),
    Metric("random_ids_events_per_s", "aiosqlite, random run ids (reference)", "/s"),
    Metric("unnest_ceiling_events_per_s", "PostgreSQL: one INSERT ... unnest a batch", "/s"),
    Metric("copy_ceiling_events_per_s", "PostgreSQL: COPY a batch", "/s"),
    Metric("round_trip_p50_ms", "PostgreSQL: SELECT 1 round trip p50", "ms"),
    Metric("round_trip_p99_ms", "PostgreSQL: SELECT 1 round trip p99", "ms"),
    Metric("floor_latency_p50_ms", "PostgreSQL: a 3-step run's commits in a row p50", "ms"),
    Metric("floor_latency_p99_ms", "PostgreSQL: a 3-step run's commits in a row p99", "ms"),
    Metric("row_bytes", "mean event row payload", "bytes"),
    Metric("actorflow_pct_of_ceiling", "actorflow throughput events/s vs ceiling", "%"),
    Metric("actorflow_pct_at_batch", "actorflow vs ceiling at its batch size", "%"),
    Metric("actorflow_many_pct_of_ceiling", "actorflow started with start_many vs ceiling", "%"),
    Metric(
        "actorflow_sustained_pct_of_ceiling", "actorflow sustained (100 in flight) vs ceiling", "%"
    ),
    Metric("durable_floor_pct_of_ceiling", "durable floor (floors, no engine) vs ceiling", "%"),
    Metric("hand_floor_pct_of_ceiling", "hand-driven floor (no tasks) vs ceiling", "%"),
]

INSERT_EVENT = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?)"


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    sizes = sorted({int(s) for s in str(cfg["batch_sizes"]).split(",") if s.strip()})
    mean_batch = round(float(cfg.get("actorflow_batch_rows") or 0))
    if mean_batch > 0:
        sizes = sorted({*sizes, mean_batch})
    if ctx.store is not None:
        from .postgres import ceiling

        await ceiling(cfg, ctx, sizes)
        return
    template, schema = await harvest(ctx)
    per_run = len(template)
    ctx.metrics.update(rows_per_run=per_run, row_bytes=sum(map(row_size, template)) / per_run)

    def rows(count: int, make_id: Callable[[], str] = new_run_id) -> list[tuple[Any, ...]]:
        return copies(template, count, make_id)

    rates: dict[str, float] = {}
    direct: dict[str, float] = {}
    for size in sizes:
        total = max(size, cfg["rows_per_size"] // size * size)
        batches = [rows(size) for _ in range(total // size)]
        rates[str(size)] = await _aiosqlite_rate(ctx.db_path("limit"), schema, batches, cfg)
        direct[str(size)] = await asyncio.to_thread(
            _sqlite3_rate, ctx.db_path("limit"), schema, batches, cfg
        )
        log(
            f"  batch {size:>6}: aiosqlite {rates[str(size)]:>10,.0f}/s"
            f"   sqlite3 {direct[str(size)]:>10,.0f}/s"
        )
    best = max(rates, key=lambda k: rates[k])
    # For comparison with runs before ids sorted by time: the same rows with random ids
    # land all over the primary key's B-tree instead of at its end.
    size = int(best)
    count = max(1, cfg["rows_per_size"] // size)
    random_batches = [rows(size, lambda: uuid.uuid4().hex) for _ in range(count)]
    ctx.metrics["random_ids_events_per_s"] = await _aiosqlite_rate(
        ctx.db_path("limit"), schema, random_batches, cfg
    )
    ctx.metrics.update(
        aiosqlite_events_per_s_by_batch=rates,
        sqlite3_events_per_s_by_batch=direct,
        ceiling_events_per_s=rates[best],
        ceiling_batch_rows=int(best),
        sqlite3_ceiling_events_per_s=max(direct.values()),
    )
    if mean_batch > 0:
        ctx.metrics["at_actorflow_batch_events_per_s"] = rates[str(mean_batch)]


async def harvest(ctx: Context) -> tuple[list[tuple[Any, ...]], str]:
    """The event rows of one real 3-step run, and the events table's CREATE statement."""
    path = ctx.db_path("harvest")
    async with ctx.engine(workflows=[three_steps], path=path) as engine:
        run_ = await engine.start(three_steps, 1)
        await run_.result()
    conn = sqlite3.connect(path)
    try:
        (schema,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type='table' AND name='events'"
        ).fetchone()
        template = conn.execute(
            "SELECT * FROM events WHERE run_id=? ORDER BY idx", (run_.id,)
        ).fetchall()
    finally:
        conn.close()
    return template, schema


def copies(
    template: list[tuple[Any, ...]], count: int, make_id: Callable[[], str] = new_run_id
) -> list[tuple[Any, ...]]:
    """`count` event rows: the template run's rows again and again, each time under a
    fresh run id, stamped now."""
    out: list[tuple[Any, ...]] = []
    now = time.time()
    while len(out) < count:
        run_id = make_id()
        out.extend((run_id, *r[1:7], now) for r in template)
    return out[:count]


def row_size(row: tuple[Any, ...]) -> int:
    """Bytes of a row's values: text and blobs by length, numbers as 8."""
    return sum(0 if v is None else len(v) if isinstance(v, str | bytes) else 8 for v in row)


def _within_budget(cfg: dict[str, Any]) -> Callable[[], bool]:
    deadline = time.perf_counter() + float(cfg["seconds_per_size"])
    return lambda: time.perf_counter() < deadline


async def open_events_db(path: Path, schema: str) -> aiosqlite.Connection:
    """A fresh WAL database with actorflow's durability and its events table, on aiosqlite."""
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(schema)
    except BaseException:
        await db.close()
        raise
    return db


async def _aiosqlite_rate(
    path: Path, schema: str, batches: list[list[tuple[Any, ...]]], cfg: dict[str, Any]
) -> float:
    db = await open_events_db(path, schema)
    try:
        more = _within_budget(cfg)
        written = 0
        begin = time.perf_counter()
        for batch in batches:
            await db.execute("BEGIN")
            await db.executemany(INSERT_EVENT, batch)
            await db.execute("COMMIT")
            written += len(batch)
            if not more():
                break
        return written / (time.perf_counter() - begin)
    finally:
        await db.close()


def _sqlite3_rate(
    path: Path, schema: str, batches: list[list[tuple[Any, ...]]], cfg: dict[str, Any]
) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(schema)
        more = _within_budget(cfg)
        written = 0
        begin = time.perf_counter()
        for batch in batches:
            conn.execute("BEGIN")
            conn.executemany(INSERT_EVENT, batch)
            conn.execute("COMMIT")
            written += len(batch)
            if not more():
                break
        return written / (time.perf_counter() - begin)
    finally:
        conn.close()
