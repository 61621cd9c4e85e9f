"""A purge and a restart of the same finished run, raced deterministically: whichever
comes first wins, and the run's log is never left partial (whole, or gone).

The race is held open at the real store's own calls: the purge after its first
transaction (a large run takes several), the restart when it reads the run's log."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import actorflow as af
from tests.databases import Database


@af.step(name="purge_restart.chunks")
async def write_chunks(n: int) -> int:
    writer = af.get_writable()
    for i in range(n):
        await writer.write(i)
    await writer.close()
    return n


@af.workflow(name="purge_restart.streams")
async def streams(n: int) -> int:
    return await write_chunks(n)


@af.step(name="purge_restart.double")
async def double(x: int) -> int:
    return 2 * x


@af.workflow(name="purge_restart.doubles")
async def doubles(x: int) -> int:
    return await double(x)


def _later() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


def _counts(database: Database, run_id: str) -> tuple[int, int, int]:
    """The run's rows: (runs, events, chunks)."""
    return tuple(  # type: ignore[return-value]
        database.query(f"SELECT count(*) FROM {table} WHERE {key} = ?", (run_id,))[0][0]
        for table, key in (("runs", "id"), ("events", "run_id"), ("chunks", "run_id"))
    )


class Gate:
    """Holds a wrapped store call until `release()`: `reached` is set when one is held."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._open = asyncio.Event()

    def release(self) -> None:
        self._open.set()

    async def hold(self) -> None:
        self.reached.set()
        await self._open.wait()


def _wrap(
    target: Any,
    name: str,
    before: Callable[..., Awaitable[None]] | None = None,
    after: Callable[..., Awaitable[None]] | None = None,
) -> None:
    call = getattr(target, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            await before(*args)
        value = await call(*args, **kwargs)
        if after is not None:
            await after(value)
        return value

    setattr(target, name, wrapped)


async def test_a_restart_of_a_run_being_purged_is_refused(database: Database) -> None:
    async with af.Engine(database.url) as engine:
        run = await engine.start(streams, 2500)  # chunks: three purge transactions
        assert await run.result(timeout=30) == 2500
        gate = Gate()

        async def after_batch(batch: Any) -> None:
            if batch.partial and not gate.reached.is_set():
                await gate.hold()

        _wrap(engine.store, "purge_batch", after=after_batch)
        purge = asyncio.create_task(engine.purge(_later()))
        await asyncio.wait_for(gate.reached.wait(), 10)
        runs, events, chunks = _counts(database, run.id)
        assert runs == 1 and events == 0 and 0 < chunks < 2501  # deleted in part

        with pytest.raises(af.InvalidStateError, match="being purged"):
            await run.restart()

        gate.release()
        assert await purge == 1
        assert _counts(database, run.id) == (0, 0, 0)
        with pytest.raises(af.RunNotFoundError):
            await run.restart()


async def test_a_purge_leaves_alone_a_run_being_restarted(store_url: str) -> None:
    async with af.Engine(store_url) as engine:
        run = await engine.start(doubles, 3)
        assert await run.result(timeout=10) == 6
        gate = Gate()

        async def before_load(run_id: str, *rest: Any) -> None:
            if run_id == run.id and not gate.reached.is_set():
                await gate.hold()

        _wrap(engine.store, "load_events", before=before_load)
        restart = asyncio.create_task(run.restart())
        await asyncio.wait_for(gate.reached.wait(), 10)

        assert await engine.purge(_later()) == 0

        gate.release()
        await asyncio.wait_for(restart, 10)
        assert await run.result(timeout=10) == 6
        kinds = [(e.generation, e.kind) async for e in run.events(follow=False)]
        ends = [k for k in kinds if k[1] in ("run_completed", "run_restarted")]
        assert ends == [(0, "run_completed"), (1, "run_restarted"), (1, "run_completed")]
        steps = [k for k in kinds if k[1] == "step_completed"]
        assert steps == [(0, "step_completed"), (1, "step_completed")]
        assert await engine.purge(_later()) == 1
        with pytest.raises(af.RunNotFoundError):
            await run.status()


async def test_a_refused_restart_leaves_the_run_to_purges(store_url: str) -> None:
    async with af.Engine(store_url) as engine:
        run = await engine.start(doubles, 3)
        assert await run.result(timeout=10) == 6
        with pytest.raises(af.InvalidStateError, match="no step named"):
            await run.restart(from_step="nope")
        assert await engine.purge(_later()) == 1
