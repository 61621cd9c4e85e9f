"""memory: RSS kept per completed run (and that completed runs leave memory), and per
run in flight (its step still running). Each phase runs in a process of its own.

RSS is read after a full garbage collection. Python rarely gives freed memory
back to the OS, so completed runs go in waves (bounded concurrency) after a
warm-up wave of the same size: RSS growth then shows what is *kept*, and the
count of Python objects still allocated (`sys.getallocatedblocks`) confirms it
without the allocator's noise. In-flight runs are measured after only a tiny
warm-up, so that freed memory does not hide what they take.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import actorflow as af

from .common import Context, GcWatch, Metric, log, python_blocks, settled_rss, until
from .shapes import three_steps

DESCRIPTION = "RSS per completed run and per in-flight run"
PHASES = ("completed", "inflight")
DEFAULTS = {
    "phases": ",".join(PHASES),
    "completed_runs": 20_000,
    "wave": 1000,
    "inflight_runs": 5000,
}
QUICK = {**DEFAULTS, "completed_runs": 300, "wave": 100, "inflight_runs": 100}
TABLE = [
    Metric("rss_per_completed_run_bytes", "RSS kept per completed run", "bytes"),
    Metric("blocks_per_completed_run", "Python objects kept per completed run", ""),
    Metric("live_actors_after_completed", "live actors after all completed", "", ("<", 1)),
    Metric("gc_freed_per_run", "objects per run only the cyclic GC freed", ""),
    Metric("rss_per_inflight_run_bytes", "RSS per in-flight run", "bytes"),
    Metric("blocks_per_inflight_run", "Python objects per in-flight run", ""),
    Metric("live_actors_after_inflight", "live actors after in-flight ones finished", "", ("<", 1)),
]

_gate: asyncio.Event | None = None
_entered = 0


@af.step(name="bench.memory.hold")
async def hold(x: int) -> int:
    global _entered
    _entered += 1
    assert _gate is not None
    await _gate.wait()
    return x


@af.workflow(name="bench.memory.held")
async def held(x: int) -> int:
    return await hold(x)


async def run(cfg: dict[str, Any], ctx: Context, phase: str) -> None:
    async with ctx.engine(workflows=[three_steps, held]) as engine:
        if phase == "completed":
            await _completed(cfg, ctx, engine)
        else:
            await _inflight(cfg, ctx, engine)


async def _completed(cfg: dict[str, Any], ctx: Context, engine: af.Engine) -> None:
    n, wave = cfg["completed_runs"], cfg["wave"]
    await _waves(engine, wave, wave)  # warm-up: allocator arenas, caches, code paths
    rss0, blocks0 = settled_rss(), python_blocks()
    log(f"  {n:,} completed runs in waves of {wave:,}")
    with GcWatch() as gcw:
        await _waves(engine, n, wave)
        await until(lambda: engine.live_actors() == 0, 30, "actors to leave", required=False)
        gc.collect()
    rss1, blocks1 = settled_rss(), python_blocks()
    ctx.metrics.update(
        completed_runs=n,
        rss_per_completed_run_bytes=(rss1 - rss0) / n,
        blocks_per_completed_run=(blocks1 - blocks0) / n,
        live_actors_after_completed=engine.live_actors(),
        **gcw.freed_per_run(n),
    )


async def _inflight(cfg: dict[str, Any], ctx: Context, engine: af.Engine) -> None:
    global _gate, _entered
    await _waves(engine, 20, 20)  # warm-up, small: freed memory would hide what runs take
    m = cfg["inflight_runs"]
    log(f"  {m:,} runs in flight (step running)")
    _gate, _entered = asyncio.Event(), 0
    rss0, blocks0 = settled_rss(), python_blocks()
    runs = await asyncio.gather(*(engine.start(held, i) for i in range(m)))
    await until(lambda: _entered == m, 120, "every step to start")
    rss1, blocks1 = settled_rss(), python_blocks()
    live = engine.live_actors()
    _gate.set()
    await asyncio.gather(*(r.result() for r in runs))
    await until(lambda: engine.live_actors() == 0, 60, "actors to leave", required=False)
    ctx.metrics.update(
        inflight_runs=m,
        live_actors_inflight=live,
        rss_per_inflight_run_bytes=(rss1 - rss0) / m,
        blocks_per_inflight_run=(blocks1 - blocks0) / m,
        live_actors_after_inflight=engine.live_actors(),
    )


async def _waves(engine: af.Engine, n: int, wave: int) -> None:
    for start in range(0, n, wave):
        count = min(wave, n - start)
        runs = await asyncio.gather(*(engine.start(three_steps, i) for i in range(count)))
        await asyncio.gather(*(r.result() for r in runs))
