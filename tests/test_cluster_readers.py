"""Many engines on one PostgreSQL database: a local reader (`result()`, `events()`) of a run
that moves to another engine after it began reading keeps receiving."""

from __future__ import annotations

import asyncio

import pytest

import actorflow as af
from tests.conftest import eventually, wait_for_status
from tests.databases import PostgresDatabase
from tests.test_cluster_routing import WORKFLOWS, collect

pytestmark = pytest.mark.postgres


async def test_a_reader_follows_a_run_that_moved_to_another_engine(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS, max_runs=1, lease_timeout=2) as first,
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=2) as second,
    ):
        run = await first.start(collect, 1)
        await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
        kinds: list[str] = []

        async def read() -> None:
            async for event in first.get_run(run.id).events():
                kinds.append(event.kind)

        reader = asyncio.create_task(read())
        result = asyncio.create_task(first.get_run(run.id).result(timeout=30))
        await eventually(lambda: "wait_started" in kinds, timeout=10)
        # The run is handed to the queue (as a lapsed owner's runs are): the second engine
        # claims it, the first (full, and unaware) does not.
        db.execute(f"UPDATE runs SET owner = NULL, epoch = epoch + 1 WHERE id = '{run.id}'")
        db.execute("NOTIFY actorflow_claim")
        second_node = second._runs.cluster
        assert second_node is not None
        await eventually(lambda: second_node.owns(run.id), timeout=10)
        # The first engine learns it lost the run from its next commit, which is refused.
        with pytest.raises(af.StoreWriteError):
            await first.send_event(run.id, "n", 0)
        first_node = first._runs.cluster
        assert first_node is not None and not first_node.owns(run.id)
        # Sent from the first engine, journaled by the second: the first's readers see it.
        await first.send_event(run.id, "n", 1)
        assert await asyncio.wait_for(result, 20) == [1]
        await asyncio.wait_for(reader, 20)
        assert kinds[-2:] == ["event_received", "run_completed"]
        assert kinds.count("event_received") == 1
