"""The SQLite group-commit writer: sealed batches commit in order, nothing is lost."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

import actorflow as af
from actorflow._asyncio_helpers import shielded
from actorflow._errors import StoreWriteError
from actorflow._store import ChunkRow, EventRow, RunRow, SQLiteStore
from actorflow._store._sqlite_writer import null_parameter, register_identity_adapters
from tests.conftest import eventually
from tests.databases import Database, RefusedInserts


async def test_full_batches_are_sealed_and_commit_in_order(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "sealed.db"))
    await store.open()
    try:
        store.writer._seal_rows = 10
        now = time.time()
        run = RunRow("sealed", "wf", "queued", b"[]", now)
        first = store.batch()
        first.new_runs.append((run, []))
        futures: list[asyncio.Future[None]] = []
        committed: list[int] = []
        for idx in range(35):
            batch = store.batch()
            batch.events.append(EventRow("sealed", idx, 0, "run_created", None, "wf", None, now))
            batch.callbacks.append(lambda idx=idx: committed.append(idx))
            futures.append(store.commit())
        assert store.batch() is not first, "a full batch must be sealed before it is written"
        assert len(store.writer._sealed) == 3, "sealed by commit(), before the writer ran"
        await asyncio.wait_for(asyncio.gather(*set(futures)), 5)
        assert len(set(futures)) == 4, "35 events in batches of 10 make four transactions"
        assert committed == list(range(35)), "batches commit in the order they were opened"
        events = await store.load_events("sealed")
        assert [e.idx for e in events] == list(range(35))
    finally:
        await store.close()


@af.step(name="tests.group_commit.double")
async def double(i: int) -> int:
    return 2 * i


@af.workflow(name="tests.group_commit.two_steps")
async def two_steps(i: int) -> int:
    return await double(await double(i))


@pytest.mark.parametrize("inline_limit", [0, 512], ids=["writer-thread", "loop-thread"])
async def test_many_runs_through_small_sealed_batches(sqlite_url: str, inline_limit: int) -> None:
    async with af.Engine(sqlite_url, workflows=[two_steps]) as engine:
        engine.store.writer._seal_rows = 16  # type: ignore[attr-defined]
        engine.store.writer.transactions._inline_limit = inline_limit  # type: ignore[attr-defined]
        runs = await asyncio.gather(*(engine.start(two_steps, i) for i in range(300)))
        results = await asyncio.wait_for(asyncio.gather(*(r.result() for r in runs)), 30)
        assert results == [4 * i for i in range(300)]
        assert engine.store_stats().batches > 300 * 6 // 16
    async with af.Engine(sqlite_url, workflows=[two_steps]) as engine:
        for run in runs[::50]:
            events = [e.kind for e in await engine.store.load_events(run.id)]
            assert events[0] == "run_created" and events[-1] == "run_completed"
            assert events.count("step_completed") == 2


ran_after_failed_creation: list[str] = []


@af.step(name="tests.group_commit.record")
async def record(tag: str) -> str:
    ran_after_failed_creation.append(tag)
    return tag


@af.workflow(name="tests.group_commit.refused")
async def refused(tag: str) -> str:
    return await record(tag)


@af.workflow(name="tests.group_commit.accepted")
async def accepted(tag: str) -> str:
    return await record(tag)


async def test_a_run_whose_creation_fails_to_commit_runs_no_step(database: Database) -> None:
    """A fresh run's actor starts before its creation commits; if that commit fails,
    `start()` raises and none of the run's steps ever starts."""
    ran_after_failed_creation.clear()
    async with af.Engine(database.url, workflows=[refused, accepted]) as engine:
        RefusedInserts(
            database,
            "NEW.workflow = 'tests.group_commit.refused'",
            table="runs",
            message="refused by test",
        )
        with pytest.raises(af.StoreWriteError, match="refused by test"):
            await engine.start(refused, "refused")
        run = await engine.start(accepted, "accepted")
        assert await run.result(timeout=10) == "accepted"
        listed = await engine.list_runs()
        assert [r.workflow for r in listed] == ["tests.group_commit.accepted"]
        await eventually(lambda: engine.live_actors() == 0)
    assert ran_after_failed_creation == ["accepted"]


async def test_a_new_run_is_written_as_its_row_was_when_its_batch_was_sealed(
    tmp_path: Path,
) -> None:
    """The writer thread never reads a row the loop may be changing: a new run's row is
    taken when its batch is sealed, with the changes made while the batch was open."""
    store = SQLiteStore(str(tmp_path / "snapshot.db"))
    await store.open()
    try:
        row = RunRow("snap", "wf", "queued", b"[]", time.time())
        batch = store.batch()
        batch.create_run(row, [])
        row.status = "running"
        batch.update_run(row)
        assert not batch.run_updates, "the insert carries a change made while the batch is open"
        batch.seal()
        row.status = "completed"  # a later turn: its update belongs to a later batch
        await store.commit()
        stored = await store.get_run("snap")
        assert stored is not None and stored.status == "running"
    finally:
        await store.close()


async def test_blobs_and_nulls_are_stored_as_they_are(tmp_path: Path) -> None:
    """The writer registers identity adapters for bytes and None (so sqlite3 binds them
    without a search); what is stored must not change, and an adapter registered by
    someone else is left in place."""
    key = (bytes, sqlite3.PrepareProtocol)
    theirs = sqlite3.adapters.pop(key, None)
    sqlite3.register_adapter(bytes, bytes.upper)
    try:
        register_identity_adapters()
        assert sqlite3.adapters[key] is bytes.upper, "someone else's adapter is kept"
    finally:
        del sqlite3.adapters[key]
        if theirs is not None:
            sqlite3.adapters[key] = theirs
    store = SQLiteStore(str(tmp_path / "blobs.db"))
    await store.open()
    try:
        assert sqlite3.adapters[key] is bytes.__bytes__
        now = time.time()
        store.batch().create_run(RunRow("blobs", "wf", "queued", b"[1]", now), [])
        rows = [
            EventRow("blobs", 0, 0, "step_completed", 0, None, b"", now),
            EventRow("blobs", 1, 0, "step_completed", None, "s", None, now),
            EventRow("blobs", 2, 0, "step_completed", 2, "s", b'{"a":"\\u00e9"}', now),
        ]
        store.batch().events.extend(rows)
        await store.commit()
        assert await store.load_events("blobs") == rows
        run = await store.get_run("blobs")
        assert run is not None and run.args == b"[1]" and run.result is None
    finally:
        await store.close()


_BLOB_COLUMNS = [
    ("runs", "args"), ("runs", "result"), ("runs", "error"), ("runs", "metadata"),
    ("events", "data"), ("chunks", "data"),
]  # fmt: skip


async def test_blob_columns_hold_blobs_whatever_the_bytes(tmp_path: Path) -> None:
    """UTF-8 bytes are bound as text and cast back to BLOB by the statements: every BLOB
    column must still hold exactly the bytes given, as a BLOB, whether they are JSON,
    empty, not UTF-8 at all, inserted or updated."""
    path = tmp_path / "typed.db"
    store = SQLiteStore(str(path))
    await store.open()
    now = time.time()
    odd = b"\xff\x00\xfe"  # not UTF-8: bound as bytes
    values = [b"[1]", b"", odd, '{"a":"\u00e9 \u2603"}'.encode(), b'"\\u0000"']
    try:
        for i, value in enumerate(values):
            fresh = RunRow(f"fresh{i}", "wf", "queued", value, now)
            full = RunRow(
                f"full{i}", "wf", "completed", value, now, 2, value, value, value,
                None, now, now, None, None,
            )  # fmt: skip
            store.batch().create_run(fresh, [])
            store.batch().create_run(full, [])
            store.batch().events.append(EventRow(f"fresh{i}", 0, 0, "k", None, None, value, now))
            store.batch().chunks.append(ChunkRow(f"fresh{i}", "ns", 0, None, 1, 0, value, now))
        await store.commit()
        for i, value in enumerate(values):
            row = (await store.get_run(f"fresh{i}")).copy()  # type: ignore[union-attr]
            row.status, row.result, row.error = "failed", value, value
            store.batch().update_run(row)
        await store.commit()
        for i, value in enumerate(values):
            run = await store.get_run(f"fresh{i}")
            assert run is not None and (run.args, run.result, run.error) == (value,) * 3
            assert (await store.load_events(f"fresh{i}"))[0].data == value
            assert (await store.load_chunks(f"fresh{i}", "ns", 0, 1))[0].data == value
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        kinds = {
            kind
            for table, column in _BLOB_COLUMNS
            for (kind,) in conn.execute(f"SELECT DISTINCT typeof({column}) FROM {table}")
        }
    assert kinds == {"blob", "null"}, kinds


def test_nulls_are_bound_as_nan_which_sqlite_stores_as_null() -> None:
    """None is bound as a NaN (a float, bound without the adapter registry), which SQLite
    binds as NULL: checked once per writer, so an SQLite that did otherwise would get
    None bound instead."""
    with closing(sqlite3.connect(":memory:")) as conn:
        null = null_parameter(conn)
        assert isinstance(null, float) and math.isnan(null), "this SQLite binds NaN as NULL"
        conn.execute("CREATE TABLE t (a TEXT, b INTEGER, c BLOB, d REAL)")
        conn.execute("INSERT INTO t VALUES (?, ?, CAST(? AS BLOB), ?)", (null,) * 4)
        kinds = conn.execute("SELECT typeof(a), typeof(b), typeof(c), typeof(d) FROM t")
        assert kinds.fetchall() == [("null",) * 4]


async def test_shielded_follows_a_commit_and_its_cancellation_stays_its_own() -> None:
    loop = asyncio.get_running_loop()
    commit: asyncio.Future[None] = loop.create_future()
    first, second = shielded(commit), shielded(commit)
    first.cancel()  # a cancelled awaiter
    commit.set_result(None)
    await second
    assert first.cancelled() and not commit.cancelled() and second.result() is None

    failed: asyncio.Future[None] = loop.create_future()
    waiter = shielded(failed)
    failed.set_exception(StoreWriteError("disk full"))
    with pytest.raises(StoreWriteError, match="disk full"):
        await waiter

    cancelled: asyncio.Future[None] = loop.create_future()
    follower = shielded(cancelled)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower


async def test_a_cancelled_start_does_not_fail_another_in_the_same_commit(
    tmp_path: Path,
) -> None:
    async with af.Engine(f"sqlite:///{tmp_path / 'starts.db'}") as engine:
        cancelled = asyncio.ensure_future(engine.start(two_steps, 1))
        other = asyncio.ensure_future(engine.start(two_steps, 2))
        await asyncio.sleep(0)  # both wait for the same commit now
        cancelled.cancel()
        run = await asyncio.wait_for(other, 5)
        assert await run.result(timeout=5) == 8
        assert cancelled.cancelled()


async def test_runs_with_and_without_optional_columns_are_stored_whole(tmp_path: Path) -> None:
    """A fresh run's INSERT binds only the columns it has (the rest are NULL); a run that
    has any other column set, in the same batch, is stored with all of them."""
    store = SQLiteStore(str(tmp_path / "shapes.db"))
    await store.open()
    try:
        now = time.time()
        fresh = RunRow("fresh", "wf", "running", b"[1]", now, started_at=now + 1)
        queued = RunRow("queued", "wf", "queued", b"[2]", now)
        full = RunRow(
            "full", "wf", "completed", b"[3]", now, 2, b"4", b'{"e":1}', b'{"m":1}',
            "fresh", now + 1, now + 2, now + 3, now + 4,
        )  # fmt: skip
        for row in (fresh, full, queued):
            store.batch().create_run(row.copy(), [])
        await store.commit()
        for row in (fresh, queued, full):
            assert await store.get_run(row.id) == row
    finally:
        await store.close()


async def test_a_batch_that_breaks_a_constraint_is_written_not_at_all(tmp_path: Path) -> None:
    """Statements stop at a broken constraint without undoing their own rows (`OR FAIL`,
    no statement journal): the batch's transaction is rolled back whole, so none of its
    rows are stored (neither the rows before the bad one in its statement nor the other
    statements'), and the next batch commits."""
    store = SQLiteStore(str(tmp_path / "constraint.db"))
    await store.open()
    try:
        now = time.time()
        first = EventRow("a", 0, 0, "run_created", None, "wf", None, now)
        started = EventRow("a", 1, 0, "step_started", 0, "s", b"{}", now)
        store.batch().create_run(RunRow("a", "wf", "running", b"[]", now), [first, started])
        await store.commit()
        created = EventRow("b", 0, 0, "run_created", None, "wf", None, now)
        store.batch().create_run(RunRow("b", "wf", "running", b"[]", now), [created])
        completed = EventRow("a", 2, 0, "step_completed", 0, "s", b"1", now)
        store.batch().events.extend([completed, started])  # `started` is taken
        with pytest.raises(StoreWriteError, match="UNIQUE constraint failed"):
            await store.commit()
        assert await store.get_run("b") is None
        assert await store.load_events("b") == []
        assert await store.load_events("a") == [first, started]
        store.batch().events.append(completed)
        await store.commit()
        assert await store.load_events("a") == [first, started, completed]
    finally:
        await store.close()


async def test_the_wal_starts_over_under_a_steady_load(tmp_path: Path) -> None:
    """The writer appends while a checkpoint runs, so SQLite alone never finds the whole
    WAL checkpointed and never writes the file from its start again: under a steady
    load it grew without bound. After a checkpoint that leaves it long, the writer
    waits for a short second one, and the WAL stays about that long. Each periodic
    checkpoint flushes the database file (so the second one, which the writer waits
    for, has little left to flush)."""
    path = tmp_path / "steady.db"
    async with af.Engine(f"sqlite:///{path}", workflows=[two_steps]) as engine:
        checkpointer = engine.store._checkpointer  # type: ignore[attr-defined]
        checkpointer._every_rows, checkpointer._restart_frames = 1000, 100
        synced: list[int] = []
        sync = checkpointer._sync_database

        def counted_sync() -> None:
            sync()  # the store's own: fdatasync of the database file
            synced.append(1)

        checkpointer._sync_database = counted_sync
        left = [4000]

        async def caller() -> None:
            while left[0] > 0:
                left[0] -= 1
                assert await (await engine.start(two_steps, 1)).result() == 4

        await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(50))), 120)
        wal = await asyncio.to_thread(os.path.getsize, f"{path}-wal")
        rows = engine.store_stats().rows
    assert rows > 4000 * 6
    assert wal < 4_000_000, f"WAL {wal:,} bytes after {rows:,} rows"
    assert len(synced) >= 2, f"{len(synced)} flushes of the database file after {rows:,} rows"
