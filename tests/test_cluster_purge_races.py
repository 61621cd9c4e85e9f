"""A purge on one engine and a restart of the same finished run on another (an executing
engine, or a client recording it), on one PostgreSQL database: whichever the database
lets through first wins. Either the run is restarted, its log whole, and the purge
leaves it alone; or the purge deletes it and the restart raises (`InvalidStateError`
while it is being deleted, `RunNotFoundError` once it is gone), having written nothing.

Forced, not waited for: the test holds the run's row in a transaction until both the
purge's first batch and the restart's statement wait on it (PostgreSQL then lets them
through in that order). The run is large (three purge batches), and the purge is held
after its first batch, so the restart meets a run deleted in part."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import actorflow as af
from tests.conftest import eventually
from tests.databases import PostgresDatabase
from tests.test_cluster_races import held, waiting_on_run_row
from tests.test_purge_restart import Gate, _counts, _later, _wrap, doubles, streams

pytestmark = pytest.mark.postgres

CHUNKS = 2500  # three purge batches of at most 1,000 chunks


def _log(db: PostgresDatabase, run_id: str) -> list[tuple[Any, ...]]:
    return db.query(
        "SELECT idx, generation, kind FROM events WHERE run_id = ? ORDER BY idx", (run_id,)
    )


def _hold_after_first_batch(engine: af.Engine) -> Gate:
    """Hold `engine`'s purge after its first transaction that leaves a run in part."""
    gate = Gate()

    async def after_batch(batch: Any) -> None:
        if batch.partial and not gate.reached.is_set():
            await gate.hold()

    _wrap(engine.store, "purge_batch", after=after_batch)
    return gate


async def _restart_raced(
    db: PostgresDatabase, run_id: str, purger: af.Engine, restarter: af.Engine, purge_first: bool
) -> tuple[asyncio.Task[int], asyncio.Task[None]]:
    """Start the purge on `purger` and the restart on `restarter`, both waiting on the run's
    row (held by the test), in the order given; then let them go."""
    async with held(db.url, f"SELECT 1 FROM runs WHERE id = '{run_id}' FOR UPDATE"):
        first: asyncio.Task[Any]
        if purge_first:
            first = purge = asyncio.create_task(purger.purge(_later()))
        else:
            first = restart = asyncio.create_task(restarter.get_run(run_id).restart())
        await eventually(lambda: first.done() or waiting_on_run_row(db) == 1, timeout=10)
        assert not first.done()
        if purge_first:
            restart = asyncio.create_task(restarter.get_run(run_id).restart())
        else:
            purge = asyncio.create_task(purger.purge(_later()))
        await eventually(lambda: waiting_on_run_row(db) == 2, timeout=10)
    return purge, restart


@pytest.mark.parametrize("restarter_executes", [False, True], ids=["client", "engine"])
async def test_a_purge_that_takes_the_run_first_wins(pg_url: str, restarter_executes: bool) -> None:
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=[streams], lease_timeout=5) as purger,
        af.Engine(pg_url, workflows=[streams], execute=restarter_executes) as restarter,
    ):
        run = await purger.start(streams, CHUNKS)
        assert await run.result(timeout=30) == CHUNKS
        whole = _log(db, run.id)
        gate = _hold_after_first_batch(purger)
        purge, restart = await _restart_raced(db, run.id, purger, restarter, purge_first=True)
        await asyncio.wait_for(gate.reached.wait(), 10)
        with pytest.raises(af.InvalidStateError, match="being purged"):
            await asyncio.wait_for(restart, 10)
        runs, events, chunks = _counts(db, run.id)
        assert runs == 1 and events == 0 and 0 < chunks < CHUNKS  # deleted in part
        assert db.query("SELECT status, generation FROM runs WHERE id = ?", (run.id,)) == [
            ("completed", 0)
        ]
        with pytest.raises(af.InvalidStateError, match="being purged"):
            await restarter.get_run(run.id).restart()  # and so until it is gone
        gate.release()
        assert await asyncio.wait_for(purge, 30) == 1
        assert whole and _counts(db, run.id) == (0, 0, 0)
        with pytest.raises(af.RunNotFoundError):
            await restarter.get_run(run.id).restart()


async def test_a_restart_a_client_commits_first_wins(pg_url: str) -> None:
    """A client records the whole restart in one transaction: once it has the run's
    row, the run is unfinished for the purge (which an engine's restart is only once
    committed: see the next test)."""
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=[streams, doubles], lease_timeout=5) as purger,
        af.Engine(pg_url, workflows=[streams, doubles], execute=False) as restarter,
    ):
        run = await purger.start(doubles, 5)
        assert await run.result(timeout=30) == 10
        whole = _log(db, run.id)
        purge, restart = await _restart_raced(db, run.id, purger, restarter, purge_first=False)
        await asyncio.wait_for(restart, 10)
        # The restart committed first: the run was no longer finished when the purge's
        # batch got its row.
        assert await asyncio.wait_for(purge, 10) == 0
        assert await restarter.get_run(run.id).result(timeout=30) == 10
        log = _log(db, run.id)
        assert log[: len(whole)] == whole
        assert [k for _, g, k in log if g == 1][:1] == ["run_restarted"]
        assert log[-1][1:] == (1, "run_completed")


async def test_a_purge_beginning_after_an_engine_took_the_run_refuses_its_restart(
    pg_url: str,
) -> None:
    """The restarting engine took the run (it owns it) before the purge's first batch,
    which could still choose it (it is finished until the restart commits), and its
    restart commits after that batch: the fence refuses it (the purge raised the
    run's epoch), and the restart raises as if the purge had come first."""
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=[streams], lease_timeout=5) as purger,
        af.Engine(pg_url, workflows=[streams], lease_timeout=5) as restarter,
    ):
        run = await purger.start(streams, CHUNKS)
        assert await run.result(timeout=30) == CHUNKS
        gate = _hold_after_first_batch(purger)

        def marked() -> bool:
            found = db.query("SELECT purging FROM runs WHERE id = ?", (run.id,))
            return found == [(True,)]

        async def after_the_first_batch(run_id: str, *rest: Any) -> None:
            if run_id == run.id:
                await eventually(marked, timeout=10)

        # The restart reads the run's log only once the purge's first batch committed.
        _wrap(restarter.store, "load_events", before=after_the_first_batch)
        purge, restart = await _restart_raced(db, run.id, purger, restarter, purge_first=False)
        await asyncio.wait_for(gate.reached.wait(), 10)
        with pytest.raises(af.InvalidStateError, match="being purged"):
            await asyncio.wait_for(restart, 10)
        assert db.query(
            "SELECT count(*) FROM events WHERE run_id = ? AND generation > 0", (run.id,)
        ) == [(0,)]
        assert db.query("SELECT status, generation FROM runs WHERE id = ?", (run.id,)) == [
            ("completed", 0)
        ]
        gate.release()
        assert await asyncio.wait_for(purge, 30) == 1
        assert _counts(db, run.id) == (0, 0, 0)
