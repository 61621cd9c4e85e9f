"""Engines joining and leaving a shared PostgreSQL database: a lapsed lease stops the
engine's actors and it rejoins under a new id; a clean close hands its runs to the
others at once; clients and `max_runs`; schedules fired by any engine, once per tick."""

from __future__ import annotations

import asyncio

import pytest

import actorflow as af
from actorflow import _definitions as definitions
from tests.conftest import eventually, wait_for_status
from tests.databases import PostgresDatabase
from tests.test_cluster_routing import WORKFLOWS, collect

pytestmark = pytest.mark.postgres


def cluster_of(engine: af.Engine):  # type: ignore[no-untyped-def]
    cluster = engine._runs.cluster
    assert cluster is not None
    return cluster


async def test_a_lapsed_lease_stops_the_actors_and_the_engine_rejoins(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=1) as engine:
        cluster = cluster_of(engine)
        first = cluster.engine_id
        run = await engine.start(collect, 1)
        await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
        assert engine.live_actors() == 1
        # The database's clock says the lease lapsed (as after a long pause).
        db.execute(
            f"UPDATE engines SET heartbeat_at = now() - interval '1 hour' WHERE id = '{first}'"
        )
        await eventually(lambda: cluster.engine_id != first, timeout=10)
        assert cluster.stats["lost_leases"] == 1
        # It took its own runs back, under its new id, at a new epoch.
        await eventually(lambda: cluster.owns(run.id), timeout=10)
        owner, epoch = db.query("SELECT owner, epoch FROM runs WHERE id = ?", (run.id,))[0]
        assert (owner, epoch) == (cluster.engine_id, 2)
        await engine.send_event(run.id, "n", 7)
        assert await run.result(timeout=10) == [7]


async def test_a_closed_engine_hands_its_runs_to_the_others_at_once(pg_url: str) -> None:
    async with af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=60) as staying:
        async with af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=60) as leaving:
            runs = [await leaving.start(collect, 1) for _ in range(3)]
            for run in runs:
                await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
        # Without waiting for its 60 s lease: the runs went back to the queue at close.
        await eventually(lambda: all(cluster_of(staying).owns(r.id) for r in runs), timeout=10)
        for i, run in enumerate(runs):
            await staying.send_event(run.id, "n", i)
        assert [await staying.get_run(r.id).result(timeout=10) for r in runs] == [[0], [1], [2]]


async def test_max_runs_leaves_the_rest_queued_for_an_engine_with_room(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=WORKFLOWS, max_runs=2) as narrow:
        runs = [await narrow.start(collect, 1) for _ in range(5)]
        await eventually(lambda: len(cluster_of(narrow).owned) == 2, timeout=10)
        queued = db.query("SELECT count(*) FROM runs WHERE owner IS NULL AND status = 'queued'")
        assert queued == [(3,)]
        for i, run in enumerate(runs[:2]):
            await narrow.send_event(run.id, "n", i)
        # Room freed: the engine takes queued runs as its own finish.
        await eventually(lambda: len(cluster_of(narrow).owned) == 2 and all(
            not cluster_of(narrow).owns(r.id) for r in runs[:2]), timeout=10)  # fmt: skip
        async with af.Engine(pg_url, workflows=WORKFLOWS) as wide:
            for i, run in enumerate(runs[2:]):
                await wide.send_event(run.id, "n", i)
            results = [await wide.get_run(r.id).result(timeout=20) for r in runs]
    assert results == [[0], [1], [0], [1], [2]]


async def test_clients_and_max_runs_need_a_shared_store(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="execute=False and max_runs"):
        af.Engine("memory://", execute=False)
    with pytest.raises(ValueError, match="execute=False and max_runs"):
        af.Engine("memory://", max_runs=3)


async def test_every_engine_fires_a_declared_schedule_and_each_tick_runs_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A registry of this test's own: other tests' engines run every registered workflow.
    monkeypatch.setattr(definitions, "_registry", dict(definitions.registered_workflows()))

    @af.workflow(name="tests.cluster.ticked", schedules=["* * * * * *"])
    async def ticked() -> str:
        return af.workflow_info().run_id

    db = PostgresDatabase(pg_url)

    def completed() -> int:
        rows = db.query(
            "SELECT count(*) FROM runs WHERE workflow = ? AND status = 'completed'", (ticked.name,)
        )
        return int(rows[0][0])

    async with (
        af.Engine(pg_url, workflows=[ticked]) as one,
        af.Engine(pg_url, workflows=[ticked]) as other,
    ):
        await eventually(lambda: completed() >= 3, timeout=15)
        fired = [cluster_of(e).stats for e in (one, other)]
    ticks = sorted(
        row[0] for row in db.query("SELECT id FROM runs WHERE workflow = ?", (ticked.name,))
    )
    assert len(ticks) == len(set(ticks)) >= 3  # one run per tick (its id names the tick)
    assert all(s["refused"] == 0 for s in fired)
    # Each run ran once: one run_created and one run_completed each.
    kinds = db.query(
        "SELECT kind, count(*) FROM events WHERE run_id = ANY(?) GROUP BY kind", (ticks,)
    )
    assert dict(kinds)["run_created"] == dict(kinds)["run_completed"] == len(ticks)


async def test_the_watches_of_a_gone_engine_are_dropped_with_their_marks(pg_url: str) -> None:
    """An engine that crashed leaves its `watches` rows and the marks they put on runs
    (every commit to a marked run notifies its watchers). Once the engine is found gone,
    its rows are dropped, and a run's mark with the last of them; a live watch stays."""
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=60) as owner,
        af.Engine(pg_url, execute=False, lease_timeout=60) as client,
    ):
        followed, other = [await owner.start(collect, 1) for _ in range(2)]
        for run in (followed, other):
            await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
        result = asyncio.create_task(client.get_run(followed.id).result(timeout=30))
        watched = "SELECT watched FROM runs WHERE id = ?"
        await eventually(lambda: db.query(watched, (followed.id,)) == [(True,)], timeout=10)
        for run in (followed, other):
            db.execute(f"INSERT INTO watches VALUES ('{run.id}', 'crashed-engine')")
        db.execute(f"UPDATE runs SET watched = true WHERE id = '{other.id}'")
        cluster_of(owner)._dead_seen()  # as when a lease is found lapsed
        gone = "SELECT count(*) FROM watches WHERE engine = 'crashed-engine'"
        await eventually(lambda: db.query(gone) == [(0,)], timeout=10)
        assert db.query(watched, (other.id,)) == [(False,)]
        assert db.query(watched, (followed.id,)) == [(True,)], "the client still follows it"
        await owner.send_event(followed.id, "n", 5)
        assert await asyncio.wait_for(result, 10) == [5]
