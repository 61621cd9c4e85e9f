"""`--store postgresql://...`: the workloads' stores on a PostgreSQL server, and its ceiling.

Every engine gets a schema of its own (`Context.store_url`), dropped when its workload
ends. The ceiling (the `limit` workload on PostgreSQL) inserts the event rows of a real
actorflow run, with fresh run ids, in batches into a fresh copy of actorflow's events
table, through asyncpg: one `INSERT ... SELECT FROM unnest(...)` statement per batch
(one round trip and one transaction, what actorflow's writer sends), and, for
reference, `COPY` in a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg

from actorflow._store._postgres import split_url
from actorflow._store._postgres_schema import migrate

from .common import Context, log, summarize
from .limit import copies, row_size
from .shapes import three_steps

_INSERT = (
    "INSERT INTO events SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[],"
    " $5::int[], $6::text[], $7::bytea[], $8::float8[])"
)
_COLUMNS = ("run_id", "idx", "generation", "kind", "seq", "name", "data", "at")


def schema_url(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


async def _connect(url: str) -> asyncpg.Connection:
    dsn, schema = split_url(url)
    return await asyncpg.connect(dsn, server_settings={"search_path": schema})


async def count_rows(url: str, table: str) -> int:
    conn = await _connect(url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def drop_schemas(url: str, schemas: list[str]) -> None:
    if not schemas:
        return
    conn = await asyncpg.connect(split_url(url)[0])
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def server_settings(url: str) -> dict[str, str]:
    """The server settings that decide how fast a commit is."""
    conn = await asyncpg.connect(split_url(url)[0])
    try:
        names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method",
                 "full_page_writes", "shared_buffers", "wal_buffers", "commit_delay"]  # fmt: skip
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await conn.close()


async def ceiling(cfg: dict[str, Any], ctx: Context, sizes: list[int]) -> None:
    """The `limit` workload on PostgreSQL (see the module docstring)."""
    url = ctx.store_url("harvest")
    async with ctx.engine(workflows=[three_steps], url=url) as engine:
        run_ = await engine.start(three_steps, 1)
        await run_.result()
    conn = await _connect(url)
    try:
        template = [
            tuple(row)
            for row in await conn.fetch(
                "SELECT * FROM events WHERE run_id = $1 ORDER BY idx", run_.id
            )
        ]
    finally:
        await conn.close()
    per_run = len(template)
    ctx.metrics.update(rows_per_run=per_run, row_bytes=sum(map(row_size, template)) / per_run)

    rates: dict[str, float] = {}
    copied: dict[str, float] = {}
    for size in sizes:
        total = max(size, cfg["rows_per_size"] // size * size)
        batches = [copies(template, size) for _ in range(total // size)]
        rates[str(size)] = await _rate(ctx, batches, cfg, _unnest)
        copied[str(size)] = await _rate(ctx, batches, cfg, _copy)
        log(
            f"  batch {size:>6}: unnest {rates[str(size)]:>10,.0f}/s"
            f"   COPY {copied[str(size)]:>10,.0f}/s"
        )
    best = max(rates, key=lambda k: rates[k])
    ctx.metrics.update(
        asyncpg_events_per_s_by_batch=rates,
        copy_events_per_s_by_batch=copied,
        ceiling_events_per_s=max(rates[best], max(copied.values())),
        ceiling_batch_rows=int(best),
        unnest_ceiling_events_per_s=rates[best],
        copy_ceiling_events_per_s=max(copied.values()),
    )
    mean_batch = round(float(cfg.get("actorflow_batch_rows") or 0))
    if mean_batch > 0:
        ctx.metrics["at_actorflow_batch_events_per_s"] = rates[str(mean_batch)]
    ctx.metrics["server"] = await server_settings(ctx.store or "")
    ctx.metrics.update(await _round_trips(url))
    ctx.metrics.update(await _floor_latency(ctx, url, run_.id, template, cfg["floor_samples"]))


async def _floor_latency(
    ctx: Context, source: str, run_id: str, template: list[tuple[Any, ...]], samples: int
) -> dict[str, float]:
    """The floor of a 3-step workflow's latency with a durable record of each step: its
    rows (the run's row and its events, as actorflow wrote them) in its commits (a step
    starts once its `step_started` is committed; the last step's result and the run's
    end share one), each one statement, one round trip and one transaction, one after
    the other, through bare asyncpg into a fresh copy of actorflow's tables (its indexes
    included). Nothing is checked or fenced: no store does less per commit."""
    conn = await _connect(source)
    try:
        found = await conn.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
        assert found is not None
        run = dict(found)
    finally:
        await conn.close()
    final = {k: run[k] for k in ("status", "result", "completed_at")}
    run.update(status="running", result=None, completed_at=None, owner=None, epoch=0)
    commits: list[list[tuple[Any, ...]]] = [[]]
    for row in template:  # a commit ends with each step's start
        commits[-1].append(row)
        if row[3] == "step_started":
            commits.append([])
    columns = ", ".join(run)
    create = (f"WITH r AS (INSERT INTO runs ({columns}) VALUES"
              f" ({', '.join(f'${i + 9}' for i in range(len(run)))})) {_INSERT}")  # fmt: skip
    end = (f"WITH u AS (UPDATE runs SET status = $9, result = $10, completed_at = $11"
           f" WHERE id = $12) {_INSERT}")  # fmt: skip
    url = ctx.store_url("floor")
    conn = await _connect(url)
    try:
        await migrate(conn, split_url(url)[1])
        times = []
        for i in range(samples + samples // 10):
            rows = copies(template, len(template))
            new_id = rows[0][0]
            at = 0
            began = time.perf_counter()
            for n, commit in enumerate(commits):
                columns_ = list(zip(*rows[at : at + len(commit)], strict=True))
                at += len(commit)
                if n == 0:
                    await conn.execute(create, *columns_, *{**run, "id": new_id}.values())
                elif n == len(commits) - 1:
                    await conn.execute(end, *columns_, *final.values(), new_id)
                else:
                    await conn.execute(_INSERT, *columns_)
            if i >= samples // 10:  # the first tenth warms up
                times.append(time.perf_counter() - began)
    finally:
        await conn.close()
    stats = summarize(times, scale=1000.0)
    log(f"  floor: {len(commits)} sequential commits p50 {stats['p50']:.3f} ms")
    return {
        "floor_latency_p50_ms": stats["p50"],
        "floor_latency_p99_ms": stats["p99"],
        "floor_commits": float(len(commits)),
    }


async def _round_trips(url: str, count: int = 1000) -> dict[str, float]:
    """`SELECT 1` round trips to the server: what each commit costs at the least (a loaded
    machine shows here, in the time the server process waits to be scheduled)."""
    conn = await _connect(url)
    try:
        samples = []
        for _ in range(count):
            began = time.perf_counter()
            await conn.fetchval("SELECT 1")
            samples.append(time.perf_counter() - began)
    finally:
        await conn.close()
    stats = summarize(samples, scale=1000.0)
    return {"round_trip_p50_ms": stats["p50"], "round_trip_p99_ms": stats["p99"]}


async def _unnest(conn: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
    await conn.execute(_INSERT, *zip(*batch, strict=True))


async def _copy(conn: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
    async with conn.transaction():
        await conn.copy_records_to_table("events", records=batch, columns=_COLUMNS)


async def _rate(
    ctx: Context,
    batches: list[list[tuple[Any, ...]]],
    cfg: dict[str, Any],
    write: Callable[[asyncpg.Connection, list[tuple[Any, ...]]], Any],
) -> float:
    """Rows/s written by `write`, batch after batch, into a fresh events table."""
    url = ctx.store_url("limit")
    conn = await _connect(url)
    try:
        await migrate(conn, split_url(url)[1])
        deadline = time.perf_counter() + float(cfg["seconds_per_size"])
        written = 0
        begin = time.perf_counter()
        for batch in batches:
            await write(conn, batch)
            written += len(batch)
            if time.perf_counter() > deadline:
                break
        return written / (time.perf_counter() - begin)
    finally:
        await conn.close()
