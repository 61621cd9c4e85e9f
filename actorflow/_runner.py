"""`af.run(main())`: `asyncio.run` with actorflow's runtime defaults (uvloop, GC thresholds)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# A young collection scans every young object still alive, at about 0.3 µs each when
# thousands of runs are in flight (their objects are out of cache): the larger the first
# threshold, the more of a run's objects die before any scan sees them. 300,000 rather
# than 100,000: in the 10,000-run burst, GC pauses 12.2 -> 6.4 % of the time and the
# loop's CPU per workflow -10 % (5 interleaved rounds); a pause that does come scans up
# to three times as many objects (longest pause in a 30,000-run burst 84 -> 150 ms).
# 1,000,000 saved more in that burst (-18 %, no collection at all) but made a single
# pause of 230 to 430 ms in the 30,000-run one.
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
    with the defaults. `af.run` calls this; call it yourself at start-up when
    you run the event loop another way.
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
