"""purge: commit latency while `engine.purge` deletes a million events.

The database is filled with finished runs directly through SQLite (10 events
each, finished an hour ago), then a caller starts 1-step workflows one after the
other, measuring start -> result (two commits each): first alone, then while
`engine.purge` deletes every old run in its short batches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from typing import Any

import actorflow as af

from .common import Context, Metric, log, summarize

DESCRIPTION = "start -> result latency while a purge deletes 1,000,000 events"
DEFAULTS = {"runs": 100_000, "events_per_run": 10, "samples": 2_000}
QUICK = {"runs": 2_000, "events_per_run": 10, "samples": 200}
TABLE = [
    Metric("purged_events_per_s", "events deleted by purge", "/s"),
    Metric("purge_s", "purge of all old runs", "s"),
    Metric("alone_p50_ms", "start -> result alone, p50", "ms"),
    Metric("alone_p99_ms", "start -> result alone, p99", "ms"),
    Metric("during_p50_ms", "start -> result during the purge, p50", "ms"),
    Metric("during_p99_ms", "start -> result during the purge, p99", "ms"),
    Metric("during_max_ms", "start -> result during the purge, max", "ms"),
]


@af.step(name="bench.purge.tick")
async def tick() -> int:
    return 1


@af.workflow(name="bench.purge.one_step")
async def one_step() -> int:
    return await tick()


def _fill(path: Any, runs: int, per_run: int) -> None:
    finished = time.time() - 3600
    with sqlite3.connect(path) as conn:
        for start in range(0, runs, 10_000):
            ids = [f"old-{i:08d}" for i in range(start, min(runs, start + 10_000))]
            conn.executemany(
                "INSERT INTO runs (id, workflow, status, generation, args, created_at,"
                " started_at, completed_at, result) VALUES (?, 'old', 'completed', 0, '[]',"
                " ?, ?, ?, '1')",
                [(i, finished, finished, finished) for i in ids],
            )
            conn.executemany(
                "INSERT INTO events (run_id, idx, generation, kind, seq, name, data, at)"
                " VALUES (?, ?, 0, 'step_completed', ?, 'x', '1', ?)",
                [(i, k, k, finished) for i in ids for k in range(per_run)],
            )


async def _one(engine: af.Engine) -> float:
    t0 = time.perf_counter()
    await (await engine.start(one_step)).result()
    return time.perf_counter() - t0


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    path = ctx.db_path()
    async with ctx.engine(workflows=[one_step], path=path):
        pass  # the schema
    events = cfg["runs"] * cfg["events_per_run"]
    log(f"  filling {cfg['runs']:,} finished runs, {events:,} events")
    await asyncio.to_thread(_fill, path, cfg["runs"], cfg["events_per_run"])
    async with ctx.engine(workflows=[one_step], path=path) as engine:
        for _ in range(100):  # warm-up
            await (await engine.start(one_step)).result()
        alone = [await _one(engine) for _ in range(cfg["samples"])]
        log("  purging")
        before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
        t0 = time.perf_counter()
        purge = asyncio.create_task(engine.purge(before))
        during = [await _one(engine)]
        while not purge.done():
            during.append(await _one(engine))
        deleted = await purge
        seconds = time.perf_counter() - t0
    assert deleted == cfg["runs"], deleted
    a, d = summarize(alone, 1e3), summarize(during, 1e3)
    ctx.metrics.update(
        runs=cfg["runs"],
        events=events,
        purge_s=seconds,
        purged_events_per_s=events / seconds,
        alone_p50_ms=a["p50"],
        alone_p99_ms=a["p99"],
        during_samples=d["count"],
        during_p50_ms=d["p50"],
        during_p99_ms=d["p99"],
        during_max_ms=d["max"],
    )
