"""floors: what this machine and asyncio allow at best, with no engine at all.

Two numbers that bound the `throughput` workload from below, whatever the
engine does:

- the speed-up a second thread gives when both threads run C code that has
  released the GIL (zlib compression): on a machine with two fully separate
  cores it is 2.0; well below that, a writer thread and the event loop slow
  each other down even when they share no lock;
- a bare asyncio 3-step "workflow" as the `throughput` workload shapes it
  (one task per workflow, one task per step, a future per step result, all
  started and awaited with `gather`), journaling nothing: the event loop CPU per
  workflow that asyncio's own tasks and futures cost. Compare with throughput's
  `event loop thread CPU per workflow`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import zlib
from typing import Any

from .common import Context, Metric, log

DESCRIPTION = "bounds from the machine and asyncio, no engine (reference)"
DEFAULTS = {"seconds": 1.0, "runs": 10_000, "rounds": 3}
QUICK = {"seconds": 0.1, "runs": 300, "rounds": 1}
TABLE = [
    Metric("second_thread_speedup", "speed-up of a 2nd thread (C code, GIL released)", "x"),
    Metric("bare_asyncio_us_per_run", "bare asyncio 3-step workflow, loop CPU", "us"),
    Metric("bare_asyncio_runs_per_s", "bare asyncio 3-step workflows", "/s"),
]

_DATA = os.urandom(1 << 16) * 8  # 512 KiB: one compression takes milliseconds


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    seconds = float(cfg["seconds"])
    one = await asyncio.to_thread(_compressions, 1, seconds)
    two = await asyncio.to_thread(_compressions, 2, seconds)
    log(f"  zlib: {one / seconds:,.0f}/s in one thread, {two / seconds:,.0f}/s in two")
    n = int(cfg["runs"])
    cpu = wall = 0.0
    for _ in range(int(cfg["rounds"])):
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        tasks = await asyncio.gather(*(_start(i) for i in range(n)))
        results = await asyncio.gather(*tasks)
        cpu += time.thread_time() - cpu0
        wall += time.perf_counter() - wall0
        assert results == [i + 3 for i in range(n)], "wrong results"
    runs = n * int(cfg["rounds"])
    ctx.metrics.update(
        second_thread_speedup=two / one,
        bare_asyncio_us_per_run=cpu * 1e6 / runs,
        bare_asyncio_runs_per_s=runs / wall,
    )


def _compressions(threads: int, seconds: float) -> int:
    """zlib compressions done by `threads` threads together in `seconds`."""
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def work(slot: int) -> None:
        while time.perf_counter() < deadline:
            zlib.compress(_DATA, 6)
            counts[slot] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts)


async def _step(x: int) -> int:
    return x + 1


async def _attempt(future: asyncio.Future[int], x: int) -> None:
    future.set_result(await _step(x))


async def _workflow(x: int) -> int:
    loop = asyncio.get_running_loop()
    for _ in range(3):
        future = loop.create_future()
        attempt = loop.create_task(_attempt(future, x))
        x = await future
        await attempt
    return x


async def _start(x: int) -> asyncio.Task[int]:
    return asyncio.get_running_loop().create_task(_workflow(x))
