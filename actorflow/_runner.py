"""`af.run(main())`: `asyncio.run` with actorflow's runtime defaults (uvloop, GC thresholds)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# A young collection scans every young object still alive, at about 0.3 to 0.5 µs each
# when thousands of runs are in flight (their objects are out of cache): the larger the
# first threshold, the more of a run's objects die before any scan sees them, and the
# longer the pause when one comes. 300,000 rather than 100,000 (docs/hot-path.md, the
# twelfth session): in the 10,000-run burst the loop's CPU per workflow -10 % (GC pauses
# 12.2 -> 6.4 % of the time); where the GC's total is the same (1,000 schedules firing
# every second) one pause of about 160 ms instead of three of up to 70.
GC_THRESHOLDS = (300_000, 50, 1000)


def tune_gc() -> None:
    """Set the cyclic garbage collector's thresholds for a process with many live runs.

    With CPython's defaults (700, 10, 10) the collector rescans the whole heap
    each time it grows by a quarter; with thousands of runs in flight, that
    rescanning costs more CPU than the runs themselves (see `benchmarks/`).
    These thresholds collect young objects every 300,000 allocations (of
    objects the collector tracks, net of those freed) and the old generation
    rarely. actorflow breaks its own reference cycles, so little garbage waits
    for a collection; an application's own cyclic garbage waits longer than
    with the defaults. Fewer, longer pauses: a collection among thousands of
    runs in flight can stop the loop for 100 to 200 ms; for shorter ones at
    some CPU, call `gc.set_threshold(100_000, 50, 1000)` after this. `af.run`
    calls this; call it yourself at start-up when you run the event loop
    another way.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None, tune: bool = True) -> T:
    """Run `main` to completion on a new event loop: uvloop when available and,
    unless `tune=False`, with `tune_gc()` applied.

    The engine works on any asyncio loop; these defaults make its hot path faster.
    """
    if tune:
        tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or uvloop not installed
        return asyncio.run(main, debug=debug)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop, debug=debug) as runner:
        return runner.run(main)
