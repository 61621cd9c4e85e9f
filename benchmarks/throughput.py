"""throughput: N concurrent 3-step workflows, all started at once, all awaited.

Started with one `engine.start()` per run (gathered), the way most callers
start runs and the way the DBOS comparison starts them; then, in the same
engine, N more started with one `engine.start_many()` call.

Events committed are counted in the database; batches and rows come from the
group-commit writer's counters (`engine.store_stats().batches` / `.rows`; rows
include run-row inserts and updates as well as events). Where the time goes:
the event loop thread's CPU time per workflow (`time.thread_time`; it includes
the benchmark's own gathering of starts and results), and the share of the
wall time in which the writer was committing a batch. Then every result is read
again, gathered, and once more one by one: the runs have left memory, so the
answers come from the store (grouped reads, see `RunLoader`; reads by id on the
loop thread, see `SQLiteStore._fetch_by_key`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import CommitCounts, Context, GcWatch, Metric, Stopwatch, log
from .shapes import STEPS_PER_RUN, workflow_for

DESCRIPTION = "N concurrent 3-step workflows (group commit)"
DEFAULTS = {"runs": 10_000, "warmup": 200, "waits": False}
QUICK = {"runs": 300, "warmup": 10, "waits": False}
TABLE = [
    Metric("workflows_per_s", "workflows", "/s"),
    Metric("steps_per_s", "steps", "/s"),
    Metric("events_per_s", "events committed", "/s"),
    Metric("rows_per_s", "rows committed (events + run rows)", "/s"),
    Metric("mean_batch_rows", "mean group-commit batch", "rows"),
    Metric("mean_batch_events", "mean events per batch", "events"),
    Metric("batches", "batches (transactions)", ""),
    Metric("start_s", "time to start all runs", "s"),
    Metric("total_s", "time to finish all runs", "s"),
    Metric("gc_time_pct", "time in GC pauses", "%"),
    Metric("loop_cpu_us_per_run", "event loop thread CPU per workflow", "us"),
    Metric("writer_busy_pct", "time the writer was committing", "%"),
    Metric("gc_pause_max_ms", "longest GC pause", "ms"),
    Metric("finished_results_per_s", "result() of finished runs, gathered", "/s"),
    Metric("finished_results_in_order_per_s", "result() of finished runs, one by one", "/s"),
    Metric("many_workflows_per_s", "workflows, started with start_many", "/s"),
    Metric("many_events_per_s", "events committed, started with start_many", "/s"),
    Metric("many_loop_cpu_us_per_run", "event loop CPU per workflow, start_many", "us"),
]


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    n = cfg["runs"]
    url = ctx.store_url()
    workflow = workflow_for(cfg)
    async with ctx.engine(workflows=[workflow], url=url) as engine:
        await asyncio.gather(*(_one(engine, workflow, i) for i in range(cfg["warmup"])))
        log(f"  {n:,} concurrent runs")
        async with CommitCounts(engine, url) as counts:
            loop_cpu0 = time.thread_time()
            with Stopwatch() as total, GcWatch() as gcw:
                with Stopwatch() as starting:
                    runs = await asyncio.gather(*(engine.start(workflow, i) for i in range(n)))
                results = await asyncio.gather(*(r.result() for r in runs))
            loop_cpu = time.thread_time() - loop_cpu0
        assert all(r == i + 3 for i, r in enumerate(results)), "wrong results"
        live = engine.live_actors()
        # Every run has left memory: their results now come from the store.
        with Stopwatch() as rereading:
            again = await asyncio.gather(*(r.result() for r in runs))
        assert again == results, "wrong results on the second read"
        with Stopwatch() as one_by_one:
            for run_, result in zip(runs, results, strict=True):
                assert await run_.result() == result, "wrong result on the third read"
        async with CommitCounts(engine, url) as many_counts:
            loop_cpu0 = time.thread_time()
            with Stopwatch() as many:
                runs = await engine.start_many(workflow, [(i,) for i in range(n)])
                results = await asyncio.gather(*(r.result() for r in runs))
            many_cpu = time.thread_time() - loop_cpu0
        assert all(r == i + 3 for i, r in enumerate(results)), "wrong results (start_many)"
    events, batches, rows = counts.events, counts.batches, counts.rows
    seconds = total.seconds
    ctx.metrics.update(
        runs=n,
        workflows_per_s=n / seconds,
        steps_per_s=n * STEPS_PER_RUN / seconds,
        events=events,
        events_per_s=events / seconds,
        rows=rows,
        rows_per_s=rows / seconds,
        batches=batches,
        mean_batch_rows=rows / batches if batches else 0.0,
        mean_batch_events=events / batches if batches else 0.0,
        events_per_run=events / n,
        start_s=starting.seconds,
        total_s=seconds,
        live_actors_after=live,
        finished_results_per_s=n / rereading.seconds,
        finished_results_in_order_per_s=n / one_by_one.seconds,
        loop_cpu_us_per_run=loop_cpu * 1e6 / n,
        writer_busy_pct=100 * counts.busy_seconds / seconds,
        many_workflows_per_s=n / many.seconds,
        many_events_per_s=many_counts.events / many.seconds,
        many_loop_cpu_us_per_run=many_cpu * 1e6 / n,
        **gcw.pauses(),
    )
    ctx.metrics["gc_time_pct"] = 100 * ctx.metrics["gc_pause_total_ms"] / 1000 / seconds


async def _one(engine: Any, workflow: Any, i: int) -> None:
    await (await engine.start(workflow, i)).result()
