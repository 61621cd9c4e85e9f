"""Rehydration and replay: recorded results are returned, not recomputed; divergence fails.

These tests reopen a SQLite file in the same process (the SIGKILL variants live
in test_crash_recovery.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import actorflow as af

from .conftest import eventually
from .databases import Database

ran: Counter[str] = Counter()
gates: dict[str, asyncio.Event] = {}


@af.step
async def replay_record(tag: str) -> str:
    ran[tag] += 1
    return tag.upper()


@af.step
async def replay_gate(key: str) -> str:
    ran[key] += 1
    await gates[key].wait()
    return key


@af.workflow
async def replay_flow(key: str) -> list[str]:
    a = await replay_record(key + "-a")
    b, c = await asyncio.gather(replay_record(key + "-b"), replay_record(key + "-c"))
    gate = await replay_gate(key + "-gate")
    d = await replay_record(key + "-d")
    return [a, b, c, gate, d]


@af.workflow(name="replay.diverging")
async def replay_v1(key: str) -> str:
    await replay_record(key + "-1")
    await replay_gate(key + "-gate")
    return "v1"


async def replay_v2_fn(key: str) -> str:
    await replay_record(key + "-1")
    await replay_record(key + "-changed")
    return "v2"


replay_v2 = af.WorkflowFunction(replay_v2_fn, name="replay.diverging", concurrency=None,
                                deadline=None)  # fmt: skip


def db_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def test_reopened_engine_continues_without_rerunning_steps(database: Database) -> None:
    key = f"resume-{database.kind}"
    gates[key + "-gate"] = asyncio.Event()
    durable_url = database.url
    async with af.Engine(durable_url) as engine:
        run = await engine.start(replay_flow, key, id="resume-run")
        await eventually(lambda: ran[key + "-gate"] == 1)
    assert [ran[key + s] for s in ("-a", "-b", "-c", "-d")] == [1, 1, 1, 0]
    gates[key + "-gate"].set()
    async with af.Engine(durable_url) as engine:
        run = engine.get_run("resume-run")
        upper = key.upper()
        expected = [f"{upper}-A", f"{upper}-B", f"{upper}-C", f"{key}-gate", f"{upper}-D"]
        assert await run.result(timeout=5) == expected
    assert [ran[key + s] for s in ("-a", "-b", "-c", "-gate", "-d")] == [1, 1, 1, 2, 1]
    counts = database.query(
        "SELECT seq, COUNT(*) FROM events WHERE run_id=? AND kind='step_completed'"
        " GROUP BY seq ORDER BY seq",
        ("resume-run",),
    )
    started = database.query(
        "SELECT data FROM events WHERE run_id=? AND kind='step_started' AND seq=3 ORDER BY idx",
        ("resume-run",),
    )
    assert counts == [(i, 1) for i in range(5)], "one committed result per step"
    assert [row[0] for row in started] == [b'{"attempt":1}', b'{"attempt":2}']


async def test_changed_workflow_code_fails_with_non_determinism(database: Database) -> None:
    key, durable_url = f"diverge-{database.kind}", database.url
    gates[key + "-gate"] = asyncio.Event()
    async with af.Engine(durable_url, workflows=[replay_v1]) as engine:
        run = await engine.start(replay_v1, key, id="diverging-run")
        await eventually(lambda: ran[key + "-gate"] == 1)
    async with af.Engine(durable_url, workflows=[replay_v2]) as engine:
        run = engine.get_run("diverging-run")
        with pytest.raises(af.RunFailedError) as caught:
            await run.result(timeout=5)
    assert caught.value.error.type == "NonDeterminismError"
    assert "position 1" in caught.value.error.message
    assert "replay_record" in caught.value.error.message
    assert ran[key + "-changed"] == 0, "the diverging step never ran"
    assert ran[key + "-1"] == 1, "the recorded step was not run again"


@af.step
def replay_read_db(path: str, run_id: str) -> list[Any]:
    with sqlite3.connect(path) as db:
        return [
            [seq, bytes(data).decode()]
            for seq, data in db.execute(
                "SELECT seq, data FROM events WHERE run_id=? AND kind='step_completed'"
                " ORDER BY idx",
                (run_id,),
            )
        ]


@af.workflow
async def replay_observe_commits(path: str) -> list[Any]:
    run_id = af.workflow_info().run_id
    first = await replay_record("observed")
    seen = await replay_read_db(path, run_id)
    return [first, seen]


async def test_step_result_is_committed_before_the_workflow_continues(sqlite_url: str) -> None:
    async with af.Engine(sqlite_url) as engine:
        run = await engine.start(replay_observe_commits, db_path(sqlite_url))
        first, seen = await run.result(timeout=5)
        assert first == "OBSERVED"
        assert seen == [[0, '"OBSERVED"']], "the first result was durable when step 2 ran"
        with sqlite3.connect(db_path(sqlite_url)) as db:
            status = db.execute("SELECT status FROM runs WHERE id=?", (run.id,)).fetchone()
        assert status == ("completed",), "result() resolves only after the completion commit"


async def test_group_commit_batches_many_runs(durable_url: str) -> None:
    async with af.Engine(durable_url) as engine:
        before = engine.store_stats()
        runs = await asyncio.gather(*(engine.start(replay_flow, f"batch{i}") for i in range(200)))
        for i in range(200):
            gates[f"batch{i}-gate"] = asyncio.Event()
            gates[f"batch{i}-gate"].set()
        results = await asyncio.gather(*(r.result(timeout=10) for r in runs))
        assert all(len(r) == 5 for r in results)
        after = engine.store_stats()
        batches = after.batches - before.batches
        rows = after.rows - before.rows
    assert rows >= 200 * 12
    assert rows / batches > 5, f"{rows} rows in {batches} batches: commits were not grouped"


@af.workflow
async def replay_uses_asyncio_sleep() -> None:
    await asyncio.sleep(0.01)


@af.workflow
async def replay_awaits_real_io() -> None:
    await asyncio.get_running_loop().create_future()


@af.workflow
async def replay_awaits_foreign_future(future: Any = None) -> None:
    await foreign["future"]


foreign: dict[str, Any] = {}


async def test_timers_and_foreign_awaits_in_workflow_code_fail_clearly(
    engine: af.Engine,
) -> None:
    run = await engine.start(replay_uses_asyncio_sleep)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "WorkflowSandboxError"
    assert "af.sleep" in caught.value.error.message
    foreign["future"] = asyncio.get_running_loop().create_future()
    run = await engine.start(replay_awaits_foreign_future)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "WorkflowSandboxError"
    assert "@af.step" in caught.value.error.message


async def test_a_second_engine_cannot_open_the_same_file(sqlite_url: str, tmp_path: Path) -> None:

    async with af.Engine(sqlite_url):
        with pytest.raises(af.StoreLockedError):
            async with af.Engine(sqlite_url):
                pass
    async with af.Engine(sqlite_url) as engine:
        assert await engine.list_runs() is not None


@af.workflow
async def replay_two_steps(x: int) -> int:
    return len(await replay_record(f"close-{x}")) + x


async def test_closing_with_commits_in_flight_loses_nothing(durable_url: str) -> None:
    async with af.Engine(durable_url) as engine:
        runs = [await engine.start(replay_two_steps, i) for i in range(2000)]
    async with af.Engine(durable_url) as engine:
        results = await asyncio.gather(*(engine.get_run(r.id).result(timeout=30) for r in runs))
    assert results == [len(f"close-{i}") + i for i in range(2000)]


@af.workflow(name="replay.call_soon")
async def call_soon_flow(key: str) -> list[str]:
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(seen.append, "kept")
    cancelled = loop.call_soon(seen.append, "cancelled")
    cancelled.cancel()
    assert cancelled.cancelled()
    seen.append(await replay_record(key))
    return seen


async def test_callbacks_scheduled_in_workflow_code_run_in_order_unless_cancelled(
    engine: af.Engine,
) -> None:
    """The sandbox's `call_soon` hands back a cheap handle, not an asyncio.Handle: its
    `cancel()` must still keep the callback from running."""
    run = await engine.start(call_soon_flow, "soon")
    assert await run.result(timeout=5) == ["kept", "SOON"]
