"""An executing engine in a process of its own, for the many-engines tests and benchmarks.

    python tests/cluster_program.py URL LEASE_TIMEOUT [MAX_RUNS]

It opens `af.Engine(URL, lease_timeout=LEASE_TIMEOUT)` (which joins the engines
sharing the database and claims runs), prints `ready <engine id>`, and runs until
SIGTERM (a clean close: its runs go back to the others) or SIGKILL / SIGSTOP from
the test. Every step attempt that starts appends `run_id seq attempt pid` to the
file named by $ACTORFLOW_SIDE_EFFECTS, if set: the record of which attempts ran where.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `actorflow` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actorflow as af


def _side_effect() -> None:
    path = os.environ.get("ACTORFLOW_SIDE_EFFECTS")
    if path:
        info = af.step_info()
        line = f"{info.run_id} {info.seq} {info.attempt} {os.getpid()}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@af.step(name="cluster.work")
async def work(i: int, pause: float) -> int:
    _side_effect()
    await asyncio.sleep(pause)
    return i


@af.workflow(name="cluster.job")
async def job(steps: int, pause: float) -> int:
    """`steps` steps of `pause` seconds each; the sum of 0..steps-1."""
    total = 0
    for i in range(steps):
        total += await work(i, pause)
    return total


@af.workflow(name="cluster.waiter")
async def waiter(count: int) -> list[int]:
    """Waits for `count` events `n`, each after a step; returns their payloads in order."""
    got = []
    for i in range(count):
        await work(i, 0.0)
        got.append(await af.wait_for_event("n"))
    return got


@af.workflow(name="cluster.sleeper")
async def sleeper(seconds: float) -> str:
    await af.sleep(seconds)
    await work(0, 0.0)
    return "woke"


@af.workflow(name="cluster.hold")
async def hold() -> str:
    """Waits for one event `go`, then takes a step."""
    got = await af.wait_for_event("go")
    await work(0, 0.0)
    return str(got)


@af.workflow(name="cluster.parent")
async def parent(children: int) -> int:
    """Starts `children` children (`cluster.job`s of 3 short steps) and sums their results."""
    runs = [await af.start(job, 3, 0.01) for _ in range(children)]
    total = 0
    for run in runs:
        total += await run.result()
    return total


async def main(url: str, lease_timeout: float, max_runs: int | None) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with af.Engine(url, lease_timeout=lease_timeout, max_runs=max_runs) as engine:
        cluster = engine._runs.cluster
        assert cluster is not None
        os.write(1, f"ready {cluster.engine_id}\n".encode())
        await stop.wait()
        stats = " ".join(f"{k}={v}" for k, v in cluster.stats.items())
        os.write(1, f"stats {stats}\n".encode())


if __name__ == "__main__":
    af.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None))
