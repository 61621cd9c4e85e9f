"""waiting: many runs parked on timers or events, and how late timers fire.

Three phases, each in a process of its own (clean RSS baselines):

- `evicted`: N runs wait (a share on a far-away `af.sleep`, the rest on
  `af.wait_for_event`) in an engine with `idle_timeout=0`, so each run leaves
  memory as soon as it waits; RSS kept per waiting run.
- `live`: the same with `idle_timeout=None`: every run stays in memory.
- `lateness`: M runs `af.sleep_until(t)` with the t spread over one second;
  lateness = wall time the workflow observes when `sleep_until` returns, minus
  t. Measured with evicted runs (rehydrated on wake-up) and with live ones.

Runs are started in waves with no collection forced in between (as in a
service); RSS growth is read once the database shows every run `waiting` (and,
when evicting, no actor is left), after a full collection. Python seldom hands
freed memory back to the OS, so objects that only the cyclic collector frees
raise RSS for good; `*_gc_freed_per_run` counts them.
"""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime
from typing import Any

import actorflow as af

from .common import (
    Context,
    GcWatch,
    Metric,
    Stopwatch,
    db_count,
    log,
    python_blocks,
    rss_bytes,
    settled_rss,
    summarize,
    until,
)
from .shapes import three_steps

DESCRIPTION = "RSS per waiting run (evicted / live) and timer lateness"
PHASES = ("evicted", "lateness", "live")
DEFAULTS = {
    "phases": ",".join(PHASES),
    "runs": 100_000,
    "timer_share": 0.5,
    "wave": 2000,
    "lateness_runs": 10_000,
    "lateness_lead_s": 0.0,  # 0: 3 s + 1 ms per run
    "lateness_window_s": 1.0,  # the timers come due spread over this window
    "lateness_modes": "evicted,live",
    "close_budget_s": 60.0,
}
QUICK = {
    **DEFAULTS,
    "runs": 400,
    "wave": 100,
    "lateness_runs": 200,
    "lateness_lead_s": 0.5,
    "lateness_window_s": 0.2,
    "close_budget_s": 20.0,
}
TABLE = [
    Metric("evicted_rss_per_run_bytes", "RSS per waiting run, evicted", "bytes", ("<", 2048)),
    Metric("evicted_blocks_per_run", "  Python objects per run", ""),
    Metric("evicted_live_actors", "  live actors while waiting", ""),
    Metric("evicted_gc_freed_per_run", "  objects per run only the cyclic GC freed", ""),
    Metric("evicted_start_per_s", "  runs started and parked", "/s"),
    Metric("evicted_reopen_s", "  engine.open() on the file (a restart)", "s"),
    Metric("evicted_live_after_reopen", "  live actors after it", ""),
    Metric("live_rss_per_run_bytes", "RSS per waiting run, live", "bytes", ("<", 20480)),
    Metric("live_blocks_per_run", "  Python objects per run", ""),
    Metric("live_start_per_s", "  runs started", "/s"),
    Metric("live_close_s", "  engine.close() with all of them live", "s"),
    Metric("lateness_evicted_p50_ms", "timer lateness p50, evicted runs", "ms"),
    Metric("lateness_evicted_p99_ms", "timer lateness p99, evicted runs", "ms", ("<", 100)),
    Metric("lateness_live_p50_ms", "timer lateness p50, live runs", "ms"),
    Metric("lateness_live_p99_ms", "timer lateness p99, live runs", "ms", ("<", 100)),
]

_lateness: list[float] = []


@af.workflow(name="bench.waiting.sleeper")
async def sleeper(i: int) -> int:
    await af.sleep("2d")
    return i


@af.workflow(name="bench.waiting.listener")
async def listener(i: int) -> int:
    await af.wait_for_event("never")
    return i


@af.workflow(name="bench.waiting.alarm")
async def alarm(at: float) -> float:
    await af.sleep_until(datetime.fromtimestamp(at, UTC))
    late = time.time() - at
    _lateness.append(late)
    return late


WORKFLOWS = [sleeper, listener, alarm, three_steps]


async def run(cfg: dict[str, Any], ctx: Context, phase: str) -> None:
    if phase == "lateness":
        for mode, idle in (("evicted", 0.0), ("live", None)):
            if mode in str(cfg["lateness_modes"]).split(","):
                await _lateness_phase(cfg, ctx, mode, idle)
                ctx.checkpoint()
    else:
        await _parked(cfg, ctx, phase, 0.0 if phase == "evicted" else None)


async def _parked(cfg: dict[str, Any], ctx: Context, mode: str, idle: float | None) -> None:
    n, wave = cfg["runs"], cfg["wave"]
    timers = round(n * cfg["timer_share"])
    path = ctx.db_path()
    engine = ctx.engine(workflows=WORKFLOWS, path=path, idle_timeout=idle)
    await engine.open()
    for i in range(20):  # warm-up: code paths and caches (these runs complete)
        await (await engine.start(three_steps, i)).result()
    warm = [await engine.start(sleeper, -1), await engine.start(listener, -1)]
    await _settled(engine, path, len(warm), mode)
    rss0, blocks0 = settled_rss(), python_blocks()

    log(f"  {mode}: {n:,} waiting runs ({timers:,} on timers), waves of {wave:,}")
    with GcWatch() as gcw:
        with Stopwatch() as starting:
            for first in range(0, n, wave):
                ids = range(first, min(n, first + wave))
                await asyncio.gather(
                    *(engine.start(sleeper if i < timers else listener, i) for i in ids)
                )
                if mode == "evicted":
                    await until(lambda: engine.live_actors() == 0, 60, "the wave to be evicted")
        await _settled(engine, path, n + len(warm), mode)
        rss_before_full_gc = rss_bytes()
        gc.collect()
    rss1, blocks1 = settled_rss(), python_blocks()
    ctx.metrics.update(
        {
            f"{mode}_runs": n,
            f"{mode}_timer_runs": timers,
            f"{mode}_rss_per_run_bytes": (rss1 - rss0) / n,
            f"{mode}_blocks_per_run": (blocks1 - blocks0) / n,
            f"{mode}_live_actors": engine.live_actors(),
            f"{mode}_rss_total_bytes": rss1,
            f"{mode}_rss_per_run_before_full_gc_bytes": (rss_before_full_gc - rss0) / n,
            f"{mode}_start_per_s": n / starting.seconds,
            **gcw.freed_per_run(n, f"{mode}_"),
        }
    )
    ctx.checkpoint()
    disarm = ctx.exit_if_stuck(cfg["close_budget_s"], f"engine.close() with {n:,} {mode} runs")
    with Stopwatch() as closing:
        await engine.close()
    disarm()
    ctx.metrics[f"{mode}_close_s"] = closing.seconds
    # A service's restart: open the file again, with every run in it waiting.
    engine = ctx.engine(workflows=WORKFLOWS, path=path, idle_timeout=idle)
    with Stopwatch() as reopening:
        await engine.open()
    ctx.metrics[f"{mode}_reopen_s"] = reopening.seconds
    ctx.metrics[f"{mode}_live_after_reopen"] = engine.live_actors()
    await engine.close()


async def _settled(
    engine: af.Engine, path: Any, waiting: int, mode: str, until_ts: float | None = None
) -> None:
    """Until the database shows `waiting` runs waiting and, if evicting, none is in memory
    (or, with `until_ts`, that time has come)."""

    async def check() -> bool:
        evicting = until_ts is None or time.time() < until_ts
        if mode == "evicted" and evicting and engine.live_actors() != 0:
            return False
        sql = "SELECT count(*) FROM runs WHERE status='waiting'"
        return await asyncio.to_thread(db_count, path, sql) == waiting

    await until(check, 300, f"{waiting:,} runs to be waiting", interval=0.2)


async def _lateness_phase(cfg: dict[str, Any], ctx: Context, mode: str, idle: float | None) -> None:
    m = cfg["lateness_runs"]
    lead = cfg["lateness_lead_s"] or 3.0 + m / 1000
    path = ctx.db_path()
    _lateness.clear()
    async with ctx.engine(workflows=WORKFLOWS, path=path, idle_timeout=idle) as engine:
        for i in range(20):
            await (await engine.start(three_steps, i)).result()
        due = time.time() + lead
        log(
            f"  lateness, {mode}: {m:,} timers due within {cfg['lateness_window_s']:g} s, "
            f"{lead:.1f} s from now"
        )
        with Stopwatch() as starting:
            spread = cfg["lateness_window_s"] / m
            await asyncio.gather(*(engine.start(alarm, due + i * spread) for i in range(m)))
            # Evicted runs come back `wake_ahead` seconds before their timer, so "none
            # in memory" only holds until then.
            await _settled(engine, path, m, mode, until_ts=due - engine.wake_ahead)
        slack = due - time.time()
        if slack <= 0:
            ctx.note(
                f"lateness {mode}: runs were still starting when the first timer came due "
                f"({-slack:.2f} s late); raise waiting.lateness_lead_s"
            )
        await until(lambda: len(_lateness) >= m, 120 + lead, "every timer to fire")

        async def all_completed() -> bool:
            sql = "SELECT count(*) FROM runs WHERE status='completed' AND workflow=?"
            return bool(await asyncio.to_thread(db_count, path, sql, [alarm.name]) == m)

        # Close only once every run has finished: closing an engine while runs are
        # committing can fail (see the benchmark report).
        await until(all_completed, 120, "every run to complete", interval=0.1)
        await until(lambda: engine.live_actors() == 0, 60, "actors to leave", required=False)
    stats = summarize(_lateness, scale=1000.0)
    ctx.metrics.update(
        {
            f"lateness_{mode}_runs": m,
            f"lateness_{mode}_p50_ms": stats["p50"],
            f"lateness_{mode}_p90_ms": stats["p90"],
            f"lateness_{mode}_p99_ms": stats["p99"],
            f"lateness_{mode}_max_ms": stats["max"],
            f"lateness_{mode}_start_s": starting.seconds,
            f"lateness_{mode}_slack_s": slack,
        }
    )
