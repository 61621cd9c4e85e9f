"""Many engines on one PostgreSQL database: control of runs no engine owns (finished or
queued) from a client, as on one engine."""

from __future__ import annotations

import pytest

import actorflow as af
from tests.conftest import wait_for_status
from tests.databases import PostgresDatabase
from tests.test_cluster_routing import WORKFLOWS, child, hooked

pytestmark = pytest.mark.postgres


def _kinds(db: PostgresDatabase, run_id: str) -> list[tuple[int, str]]:
    return db.query("SELECT generation, kind FROM events WHERE run_id = ? ORDER BY idx", (run_id,))


def check_generations(db: PostgresDatabase, run_id: str) -> None:
    """The run's log has no hole, and no step completed twice in one generation."""
    rows = db.query(
        "SELECT idx, generation, kind, seq FROM events WHERE run_id = ? ORDER BY idx", (run_id,)
    )
    assert [idx for idx, *_ in rows] == list(range(len(rows)))
    done = [(g, seq) for _, g, kind, seq in rows if kind == "step_completed"]
    assert len(done) == len(set(done)), done


async def test_a_client_restarts_a_finished_run(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=2) as worker,
        af.Engine(pg_url, workflows=WORKFLOWS, execute=False) as client,
    ):
        run = client.get_run((await worker.start(child, 4)).id)
        assert await run.result(timeout=10) == 40
        with pytest.raises(af.InvalidStateError, match="no step named 'nope'"):
            await run.restart(from_step="nope")
        with pytest.raises(af.InvalidStateError, match="cannot pause"):
            await run.pause()
        with pytest.raises(af.InvalidStateError, match="cannot terminate"):
            await run.terminate()
        await run.resume()  # a no-op, as on one engine
        assert _kinds(db, run.id)[-1] == (0, "run_completed")

        await run.restart()
        # Recorded by the client, run by the worker: a second generation, run once.
        assert await run.result(timeout=10) == 40
        await wait_for_status(run, af.RunStatus.COMPLETED, timeout=10)
        kinds = _kinds(db, run.id)
        assert [k for g, k in kinds if g == 1] == [
            "run_restarted", "step_started", "step_completed", "run_completed"
        ]  # fmt: skip
        assert kinds.count((0, "step_completed")) == 1

        # From a step: its result is run again, what came before is kept (none here).
        await run.restart(from_step="tests.cluster.slow")
        await wait_for_status(run, af.RunStatus.COMPLETED, timeout=10)
        assert next(k for g, k in _kinds(db, run.id) if g == 2) == "run_restarted"
        owner, status, generation = db.query(
            "SELECT owner, status, generation FROM runs WHERE id = ?", (run.id,)
        )[0]
        assert (owner, status, generation) == (worker._runs.cluster.engine_id, "completed", 2)  # type: ignore[union-attr]
        check_generations(db, run.id)


async def test_a_client_restarts_a_finished_run_no_engine_runs_yet(pg_url: str) -> None:
    # No executing engine is open: the restart waits queued, and the first one takes it.
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=2) as worker:
        run_id = (await worker.start(child, 2)).id
        assert await worker.get_run(run_id).result(timeout=10) == 20
    async with af.Engine(pg_url, workflows=WORKFLOWS, execute=False) as client:
        await client.get_run(run_id).restart()
        assert db.query("SELECT owner, status FROM runs WHERE id = ?", (run_id,)) == [
            (None, "running")
        ]
        async with af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=2):
            await wait_for_status(client.get_run(run_id), af.RunStatus.COMPLETED, timeout=10)
    assert [k for g, k in _kinds(db, run_id) if g == 1][-1] == "run_completed"
    check_generations(db, run_id)


async def test_a_client_controls_a_queued_run(pg_url: str) -> None:
    # Messages for a run no engine has claimed yet wait in the inbox for its first owner.
    async with af.Engine(pg_url, workflows=WORKFLOWS, execute=False) as client:
        run = await client.start(hooked, "queued-tok")
        paused = await client.start(hooked, "queued-tok-2")
        ended = await client.start(hooked, "queued-tok-3")
        assert await run.status() == af.RunStatus.QUEUED
        await paused.pause()
        await ended.terminate()
        async with af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=2):
            await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
            await client.resume_hook("queued-tok", "hi")
            assert await run.result(timeout=10) == "hi"
            with pytest.raises(af.RunTerminatedError):
                await ended.result(timeout=10)
            await wait_for_status(paused, af.RunStatus.PAUSED, timeout=10)
            await paused.resume()
            await wait_for_status(paused, af.RunStatus.WAITING, timeout=10)
            await client.resume_hook("queued-tok-2", 2)
            assert await paused.result(timeout=10) == 2
