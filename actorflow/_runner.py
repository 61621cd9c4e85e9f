"""`af.run(main())`: `asyncio.run` with actorflow's runtime defaults (uvloop, GC thresholds)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

GC_THRESHOLDS = (100_000, 50, 1000)


def tune_gc() -> None:
    """Set the cyclic garbage collector's thresholds for a process with many live runs.

    With CPython's defaults (700, 10, 10) the collector rescans the whole heap
    each time it grows by a quarter; with thousands of runs in flight, that
    rescanning costs more CPU than the runs themselves (see `benchmarks/`).
    These thresholds collect young objects every 100,000 allocations and the
    old generation rarely. actorflow breaks its own reference cycles, so little
    garbage waits for a full collection. `af.run` calls this; call it yourself
    at start-up when you run the event loop another way.
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
