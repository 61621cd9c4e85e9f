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
  `event loop thread CPU per workflow`;
- the least a *durable* 3-step workflow can cost: the bare workflow above that
  also journals actorflow's own 8 event rows (harvested from a real run, as
  `limit` does) at the points actorflow commits them (a step starts once its
  `step_started` row is committed; its result is committed with the next
  step's start), through one minimal group commit on aiosqlite (one
  transaction per batch, everything pending at each round). No actors, no
  replay, no run rows, no checks: an engine built on tasks can only be slower.
  Its events/s as a % of `limit`'s ceiling bounds what actorflow can reach on
  this machine;
- the same durable workflow with no task at all (the hand-driven floor): its
  coroutine and its steps' coroutines are driven by hand (`send`), and each
  commit calls the run back, as far below asyncio's tasks and futures as
  Python code can go. What any engine written in Python could reach here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from actorflow._ids import new_run_id

from .common import Context, Metric, log
from .limit import INSERT_EVENT, harvest, open_events_db

DESCRIPTION = "bounds from the machine and asyncio, no engine (reference)"
DEFAULTS = {"seconds": 1.0, "runs": 10_000, "rounds": 3}
QUICK = {"seconds": 0.1, "runs": 300, "rounds": 1}
TABLE = [
    Metric("second_thread_speedup", "speed-up of a 2nd thread (C code, GIL released)", "x"),
    Metric("bare_asyncio_us_per_run", "bare asyncio 3-step workflow, loop CPU", "us"),
    Metric("bare_asyncio_runs_per_s", "bare asyncio 3-step workflows", "/s"),
    Metric("durable_floor_us_per_run", "durable floor: 3-step workflow, loop CPU", "us"),
    Metric("durable_floor_runs_per_s", "durable floor: 3-step workflows", "/s"),
    Metric("durable_floor_events_per_s", "durable floor: events committed", "/s"),
    Metric("hand_floor_us_per_run", "hand-driven floor (no tasks): loop CPU", "us"),
    Metric("hand_floor_runs_per_s", "hand-driven floor: 3-step workflows", "/s"),
    Metric("hand_floor_events_per_s", "hand-driven floor: events committed", "/s"),
]

_DATA = os.urandom(1 << 16) * 8  # 512 KiB: one compression takes milliseconds


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    seconds = float(cfg["seconds"])
    one = await asyncio.to_thread(_compressions, 1, seconds)
    two = await asyncio.to_thread(_compressions, 2, seconds)
    log(f"  zlib: {one:,.0f}/s in one thread, {two:,.0f}/s in two")
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
    await _durable_floor(cfg, ctx)


# The rows a real run journals, by index (SQLite stores no plain `run_created`, entry 0).
Template = dict[int, tuple[Any, ...]]
Starter = Callable[["_GroupCommit", Template, int], Awaitable[list[int]]]


async def _durable_floor(cfg: dict[str, Any], ctx: Context) -> None:
    rows, schema = await harvest(ctx)
    template = {row[1]: row for row in rows}
    floors: list[tuple[str, Starter]] = [
        ("durable_floor", _start_tasks),
        ("hand_floor", _start_by_hand),
    ]
    for prefix, start in floors:
        n, rounds = int(cfg["runs"]), int(cfg["rounds"])
        cpu, wall, events = await _measure(start, template, schema, n, rounds, ctx.db_path(prefix))
        assert events == n * rounds * len(template), "rows missing"
        ctx.metrics[f"{prefix}_us_per_run"] = cpu * 1e6 / (n * rounds)
        ctx.metrics[f"{prefix}_runs_per_s"] = n * rounds / wall
        ctx.metrics[f"{prefix}_events_per_s"] = events / wall


async def _measure(
    start: Starter, template: Template, schema: str, n: int, rounds: int, path: Path
) -> tuple[float, float, int]:
    """Loop CPU and wall seconds of `rounds` rounds of `n` workflows, and the rows stored."""
    db = await open_events_db(path, schema)
    try:
        commit = _GroupCommit(db)
        writer = asyncio.get_running_loop().create_task(commit.run())
        cpu = wall = 0.0
        try:
            for _ in range(rounds):
                cpu0, wall0 = time.thread_time(), time.perf_counter()
                results = await _unless_failed(start(commit, template, n), writer)
                cpu += time.thread_time() - cpu0
                wall += time.perf_counter() - wall0
                assert results == [i + 3 for i in range(n)], "wrong results"
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        (events,) = await (await db.execute("SELECT count(*) FROM events")).fetchone()  # type: ignore[misc]
    finally:
        await db.close()
    return cpu, wall, events


async def _unless_failed(work: Awaitable[list[int]], writer: asyncio.Task[None]) -> list[int]:
    """`work`'s result, or the writer's error if it fails first: the runs would wait for
    their commits forever."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, writer}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.result()
        raise AssertionError("the writer stopped")
    return task.result()


class _GroupCommit:
    """The least a group commit does: every row pending at each round, one transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.rows: list[tuple[Any, ...]] = []
        self.waiters: list[tuple[Callable[[Any], object], Any]] = []
        self.pending = asyncio.Event()

    def add(self, rows: list[tuple[Any, ...]], callback: Callable[[Any], object], arg: Any) -> None:
        """Commit `rows` with the next batch, then call `callback(arg)`."""
        self.rows += rows
        self.waiters.append((callback, arg))
        self.pending.set()

    async def committed(self, rows: list[tuple[Any, ...]]) -> None:
        """Commit `rows` with the next batch; return once they are durable."""
        done = asyncio.get_running_loop().create_future()
        self.add(rows, done.set_result, None)
        await done

    async def run(self) -> None:
        while True:
            await self.pending.wait()
            self.pending.clear()
            rows, waiters, self.rows, self.waiters = self.rows, self.waiters, [], []
            await self.db.execute("BEGIN")
            await self.db.executemany(INSERT_EVENT, rows)
            await self.db.execute("COMMIT")
            for callback, arg in waiters:
                callback(arg)


def _row(template: Template, run_id: str, idx: int, data: bytes | None) -> tuple[Any, ...]:
    """Row `idx` of `template` (kind, name, payload shape) for the run `run_id`."""
    _, _, generation, kind, seq, name, _, _ = template[idx]
    return (run_id, idx, generation, kind, seq, name, data, time.time())


def _first_rows(template: Template, run_id: str) -> list[tuple[Any, ...]]:
    """What actorflow commits before the first step runs: the run's start and the step's."""
    return [_row(template, run_id, idx, template[idx][6]) for idx in (0, 1) if idx in template]


def _step_rows(template: Template, run_id: str, step: int, x: int) -> list[tuple[Any, ...]]:
    """Step `step`'s result `x`, with what follows it: the next step's start, or the run's end."""
    result = orjson.dumps(x)
    after = template[3][6] if step < 2 else result
    return [
        _row(template, run_id, 2 * step + 2, result),
        _row(template, run_id, 2 * step + 3, after),
    ]


async def _durable_workflow(commit: _GroupCommit, template: Template, x: int) -> int:
    """The 3-step workflow journaling `template`'s rows for a run of its own, committed in
    actorflow's groups: created + first start, then each step's result with what follows it."""
    run_id = new_run_id()
    loop = asyncio.get_running_loop()
    await commit.committed(_first_rows(template, run_id))
    for step in range(3):
        future = loop.create_future()
        attempt = loop.create_task(_attempt(future, x))
        x = await future
        await attempt
        await commit.committed(_step_rows(template, run_id, step, x))
    return x


async def _start_durable(commit: _GroupCommit, template: Template, x: int) -> asyncio.Task[int]:
    return asyncio.get_running_loop().create_task(_durable_workflow(commit, template, x))


async def _start_tasks(commit: _GroupCommit, template: Template, n: int) -> list[int]:
    tasks = await asyncio.gather(*(_start_durable(commit, template, i) for i in range(n)))
    return await asyncio.gather(*tasks)


class _StepCall:
    """What the hand-driven workflow awaits: the driver runs `fn(arg)` and sends its result."""

    __slots__ = ("arg", "fn")

    def __init__(self, fn: Callable[[int], Coroutine[Any, Any, int]], arg: int) -> None:
        self.fn = fn
        self.arg = arg

    def __await__(self) -> Generator[_StepCall, int, int]:
        return (yield self)


async def _hand_workflow(x: int) -> int:
    for _ in range(3):
        x = await _StepCall(_step, x)
    return x


class _HandDrivenRun:
    """One run of the hand-driven floor: no task, no future; each commit calls it back."""

    __slots__ = ("call", "commit", "coro", "done", "results", "run_id", "step", "template")

    def __init__(
        self, commit: _GroupCommit, template: Template, x: int, done: Callable[[int], None]
    ) -> None:
        self.commit = commit
        self.template = template
        self.run_id = new_run_id()
        self.step = 0
        self.done = done
        self.coro = _hand_workflow(x)
        self.call: _StepCall = self.coro.send(None)
        commit.add(_first_rows(template, self.run_id), _HandDrivenRun.run_step, self)

    def run_step(self) -> None:
        """The step's `step_started` row is durable: run it, and commit its result."""
        step_coro = self.call.fn(self.call.arg)
        try:
            step_coro.send(None)
        except StopIteration as stop:
            value: int = stop.value
        else:
            raise AssertionError("the floor's steps never wait")
        rows = _step_rows(self.template, self.run_id, self.step, value)
        self.commit.add(rows, _HandDrivenRun.resume, (self, value))

    @staticmethod
    def resume(arg: tuple[_HandDrivenRun, int]) -> None:
        """The step's result is durable: the workflow sees it."""
        self, value = arg
        self.step += 1
        try:
            self.call = self.coro.send(value)
        except StopIteration as stop:
            self.done(stop.value)
            return
        self.run_step()


async def _start_by_hand(commit: _GroupCommit, template: Template, n: int) -> list[int]:
    results: list[int] = []
    all_done = asyncio.get_running_loop().create_future()

    def done(value: int) -> None:
        results.append(value)
        if len(results) == n:
            all_done.set_result(None)

    for i in range(n):
        _HandDrivenRun(commit, template, i, done)
    await all_done
    return sorted(results)


def _compressions(threads: int, seconds: float) -> float:
    """zlib compressions per second done by `threads` threads together for about `seconds`.

    Each thread does at least one, and the rate is over the time they took: on a loaded
    machine a thread may start after the deadline, or one compression outlast it (a
    count in a fixed window was 0 there)."""
    counts = [0] * threads
    start = time.perf_counter()
    deadline = start + seconds

    def work(slot: int) -> None:
        while True:
            zlib.compress(_DATA, 6)
            counts[slot] += 1
            if time.perf_counter() >= deadline:
                return

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - start)


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
