"""Issue 15, item 20: finished runs are deleted by `engine.purge` and by retention, in
batches, keeping runs still referenced."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

import actorflow as af
from tests.conftest import eventually
from tests.databases import Database


def _later() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


@af.workflow(name="ret.echo")
async def ret_echo(x: Any) -> Any:
    return x


@af.workflow(name="ret.fails")
async def ret_fails() -> None:
    raise ValueError("no")


@af.workflow(name="ret.waits")
async def ret_waits() -> Any:
    return await af.wait_for_event("go")


@af.workflow(name="ret.parent")
async def ret_parent() -> Any:
    child = await af.start(ret_echo, "from child")
    value = await child.result()
    await af.wait_for_event("go")
    return value


@af.step(name="ret.chunks")
async def ret_chunks(n: int) -> int:
    writer = af.get_writable()
    for i in range(n):
        await writer.write(i)
    await writer.close()
    return n


@af.workflow(name="ret.streams")
async def ret_streams(n: int) -> int:
    return await ret_chunks(n)


async def _short() -> str:
    return "short"


async def _long() -> str:
    return "long"


# Not registered (an `@af.workflow(retention=...)` would be): every engine of the test
# session running every registered workflow would sweep for them.
ret_short = af.WorkflowFunction(
    _short, name="ret.short", concurrency=None, deadline=None, retention=0.1
)
ret_long = af.WorkflowFunction(
    _long, name="ret.long", concurrency=None, deadline=None, retention=3600
)
ALL = [ret_echo, ret_waits, ret_short, ret_long]


async def _ids(engine: af.Engine) -> set[str]:
    return {r.id for r in await engine.list_runs(limit=1000)}


async def test_purge_deletes_finished_runs_by_time_status_and_workflow(engine: af.Engine) -> None:
    done = await engine.start(ret_echo, 1, id="done")
    failed = await engine.start(ret_fails, id="failed")
    waiting = await engine.start(ret_waits, id="waiting")
    assert await done.result(timeout=5) == 1
    with pytest.raises(af.RunFailedError):
        await failed.result(timeout=5)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert await engine.purge(past) == 0  # nothing finished an hour ago
    assert await engine.purge(_later(), status="failed", workflow=ret_echo) == 0
    assert await engine.purge(_later(), status=[af.RunStatus.FAILED]) == 1
    assert await _ids(engine) == {"done", "waiting"}
    assert await engine.purge(_later(), workflow="ret.echo") == 1
    assert await _ids(engine) == {"waiting"}
    with pytest.raises(af.RunNotFoundError):
        await done.result(timeout=5)
    # The id is free again, with no rows of the old run left to collide with.
    again = await engine.start(ret_echo, 2, id="done")
    assert await again.result(timeout=5) == 2
    assert [e.kind for e in [e async for e in again.events()]][-1] == "run_completed"
    await waiting.send_event("go", "w")
    assert await waiting.result(timeout=5) == "w"


async def test_purge_refuses_unfinished_statuses(engine: af.Engine) -> None:
    with pytest.raises(ValueError, match="finished runs"):
        await engine.purge(_later(), status="running")
    with pytest.raises(ValueError, match="timezone-aware"):
        await engine.purge(dt.datetime.now())


async def test_purge_keeps_runs_still_referenced(engine: af.Engine) -> None:
    parent = await engine.start(ret_parent, id="parent")

    async def child_done() -> bool:
        runs = await engine.list_runs(status="completed")
        return any(r.id == "parent~0" for r in runs)

    await eventually(child_done)
    assert await engine.purge(_later()) == 0  # the child's parent is unfinished
    await parent.send_event("go")
    assert await parent.result(timeout=5) == "from child"
    assert await engine.purge(_later()) == 2
    assert await _ids(engine) == set()


def _rows(database: Database) -> dict[str, int]:
    return {
        t: database.query(f"SELECT count(*) FROM {t}")[0][0]
        for t in ("runs", "events", "chunks", "hooks")
    }


async def test_purge_deletes_large_runs_batch_by_batch(database: Database) -> None:
    async with af.Engine(database.url) as engine:
        runs = [await engine.start(ret_streams, 4500) for _ in range(3)]
        for run in runs:
            assert await run.result(timeout=30) == 4500
        kept = await engine.start(ret_waits)
        before = _rows(database)
        assert before["chunks"] == 3 * 4501  # more than two batches' worth
        assert await engine.purge(_later()) == 3
        after = _rows(database)
        assert after["runs"] == 1 and after["chunks"] == 0
        log = [e async for e in _first(kept.events(), 2)]
        # SQLite does not store a plain run_created (the run's row implies it).
        assert after["events"] == len(log) - (database.kind == "sqlite")
        await kept.send_event("go", 1)
        assert await kept.result(timeout=5) == 1


async def _first(events: Any, n: int) -> Any:
    """The first `n` entries of a run's `events()` (a waiting run's log does not end)."""
    async for event in events:
        yield event
        n -= 1
        if n == 0:
            return


async def test_retention_deletes_finished_runs_in_the_background(store_url: str) -> None:
    async with af.Engine(store_url, retention="150ms", workflows=ALL) as engine:
        quick = await engine.start(ret_echo, 1)
        short = await engine.start(ret_short)
        long = await engine.start(ret_long)
        waiting = await engine.start(ret_waits)
        for run in (quick, short, long):
            await run.result(timeout=5)

        async def swept() -> bool:
            return await _ids(engine) == {long.id, waiting.id}

        await eventually(swept, timeout=10)
        await waiting.send_event("go", 1)
        assert await waiting.result(timeout=5) == 1


async def test_a_workflow_retention_applies_without_an_engine_default(store_url: str) -> None:
    async with af.Engine(store_url, workflows=ALL) as engine:
        short = await engine.start(ret_short)
        echo = await engine.start(ret_echo, 1)
        await short.result(timeout=5)
        await echo.result(timeout=5)

        async def swept() -> bool:
            return await _ids(engine) == {echo.id}

        await eventually(swept, timeout=10)


def test_retention_options_are_checked() -> None:
    with pytest.raises(ValueError, match="retention"):
        af.Engine("memory://", retention="forever")
    with pytest.raises(ValueError, match="workflow retention"):
        af.workflow(retention=-1)


async def test_runs_go_on_while_a_purge_deletes(durable_url: str) -> None:
    """Purge transactions run beside the group commit's commits (SQLite: between them):
    runs started during a purge all finish, and the purge deletes exactly the old ones."""
    async with af.Engine(durable_url) as engine:
        old = await engine.start_many(ret_echo, [(i,) for i in range(1500)])
        assert [await r.result(timeout=30) for r in old] == list(range(1500))
        cutoff = _later()
        purge = asyncio.create_task(engine.purge(cutoff, workflow=ret_echo))
        new = []
        while not purge.done() or len(new) < 50:
            new.append(await engine.start(ret_waits))
            await new[-1].send_event("go", len(new))
        assert await purge == 1500
        assert [await r.result(timeout=5) for r in new] == list(range(1, len(new) + 1))
        assert await _ids(engine) == {r.id for r in new}
