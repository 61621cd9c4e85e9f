"""What only the PostgreSQL store has: its schema's versions, its URL, and a server that
goes away (a dropped connection, a restart) while runs are in flight.

(Everything else runs on PostgreSQL through the store-parametrized tests.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import asyncpg
import pytest

import actorflow as af
from actorflow._store import ChunkKind, ChunkRow, EventRow, HookRow, RunRow, WriteBatch
from actorflow._store import _postgres_schema as postgres_schema
from actorflow._store._postgres import PostgresStore, split_url
from actorflow._store._postgres_schema import SCHEMA_VERSION
from actorflow._store._postgres_statements import Parts
from tests.conftest import eventually, with_query
from tests.databases import PostgresDatabase
from tests.pg_cluster import Cluster

pytestmark = pytest.mark.postgres


@af.step(name="tests.postgres.add")
async def add(x: int, n: int) -> int:
    await asyncio.sleep(0.002)
    return x + n


@af.workflow(name="tests.postgres.chain")
async def chain(x: int) -> int:
    for n in range(5):
        x = await add(x, n)
    return x


def check_logs(db: PostgresDatabase, runs: list[str], steps: int = 5) -> None:
    """Every run completed once, with a gap-free log and one result per step."""
    status = dict(db.query("SELECT id, status FROM runs"))
    assert {run_id: status.get(run_id) for run_id in runs} == dict.fromkeys(runs, "completed")
    idxs: dict[str, list[int]] = {}
    for run_id, idx in db.query("SELECT run_id, idx FROM events ORDER BY run_id, idx"):
        idxs.setdefault(run_id, []).append(idx)
    for run_id in runs:
        assert idxs[run_id] == list(range(len(idxs[run_id]))), f"{run_id}'s log has a hole"
    results = Counter(db.query("SELECT run_id, seq FROM events WHERE kind = 'step_completed'"))
    assert len(results) == steps * len(runs) and max(results.values()) == 1


async def test_a_newer_schema_is_refused_and_an_older_one_migrated(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[chain]) as engine:
        run = await engine.start(chain, 1)
        assert await run.result(timeout=10) == 11
    versions = [(n,) for n in range(1, SCHEMA_VERSION + 1)]
    assert db.query("SELECT version FROM schema_version ORDER BY version") == versions
    newer = SCHEMA_VERSION + 1
    db.execute(f"INSERT INTO schema_version VALUES ({newer})")
    with pytest.raises(af.StoreSchemaError, match=f"version {newer}, written by a newer"):
        async with af.Engine(pg_url):
            pass
    db.execute(f"DELETE FROM schema_version WHERE version = {newer}")
    async with af.Engine(pg_url) as engine:  # the same schema opens again, runs intact
        assert await engine.get_run(run.id).result(timeout=5) == 11


@af.workflow(name="tests.postgres.hooked")
async def hooked(token: str) -> object:
    return await af.create_hook(token)


async def test_a_version_2_schema_is_migrated_with_its_hooks(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 3 wraps version 2's commit function (hook tokens locked before they are
    checked), version 4 gives schedules a version, version 5 marks followed runs: a
    database written by version 2 opens, and its hooks hold."""
    db = PostgresDatabase(pg_url)
    dsn, schema = split_url(pg_url)
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", postgres_schema.MIGRATIONS[:2])
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", 2)
    conn = await asyncpg.connect(dsn)
    try:
        await postgres_schema.migrate(conn, schema)
    finally:
        await conn.close()
    monkeypatch.undo()
    db.execute("INSERT INTO hooks VALUES ('kept', 'its-holder', 0)")
    async with af.Engine(pg_url, workflows=[hooked]) as engine:
        assert db.query("SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
        refused = await engine.start(hooked, "kept")
        with pytest.raises(af.RunFailedError, match="HookConflictError"):
            await refused.result(timeout=10)
        fresh = await engine.start(hooked, "fresh")
        await eventually(lambda: db.query("SELECT run_id FROM hooks WHERE token = 'fresh'"), 10)
        await engine.resume_hook("fresh", "after the migration")
        assert await fresh.result(timeout=10) == "after the migration"


async def test_a_schema_holding_another_applications_tables_is_refused(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    db.execute(f'CREATE SCHEMA "{db.schema}"; CREATE TABLE "{db.schema}".orders (id int)')
    with pytest.raises(af.StoreSchemaError, match=r"tables that are not actorflow's.*orders"):
        async with af.Engine(pg_url):
            pass
    assert db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                    (db.schema,)) == [("orders",)]  # fmt: skip


def test_urls_name_the_schema_and_pass_the_rest_to_asyncpg() -> None:
    dsn, schema = split_url("postgres://u:p@h:5/db?schema=mine&synchronous_commit=off")
    assert (dsn, schema) == ("postgresql://u:p@h:5/db?synchronous_commit=off", "mine")
    assert split_url("postgresql://h/db")[1] == "actorflow"
    with pytest.raises(ValueError, match="plain identifier"):
        af.Engine("postgresql://h/db?schema=a;drop")
    assert isinstance(af.Engine("postgres://h/db").store, PostgresStore)


# Steps of round n wait for GATES[n]: the test ends the connections, then opens a gate.
GATES: dict[int, asyncio.Event] = {}


@af.step(name="tests.postgres.gated_add")
async def gated_add(x: int, n: int) -> int:
    await GATES[n].wait()
    return x + n


@af.workflow(name="tests.postgres.gated_chain")
async def gated_chain(x: int) -> int:
    for n in range(3):
        x = await gated_add(x, n)
    return x


async def test_the_engine_gets_its_connections_back_when_the_server_drops_them(
    pg_url: str,
) -> None:
    """The server ends the store's connections (the writer's and the readers') while
    runs are in flight, three times: the writer reconnects each time, every run
    completes, and no step result is lost or written twice."""
    db = PostgresDatabase(pg_url)
    GATES.update((n, asyncio.Event()) for n in range(3))
    async with af.Engine(pg_url, workflows=[gated_chain]) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        runs = [await engine.start(gated_chain, i) for i in range(100)]
        for n in range(3):
            ended = db.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name = 'actorflow'"
            )
            assert len(ended) >= 2, "the writer's connection and a reader's"
            GATES[n].set()  # the steps of this round end: their results must be written
            await eventually(lambda n=n: store.transactions.reconnects > n, timeout=10)
        results = await asyncio.gather(*(run.result(timeout=30) for run in runs))
        assert await engine.list_runs(status="completed", limit=200)  # a reader is back
    assert results == [i + 3 for i in range(100)]
    check_logs(db, [run.id for run in runs], steps=3)


@pytest.fixture
def own_server() -> Iterator[Cluster]:
    """A server of this test's own, to restart."""
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_runs_in_flight_survive_a_server_restart(own_server: Cluster, mode: str) -> None:
    """The server stops (`fast`: a clean shutdown; `immediate`: as if it crashed) and comes
    back while hundreds of runs are in flight: nothing committed is lost, every run
    completes, and no step's result is written twice."""
    url = with_query(own_server.url, f"schema=s_{uuid.uuid4().hex[:8]}")
    db = PostgresDatabase(url)
    async with af.Engine(url, workflows=[chain]) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        runs = [await engine.start(chain, i) for i in range(300)]
        await eventually(lambda: engine.store_stats().rows > 600)
        await asyncio.to_thread(own_server.stop, mode)
        await asyncio.to_thread(own_server.start)
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        assert store.transactions.reconnects >= 1
        listed = await engine.list_runs(status="completed", limit=1000)  # readers came back
    assert results == [i + 10 for i in range(300)]
    assert len(listed) == 300
    check_logs(db, [run.id for run in runs])


@pytest.mark.parametrize("copy_rows", [0, 1_000_000], ids=["copy", "one-statement"])
async def test_a_batch_written_either_way_leaves_the_events_of_taken_ids_out(
    pg_url: str, copy_rows: int
) -> None:
    """Large batches send their events by COPY, small ones in the one statement: either way
    a creation whose id was taken writes none of its rows, and the others all of theirs."""
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[chain]) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        store.transactions._copy_rows = copy_rows
        first = await engine.start(chain, 1, id="taken")
        assert await first.result(timeout=10) == 11
        await eventually(lambda: engine.live_actors() == 0)  # the next start meets the store
        again, *runs = await asyncio.gather(
            engine.start(chain, 2, id="taken"), *(engine.start(chain, i) for i in range(50))
        )
        assert await again.result(timeout=10) == 11, "the run that held the id, not a new one"
        results = await asyncio.gather(*(run.result(timeout=30) for run in runs))
    assert results == [i + 10 for i in range(50)]
    created = db.query(
        "SELECT count(*) FROM events WHERE run_id = 'taken' AND kind = 'run_created'"
    )
    assert created == [(1,)]
    check_logs(db, ["taken", *(run.id for run in runs)])


async def test_each_part_of_a_batch_is_written_whatever_else_the_batch_holds(
    pg_url: str,
) -> None:
    """A batch is one statement of the parts it has, except when two parts touch the same
    rows (they would see the rows as they were before the statement), a run both created
    and updated, or when it takes hook tokens (checked after they are locked). Those go
    through commit_batch, whose statements run in order. Either way every row ends as
    the batch says."""
    db = PostgresDatabase(pg_url)
    store = PostgresStore(pg_url)
    await store.open()
    try:
        batch = store.batch()
        batch.create_run(RunRow("old", "w", "running", b"[]", 1.0), [])
        await store.commit()

        # One statement: a taken id, a new run, events of both, a chunk.
        batch = store.batch()
        batch.create_run(RunRow("old", "w", "running", b"[]", 2.0), [_event("old", 0)])
        batch.create_run(RunRow("new", "w", "running", b"[]", 2.0), [_event("new", 0)])
        batch.events.append(_event("old", 0, kind="step_started"))
        batch.chunks.append(ChunkRow("old", "out", 0, 1, 1, ChunkKind.JSON, b"1", 2.0))
        await store.commit()
        assert batch.conflicts == {"old"}
        assert db.query("SELECT run_id, kind FROM events ORDER BY run_id") == [
            ("new", "run_created"),
            ("old", "step_started"),
        ]
        assert db.query("SELECT run_id FROM chunks") == [("old",)]

        # commit_batch: a run updated in the batch that creates it; a hook taken and
        # dropped (its run finished) in one batch.
        batch = store.batch()
        created = RunRow("later", "w", "running", b"[]", 3.0)
        batch.create_run(created, [_event("later", 0)])
        batch.seal()
        finished = created.copy()
        finished.status = "completed"
        batch.update_run(finished)
        batch.hooks.append(HookRow("other", "new", 1))
        batch.hook_deletes.extend(["new", "old"])
        await store.commit()
        assert db.query("SELECT status FROM runs WHERE id = 'later'") == [("completed",)]
        assert db.query("SELECT token FROM hooks") == []
    finally:
        await store.close()


def _event(run_id: str, idx: int, kind: str = "run_created") -> EventRow:
    return EventRow(run_id, idx, 0, kind, None, None, None, 2.0)


@pytest.mark.parametrize("path", ["one-statement", "commit_batch"])
async def test_a_fenced_out_writers_batch_is_refused_either_way(
    pg_url: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one statement fences as commit_batch does: the rows of runs owned elsewhere or
    at a raised epoch (a takeover), and of a creation carrying one of their rows, are
    refused and reported; the rest commits. A writer whose lease lapsed has every run
    refused and leaves the runs it creates to the live engines (no owner)."""
    if path == "commit_batch":
        monkeypatch.setattr(Parts, "needs_function", lambda self: True)
    db = PostgresDatabase(pg_url)
    store = PostgresStore(pg_url)
    await store.open()
    try:
        batch = store.batch()
        for run_id in ("mine", "moved", "theirs"):
            batch.create_run(RunRow(run_id, "w", "running", b"[]", 1.0), [_event(run_id, 0)])
        await store.commit()
        db.execute("INSERT INTO engines (id, lock_key, execute, lease_timeout)"
                   " VALUES ('me', 1, true, 60)")  # fmt: skip
        db.execute("UPDATE runs SET owner = 'me', epoch = 1")
        db.execute("UPDATE runs SET epoch = 2 WHERE id = 'moved'")
        db.execute("UPDATE runs SET owner = 'other' WHERE id = 'theirs'")

        def fence(batch: WriteBatch) -> tuple[str, list[str], list[int]]:
            ids = sorted(batch.run_ids() - {row.id for row, _ in batch.new_runs})
            return "me", ids, [1] * len(ids)

        store.transactions.fence = fence
        batch = store.batch()
        for run_id in ("mine", "moved", "theirs"):
            batch.events.append(_event(run_id, 1, kind="step_started"))
            done = RunRow(run_id, "w", "completed", b"[]", 1.0)
            batch.run_updates[run_id] = done.update_params()
        # A child started by a refused run goes with it; a run of its own commits.
        child = RunRow("child", "w", "running", b"[]", 2.0, parent_id="theirs")
        batch.create_run(child, [_event("child", 0), _event("theirs", 2, kind="child_started")])
        batch.create_run(RunRow("fresh", "w", "running", b"[]", 2.0), [_event("fresh", 0)])
        await store.commit()
        assert batch.refused == {"moved", "theirs", "child"}
        assert batch.conflicts == set()
        assert db.query("SELECT run_id, idx FROM events ORDER BY run_id, idx") == [
            ("fresh", 0), ("mine", 0), ("mine", 1), ("moved", 0), ("theirs", 0)
        ]  # fmt: skip
        assert db.query("SELECT id, status, owner, epoch FROM runs ORDER BY id") == [
            ("fresh", "running", "me", 1),
            ("mine", "completed", "me", 1),
            ("moved", "running", "me", 2),
            ("theirs", "running", "other", 1),
        ]

        db.execute("UPDATE engines SET heartbeat_at = 'epoch'")  # the lease lapsed
        batch = store.batch()
        batch.events.append(_event("fresh", 1, kind="step_started"))
        batch.create_run(RunRow("late", "w", "running", b"[]", 3.0), [_event("late", 0)])
        await store.commit()
        assert batch.refused == {"fresh"}
        assert db.query("SELECT count(*) FROM events WHERE run_id = 'fresh'") == [(1,)]
        assert db.query("SELECT owner, epoch FROM runs WHERE id = 'late'") == [(None, 0)]
    finally:
        await store.close()
