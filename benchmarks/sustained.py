"""sustained: a steady load, a fixed number of runs in flight.

`in_flight` callers each start a 3-step workflow, await its result and start
the next, until `runs` have finished: a service's steady state, where
`throughput` measures one burst of 10,000 runs started at once. With fewer runs
in memory the cyclic GC has little to scan, but the runs move in step: each
commit carries a row of every run in flight, and the loop waits for it (the
`writer_busy_pct` of the wall time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import CommitCounts, Context, GcWatch, Metric, Stopwatch, log
from .shapes import workflow_for

DESCRIPTION = "steady load: N runs, a fixed number in flight"
DEFAULTS = {"runs": 20_000, "in_flight": 100, "warmup": 200, "waits": False}
QUICK = {"runs": 600, "in_flight": 50, "warmup": 10, "waits": False}
TABLE = [
    Metric("workflows_per_s", "workflows", "/s"),
    Metric("events_per_s", "events committed", "/s"),
    Metric("in_flight", "runs in flight", ""),
    Metric("latency_p50_ms", "start -> result p50", "ms"),
    Metric("latency_p99_ms", "start -> result p99", "ms"),
    Metric("latency_p999_ms", "start -> result p99.9", "ms"),
    Metric("latency_max_ms", "start -> result max", "ms"),
    Metric("mean_batch_rows", "mean group-commit batch", "rows"),
    Metric("loop_cpu_us_per_run", "event loop thread CPU per workflow", "us"),
    Metric("writer_busy_pct", "time the writer was committing", "%"),
    Metric("gc_time_pct", "time in GC pauses", "%"),
]


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    n, width = int(cfg["runs"]), int(cfg["in_flight"])
    url = ctx.store_url()
    workflow = workflow_for(cfg)
    async with ctx.engine(workflows=[workflow], url=url) as engine:
        await asyncio.gather(*(_timed(engine, workflow, i, []) for i in range(cfg["warmup"])))
        log(f"  {n:,} runs, {width:,} in flight")
        latencies: list[float] = []
        todo = iter(range(n))

        async def caller() -> None:
            for i in todo:
                await _timed(engine, workflow, i, latencies)

        async with CommitCounts(engine, url) as counts:
            cpu0 = time.thread_time()
            with Stopwatch() as total, GcWatch() as gcw:
                await asyncio.gather(*(caller() for _ in range(width)))
            cpu = time.thread_time() - cpu0
    latencies.sort()
    seconds = total.seconds
    ctx.metrics.update(
        runs=n,
        in_flight=width,
        workflows_per_s=n / seconds,
        events_per_s=counts.events / seconds,
        latency_p50_ms=1000 * latencies[len(latencies) // 2],
        latency_p99_ms=1000 * latencies[int(len(latencies) * 0.99)],
        latency_p999_ms=1000 * latencies[int(len(latencies) * 0.999)],
        latency_max_ms=1000 * latencies[-1],
        batches=counts.batches,
        mean_batch_rows=counts.rows / counts.batches if counts.batches else 0.0,
        loop_cpu_us_per_run=cpu * 1e6 / n,
        writer_busy_pct=100 * counts.busy_seconds / seconds,
        **gcw.pauses(),
    )
    ctx.metrics["gc_time_pct"] = 100 * ctx.metrics["gc_pause_total_ms"] / 1000 / seconds


async def _timed(engine: Any, workflow: Any, i: int, latencies: list[float]) -> None:
    began = time.perf_counter()
    result = await (await engine.start(workflow, i)).result()
    assert result == i + 3, "wrong result"
    latencies.append(time.perf_counter() - began)
