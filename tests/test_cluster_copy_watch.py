"""Many engines on one PostgreSQL database: a large batch sends its events by COPY, after
the statement that fences the batch and notifies for its other rows (run updates,
chunks); the notification for the copied events comes from a statement after the COPY.
A reader of the run on another engine receives them on that notification: here a batch
of events alone (a step's end and the next one's start), after which the run writes
nothing until the test lets it, and the reader's own sweep (every `lease_timeout * 2`
seconds, two minutes here) is far later than the test waits."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

import actorflow as af
from actorflow._store._postgres import PostgresStore, split_url
from tests.conftest import eventually, wait_for_status
from tests.databases import PostgresDatabase

pytestmark = pytest.mark.postgres

_GATES: dict[str, asyncio.Event] = {}


@af.step(name="tests.cluster.copy_watch.double")
async def double(x: int) -> int:
    return 2 * x


@af.step(name="tests.cluster.copy_watch.held")
async def held(gate: str, x: int) -> int:
    await _GATES[gate].wait()
    return x


@af.workflow(name="tests.cluster.copy_watch.two_steps")
async def two_steps(gate: str) -> int:
    x = await af.wait_for_event("go")
    return await held(gate, await double(x))


async def test_a_reader_elsewhere_receives_events_written_by_copy(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = PostgresDatabase(pg_url)
    gate = _GATES["copied"] = asyncio.Event()
    async with (
        af.Engine(pg_url, workflows=[two_steps], lease_timeout=5) as owner,
        af.Engine(pg_url, execute=False, lease_timeout=60) as client,
    ):
        run = await owner.start(two_steps, "copied")
        await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
        kinds: list[str] = []

        async def read() -> None:
            async for event in client.get_run(run.id).events():
                kinds.append(event.kind)

        reader = asyncio.create_task(read())
        await eventually(lambda: "wait_started" in kinds, timeout=10)
        assert db.query("SELECT watched FROM runs WHERE id = ?", (run.id,)) == [(True,)]

        # Every batch with an event goes by COPY from now on.
        store = owner.store
        assert isinstance(store, PostgresStore)
        transactions = store.transactions
        copied: list[list[str]] = []
        write_with_copy = transactions._write_with_copy

        async def spied(conn: Any, parts: Any, events: list[Any], hooks: Any) -> Any:
            copied.append([event[4] for event in events if event[1] == run.id])  # kinds
            return await write_with_copy(conn, parts, events, hooks)

        monkeypatch.setattr(transactions, "_copy_rows", 1)
        monkeypatch.setattr(transactions, "_write_with_copy", spied)
        notified: list[str] = []
        dsn, schema = split_url(pg_url)
        listener = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        await listener.add_listener("actorflow_watch", lambda *a: notified.append(str(a[3])))
        try:
            await owner.send_event(run.id, "go", 21)
            # The held step has started: the batch of the first step's end and its start
            # (events alone) is the run's last commit until the gate opens.
            await eventually(lambda: kinds.count("step_started") == 2, timeout=10)
            assert ["step_completed", "step_started"] in copied
            assert db.query(
                "SELECT count(*) FROM runs WHERE id = ? AND status = 'running'", (run.id,)
            ) == [(1,)]
            await listener.fetchval("SELECT 1")  # what was sent before reaches it first
            assert any(run.id in n.split() for n in notified)
            gate.set()
            assert await asyncio.wait_for(client.get_run(run.id).result(), 10) == 42
            await asyncio.wait_for(reader, 10)
        finally:
            gate.set()
            reader.cancel()
            await listener.close()
            del _GATES["copied"]
        assert kinds[-2:] == ["step_completed", "run_completed"]
