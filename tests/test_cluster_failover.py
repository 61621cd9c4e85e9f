"""Many engines on one PostgreSQL database, in processes of their own: an engine killed
(SIGKILL) or paused past its lease (SIGSTOP) loses its runs to the others, which finish
them; nothing committed is done twice and no run is lost."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import actorflow as af
from tests.cluster_processes import EngineProcess, check_logs, wait_until
from tests.cluster_program import hold, job, parent, waiter
from tests.databases import PostgresDatabase

pytestmark = pytest.mark.postgres

LEASE = 1.0


@pytest.fixture
def engines(pg_url: str, tmp_path: Path) -> Iterator[list[EngineProcess]]:
    """Two executing engine processes on the test's schema."""
    started: list[EngineProcess] = []
    try:
        for _ in range(2):
            started.append(EngineProcess(pg_url, LEASE, side_effects=tmp_path / "effects"))
        yield started
    finally:
        for process in started:
            process.kill()  # the tests close the ones they read the counters of


def owned_by(db: PostgresDatabase, engine_id: str, status: str = "running") -> int:
    rows = db.query("SELECT count(*) FROM runs WHERE owner = ? AND status = ?", (engine_id, status))
    return int(rows[0][0])


async def test_runs_of_a_killed_engine_finish_on_the_other(
    pg_url: str, engines: list[EngineProcess]
) -> None:
    db = PostgresDatabase(pg_url)
    a, b = engines
    async with af.Engine(pg_url, execute=False, workflows=[job]) as client:
        runs = [await client.start(job, 10, 0.05) for _ in range(30)]
        ids = [run.id for run in runs]
        # Started by a client: queued, then claimed by both engines.
        await asyncio.to_thread(wait_until, lambda: owned_by(db, a.engine_id) > 0, 20)
        await asyncio.to_thread(wait_until, lambda: owned_by(db, b.engine_id) > 0, 20)
        a.kill()
        results = await asyncio.wait_for(asyncio.gather(*(r.result() for r in runs)), 60)
    assert results == [45] * 30
    check_logs(db, ids)
    taken = db.query("SELECT count(*) FROM runs WHERE id = ANY(?) AND epoch > 1", (ids,))
    assert taken[0][0] > 0  # some runs changed owner
    finished_by = {row[0] for row in db.query("SELECT owner FROM runs WHERE id = ANY(?)", (ids,))}
    assert b.engine_id in finished_by
    assert db.query("SELECT id FROM engines WHERE id = ?", (a.engine_id,)) == []
    assert b.close()["lost_leases"] == 0  # the survivor renewed its own lease throughout


async def test_an_engine_paused_past_its_lease_writes_nothing_to_the_runs_it_lost(
    pg_url: str, engines: list[EngineProcess], tmp_path: Path
) -> None:
    db = PostgresDatabase(pg_url)
    a, b = engines
    async with af.Engine(pg_url, execute=False, workflows=[job]) as client:
        runs = [await client.start(job, 20, 0.05) for _ in range(20)]
        ids = [run.id for run in runs]
        await asyncio.to_thread(wait_until, lambda: owned_by(db, a.engine_id) > 0, 20)
        a.signal(signal.SIGSTOP)
        # The other engine takes every run the paused one owned, and carries them on.
        await asyncio.to_thread(wait_until, lambda: owned_by(db, a.engine_id) == 0, 20)
        a.signal(signal.SIGCONT)
        results = await asyncio.wait_for(asyncio.gather(*(r.result() for r in runs)), 60)
    assert results == [190] * 20
    check_logs(db, ids)
    # The paused engine found its lease lost and joined again under a new id.
    live = {row[0] for row in db.query("SELECT id FROM engines")}
    assert a.engine_id not in live and b.engine_id in live and len(live) == 2
    assert a.proc.poll() is None
    assert a.close()["lost_leases"] == 1


async def test_events_and_child_outcomes_across_a_failover_arrive_once_and_in_order(
    pg_url: str, engines: list[EngineProcess]
) -> None:
    db = PostgresDatabase(pg_url)
    a = engines[0]
    async with af.Engine(pg_url, execute=False, workflows=[waiter, parent, job]) as client:
        waiting = [await client.start(waiter, 6) for _ in range(10)]
        parents = [await client.start(parent, 3) for _ in range(6)]
        await asyncio.to_thread(wait_until, lambda: owned_by(db, a.engine_id, "waiting") > 0, 20)
        for n in range(6):
            if n == 2:
                a.kill()  # messages sent from now on wait in the inbox for the new owner
            for run in waiting:
                await client.send_event(run.id, "n", n)
        results = await asyncio.wait_for(asyncio.gather(*(r.result() for r in waiting)), 60)
        sums = await asyncio.wait_for(asyncio.gather(*(r.result() for r in parents)), 60)
    assert results == [[0, 1, 2, 3, 4, 5]] * 10
    assert sums == [9] * 6  # each child returns 0 + 1 + 2
    children = [row[0] for row in db.query("SELECT id FROM runs WHERE parent_id IS NOT NULL")]
    check_logs(db, [*(r.id for r in waiting), *(r.id for r in parents), *children])
    assert db.query("SELECT count(*) FROM inbox") == [(0,)]


async def test_restarts_taken_from_the_inbox_across_a_kill_happen_once(
    pg_url: str, engines: list[EngineProcess]
) -> None:
    # The owner takes each restart from the inbox and deletes its row in the commit that
    # records the restart: killed at any point, each restart is done once, by it or by
    # the engine that takes the run over.
    db = PostgresDatabase(pg_url)
    a, _ = engines
    count = 120
    async with af.Engine(pg_url, execute=False, workflows=[hold]) as client:
        runs = [await client.start(hold) for _ in range(count)]
        ids = [run.id for run in runs]

        def all_waiting() -> bool:
            rows = db.query("SELECT count(*) FROM runs WHERE status = 'waiting'")
            return int(rows[0][0]) == count

        await asyncio.to_thread(wait_until, all_waiting, 30)
        mine = {row[0] for row in db.query("SELECT id FROM runs WHERE owner = ?", (a.engine_id,))}
        assert mine

        def restarted_on_a() -> bool:
            rows = db.query(
                "SELECT count(*) FROM events WHERE kind = 'run_restarted' AND run_id = ANY(?)",
                (list(mine),),
            )
            return int(rows[0][0]) >= len(mine) // 3

        sending = asyncio.gather(*(run.restart() for run in runs))
        await asyncio.to_thread(wait_until, restarted_on_a, 30)
        a.kill()
        await asyncio.wait_for(sending, 30)
        await asyncio.to_thread(
            wait_until, lambda: db.query("SELECT count(*) FROM inbox") == [(0,)], 30
        )
        for run in runs:
            await client.send_event(run.id, "go", run.id)
        results = await asyncio.wait_for(asyncio.gather(*(r.result() for r in runs)), 60)
    assert results == ids
    restarts = dict(
        db.query(
            "SELECT run_id, count(*) FROM events WHERE kind = 'run_restarted'"
            " AND run_id = ANY(?) GROUP BY run_id",
            (ids,),
        )
    )
    assert restarts == dict.fromkeys(ids, 1)
    generations = dict(db.query("SELECT id, generation FROM runs WHERE id = ANY(?)", (ids,)))
    assert generations == dict.fromkeys(ids, 1)
