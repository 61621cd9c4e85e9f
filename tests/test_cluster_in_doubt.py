"""Many engines on one PostgreSQL database: a batch whose commit reached the server but
whose answer was lost with the writer's connection (in doubt) still tells the engine
which of its runs the fence refused, when the writer finds it committed."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

import actorflow as af
from actorflow._store._postgres import PostgresStore
from tests.conftest import eventually
from tests.databases import PostgresDatabase
from tests.test_cluster_routing import WORKFLOWS, collect

pytestmark = pytest.mark.postgres


async def test_refusals_in_a_batch_in_doubt_are_learned_when_it_is_found_committed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=5) as engine:
        first, kept, taken = [await engine.start(collect, 2) for _ in range(3)]
        ids = [first.id, kept.id, taken.id]

        def committed_waiting() -> bool:
            found = db.query(
                "SELECT count(*) FROM runs WHERE id = ANY(?) AND status = 'waiting'", (ids,)
            )
            return found == [(3,)]

        await eventually(committed_waiting, timeout=10)
        store = engine.store
        assert isinstance(store, PostgresStore)
        node = engine._runs.cluster
        assert node is not None

        # The writer's connection: its first commit (of `first`) is held while the next
        # batch fills with rows of `kept` and `taken`; that one commits, then the
        # connection drops before its answer is read.
        gate = asyncio.Event()
        commits: list[object] = []
        real_fetchrow = asyncpg.Connection.fetchrow

        async def fetchrow(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
            # Every commit (commit_batch or a one-statement batch) is a fetchrow on the
            # writer's connection; its warm-ups run only at connect, before this.
            if self is not store.transactions._conn:
                return await real_fetchrow(self, query, *args, **kw)
            commits.append(args)
            if len(commits) == 1:
                await gate.wait()
            found = await real_fetchrow(self, query, *args, **kw)
            if len(commits) == 2:
                self.terminate()
                raise ConnectionResetError("the answer of a commit that reached the server")
            return found

        monkeypatch.setattr(asyncpg.Connection, "fetchrow", fetchrow)
        held = asyncio.create_task(engine.send_event(first.id, "n", 0))
        await eventually(lambda: len(commits) == 1, timeout=10)
        # Another engine took `taken` (what a claim does) while this one was not looking.
        db.execute(
            f"UPDATE runs SET owner = 'someone-else', epoch = epoch + 1 WHERE id = '{taken.id}'"
        )
        to_taken = asyncio.create_task(engine.send_event(taken.id, "n", 0))
        to_kept = asyncio.create_task(engine.send_event(kept.id, "n", 0))

        def both_pending() -> bool:
            pending = {event.run_id for event in store.batch().events}
            return pending == {kept.id, taken.id}

        try:
            await eventually(both_pending, timeout=10)
        finally:
            gate.set()
        await asyncio.wait_for(held, 10)
        await asyncio.wait_for(to_kept, 20)  # committed: found so after the reconnect
        assert store.transactions.reconnects >= 1
        # The refusal is known now, not at the run's next commit.
        with pytest.raises(af.StoreWriteError):
            await asyncio.wait_for(to_taken, 20)
        assert not node.owns(taken.id)
        assert node.stats["refused"] == 1
        monkeypatch.undo()
        await engine.send_event(kept.id, "n", 1)
        assert await kept.result(timeout=10) == [0, 1]
    kinds = db.query(
        "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'event_received'", (taken.id,)
    )
    assert kinds == [(0,)]
