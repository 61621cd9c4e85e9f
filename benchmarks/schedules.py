"""schedules: many schedules firing every second, and how late they fire.

N schedules of `* * * * * *` (every second) run for S seconds on SQLite, so
N ticks fall on the same instant every second. Two latenesses per tick:

- fired: the run's `created_at` minus its tick: when the scheduler recorded the
  tick's run (its timer came due, the run and the schedule's row went into the
  open batch);
- running: the wall time the workflow notes as its first act minus its tick
  (`af.workflow_info().schedule.scheduled_time`): also the commit and the
  run's first turn, for all N runs of that instant.

Ticks counted are those in the measured window; the loop's CPU is the
event-loop thread's CPU time over that window.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from typing import Any

import actorflow as af

from .common import Context, Metric, log, summarize, until

DESCRIPTION = "N every-second schedules for S seconds: ticks fired, lateness, loop CPU"
DEFAULTS = {"schedules": 1000, "seconds": 10}
QUICK = {"schedules": 50, "seconds": 2}
TABLE = [
    Metric("schedules", "schedules firing every second", ""),
    Metric("ticks_fired", "  ticks fired in the window", ""),
    Metric("ticks_expected", "  ticks due in the window", ""),
    Metric("fired_p50_ms", "  firing lateness p50 (tick to run recorded)", "ms"),
    Metric("fired_p99_ms", "  firing lateness p99", "ms", ("<", 50)),
    Metric("fired_max_ms", "  firing lateness max", "ms"),
    Metric("running_p50_ms", "  lateness p50 (tick to workflow running)", "ms"),
    Metric("running_p99_ms", "  lateness p99 (tick to workflow running)", "ms"),
    Metric("loop_cpu_pct", "  event-loop thread CPU", "%"),
    Metric("loop_cpu_us_per_tick", "  event-loop CPU per tick (fire, run, finish)", "µs"),
    Metric("fire_cpu_us_per_tick", "  of which firing (the run's creation included)", "µs"),
    Metric("fire_cpu_ms_per_second", "  firing CPU for the N ticks of one second", "ms"),
    Metric("process_cpu_pct", "  process CPU (all threads)", "%"),
    Metric("create_per_s", "  create_schedule calls", "/s"),
]

_lateness: dict[float, list[float]] = {}


@af.workflow(name="bench.schedules.tick")
async def tick() -> None:
    schedule = af.workflow_info().schedule
    assert schedule is not None
    at = schedule.scheduled_time.timestamp()
    _lateness.setdefault(at, []).append(time.time() - at)


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    n, seconds = int(cfg["schedules"]), int(cfg["seconds"])
    _lateness.clear()
    async with ctx.engine(workflows=[tick]) as engine:
        began = time.perf_counter()
        for i in range(n):
            # `allow`: a tick that fires late, with the run of the one before unfinished,
            # still counts (with `skip` it would be recorded as skipped).
            await engine.create_schedule(f"every-second-{i}", tick, "* * * * * *", overlap="allow")
        created = time.perf_counter() - began
        first = math.ceil(time.time()) + 1  # a whole second with every schedule armed
        window = [float(first + k) for k in range(seconds)]
        log(f"  {n:,} schedules firing every second; measuring {seconds} s from {first}")
        await asyncio.sleep(first - time.time())
        cpu0, proc0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
        firing = engine.schedules.stats
        fired0, fire_cpu0 = firing.fired, firing.fire_cpu_seconds
        await asyncio.sleep(first + seconds - time.time())
        cpu, proc = time.thread_time() - cpu0, time.process_time() - proc0
        fire_cpu_us = 1e6 * (firing.fire_cpu_seconds - fire_cpu0) / max(1, firing.fired - fired0)
        wall = time.perf_counter() - wall0

        def fired() -> int:
            return sum(len(_lateness.get(t, [])) for t in window)

        await until(lambda: fired() >= n * seconds, 60, "the window's runs", required=False)
        for schedule in await engine.list_schedules():
            await engine.get_schedule(schedule.id).pause()
        recorded = []
        for info in await engine.list_runs(workflow=tick, limit=10**9):
            at = datetime.fromisoformat(info.id.rsplit("@", 1)[1]).timestamp()
            if at in _lateness and first <= at < first + seconds:
                recorded.append(info.created_at.timestamp() - at)
    samples = [late for t in window for late in _lateness.get(t, [])]
    if not samples:
        raise RuntimeError("no tick of the window ran")
    stats = summarize(samples, scale=1000.0)
    fire = summarize(recorded, scale=1000.0)
    ctx.metrics.update(
        {
            "schedules": n,
            "seconds": seconds,
            "ticks_fired": len(recorded),
            "ticks_running": len(samples),
            "ticks_expected": n * seconds,
            "fired_p50_ms": fire["p50"],
            "fired_p99_ms": fire["p99"],
            "fired_max_ms": fire["max"],
            "running_p50_ms": stats["p50"],
            "running_p90_ms": stats["p90"],
            "running_p99_ms": stats["p99"],
            "running_max_ms": stats["max"],
            "loop_cpu_pct": 100 * cpu / wall,
            "loop_cpu_us_per_tick": 1e6 * cpu / max(1, len(samples)),
            "fire_cpu_us_per_tick": fire_cpu_us,
            "fire_cpu_ms_per_second": fire_cpu_us * n / 1000,
            "process_cpu_pct": 100 * proc / wall,
            "create_per_s": n / created,
        }
    )
