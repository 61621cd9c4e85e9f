"""long: one workflow of N steps; the cost of a step must not grow with the history.

Each step is timed from inside the workflow (the call until its result is
back, commit included). Timing in workflow code is fine here: the run is never
replayed during the measurement.
"""

from __future__ import annotations

import time
from typing import Any

import actorflow as af

from .common import Context, Metric, log, summarize

DESCRIPTION = "one N-step workflow: first vs last steps"
DEFAULTS = {"steps": 10_000, "window": 100, "warmup_steps": 300}
QUICK = {"steps": 400, "window": 50, "warmup_steps": 50}
TABLE = [
    Metric("first_mean_us", "mean step, first window", "us"),
    Metric("last_mean_us", "mean step, last window", "us"),
    Metric("ratio_last_first", "last / first (flat = ~1)", "x", ("<", 1.2)),
    Metric("first_p50_us", "p50 step, first window", "us"),
    Metric("last_p50_us", "p50 step, last window", "us"),
    Metric("ratio_p50_last_first", "last / first, p50", "x"),
    Metric("steps_per_s", "steps in one run", "/s"),
]

_durations: list[float] = []


@af.step(name="bench.long.tick")
async def tick(i: int) -> int:
    return i


@af.workflow(name="bench.long.many_steps")
async def many_steps(n: int) -> int:
    clock = time.perf_counter
    total = 0
    for i in range(n):
        t0 = clock()
        total += await tick(i)
        _durations.append(clock() - t0)
    return total


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    n, window = cfg["steps"], cfg["window"]
    if n < 2 * window:
        raise ValueError("long: steps must be at least twice the window")
    async with ctx.engine(workflows=[many_steps]) as engine:
        await (await engine.start(many_steps, cfg["warmup_steps"])).result()
        _durations.clear()
        log(f"  one run of {n:,} steps")
        begin = time.perf_counter()
        result = await (await engine.start(many_steps, n)).result()
        seconds = time.perf_counter() - begin
    assert result == n * (n - 1) // 2 and len(_durations) == n
    first = summarize(_durations[:window], scale=1e6)
    last = summarize(_durations[-window:], scale=1e6)
    middle = summarize(_durations, scale=1e6)
    ctx.metrics.update(
        steps=n,
        window=window,
        first_mean_us=first["mean"],
        last_mean_us=last["mean"],
        ratio_last_first=last["mean"] / first["mean"],
        first_p50_us=first["p50"],
        last_p50_us=last["p50"],
        ratio_p50_last_first=last["p50"] / first["p50"],
        all_p50_us=middle["p50"],
        all_p99_us=middle["p99"],
        steps_per_s=n / seconds,
        total_s=seconds,
    )
