"""latency: one caller, sequential runs: start() -> result() of a 3-step workflow."""

from __future__ import annotations

import time
from typing import Any

from .common import Context, GcWatch, Metric, log, summarize
from .shapes import three_steps

DESCRIPTION = "sequential start->result of a 3-step workflow"
DEFAULTS = {"samples": 2000, "warmup": 200}
QUICK = {"samples": 50, "warmup": 10}
TABLE = [
    Metric("p50_ms", "start->result p50", "ms"),
    Metric("p90_ms", "start->result p90", "ms"),
    Metric("p99_ms", "start->result p99", "ms"),
    Metric("max_ms", "start->result max", "ms"),
    Metric("runs_per_s", "sequential runs", "/s"),
    Metric("commits_per_run", "commits (transactions) per run", ""),
    Metric("gc_pause_max_ms", "longest GC pause", "ms"),
    Metric("gc_full_collections", "full GC collections", ""),
]


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    async with ctx.engine(workflows=[three_steps]) as engine:
        for i in range(cfg["warmup"]):
            await (await engine.start(three_steps, i)).result()
        log(f"  {cfg['samples']} sequential runs")
        samples = []
        clock = time.perf_counter
        batches0 = engine.store_stats().batches
        begin = clock()
        with GcWatch() as gcw:
            for i in range(cfg["samples"]):
                t0 = clock()
                run_ = await engine.start(three_steps, i)
                await run_.result()
                samples.append(clock() - t0)
        total = clock() - begin
        commits = engine.store_stats().batches - batches0
    stats = summarize(samples, scale=1000.0)
    ctx.metrics.update(
        samples=len(samples),
        mean_ms=stats["mean"],
        p50_ms=stats["p50"],
        p90_ms=stats["p90"],
        p99_ms=stats["p99"],
        max_ms=stats["max"],
        runs_per_s=len(samples) / total,
        commits_per_run=commits / len(samples),
        **gcw.pauses(),
    )
