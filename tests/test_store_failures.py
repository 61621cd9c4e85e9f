"""Failed commits: the runs they touched come back from the store, with no hole in the log.

A real SQLite trigger makes chosen inserts fail, as a full disk would, until
the test flips a switch in the database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

import actorflow as af
from actorflow._serde import loads
from actorflow._store import EventRow, MemoryStore, RunRow, SQLiteStore
from actorflow._write_failures import WriteFailures
from tests.conftest import eventually
from tests.databases import Database, PostgresDatabase, RefusedInserts, SQLiteDatabase

PG = pytest.mark.postgres
attempts_run: list[int] = []

# The log of a run whose row is stored with none of its entries: the run_created its
# row implies.
IMPLIED = [(0, "run_created")]


@af.step(name="tests.store_failures.save")
async def save(x: int) -> int:
    attempts_run.append(af.step_info().attempt)
    return x * 10


@af.step(name="tests.store_failures.after")
async def after(x: int) -> int:
    return x + 1


@af.workflow(name="tests.store_failures.flow")
async def flow(x: int) -> int:
    return await after(await save(x))


@af.workflow(name="tests.store_failures.waits")
async def waits() -> str:
    return str(await af.wait_for_event("go"))


def assert_contiguous(events: list[EventRow]) -> None:
    assert [e.idx for e in events] == list(range(len(events))), "the log has a hole"


async def test_a_run_whose_step_result_fails_to_commit_runs_the_step_again(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    attempts_run.clear()
    async with af.Engine(database.url, workflows=[flow]) as engine:
        refused = RefusedInserts(
            database, f"NEW.kind = 'step_completed' AND NEW.name = '{save.name}'"
        )
        run = await engine.start(flow, 4)
        # The first result is lost; the run comes back from its log and runs the step again.
        await eventually(lambda: len(attempts_run) >= 2, timeout=10)
        assert await run.status() != af.RunStatus.COMPLETED
        refused.stop()
        assert await run.result(timeout=30) == 41
        events = await engine.store.load_events(run.id)
    assert_contiguous(events)
    started = [
        loads(e.data or b"{}")["attempt"]
        for e in events
        if e.kind == "step_started" and e.name == save.name
    ]
    assert attempts_run == started, "every attempt that ran is in the log, in order"
    assert started == sorted(set(started)), "attempt numbers never repeat"
    completed = [e for e in events if e.kind == "step_completed" and e.name == save.name]
    assert len(completed) == 1
    assert "commit failed (" in caplog.text and "disk full (simulated)" in caplog.text


async def test_an_event_whose_commit_fails_is_refused_and_the_run_goes_on(
    database: Database,
) -> None:
    async with af.Engine(database.url, workflows=[waits]) as engine:
        run = await engine.start(waits)
        await eventually(lambda: _status_is(run, af.RunStatus.WAITING))
        refused = RefusedInserts(database, "NEW.kind = 'event_received'")
        with pytest.raises(af.StoreWriteError, match="disk full"):
            await engine.send_event(run.id, "go", "lost")
        refused.stop()
        await engine.send_event(run.id, "go", "kept")
        assert await run.result(timeout=10) == "kept"
        events = await engine.store.load_events(run.id)
    assert_contiguous(events)
    received = [loads(e.data or b"null") for e in events if e.kind == "event_received"]
    assert received == ["kept"]


async def _status_is(run: af.Run[object], status: af.RunStatus) -> bool:
    return await run.status() == status


async def test_discarding_a_run_drops_its_pending_rows_and_the_children_it_started(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "discard.db"))
    await store.open()
    try:
        store.writer._seal_rows = 4
        now = time.time()
        first = store.batch()
        for run_id in ("lost", "kept"):
            first.new_runs.append((RunRow(run_id, "wf", "queued", b"[]", now), []))
        await store.commit()

        def event(run_id: str, idx: int, kind: str = "step_started") -> EventRow:
            return EventRow(run_id, idx, 0, kind, idx, "s", None, now)

        # Rows of both runs over several sealed batches, and a child started by `lost`.
        # `commit()` seals a full batch; none is written before this test awaits.
        for idx in range(6):
            store.batch().events.extend([event("lost", idx), event("kept", idx)])
            store.commit()
        child = RunRow("lost.9", "wf", "queued", b"[]", now, parent_id="lost")
        store.batch().new_runs.append(
            (child, [event("lost.9", 0, "run_created"), event("lost", 6, "child_started")])
        )
        store.commit()
        store.batch().events.append(event("lost.9", 1))
        store.batch().run_updates["lost"] = ("running", 0, None, None, now, None, None, "lost")
        assert len(store.writer._sealed) >= 2, "the rows span sealed batches"

        dropped = store.discard_pending({"lost"})
        assert list(dropped) == ["lost.9"]
        await store.commit()
        # Only the run_created its row implies (SQLite stores no plain one).
        assert [(e.idx, e.kind) for e in await store.load_events("lost")] == IMPLIED
        assert await store.get_run("lost.9") is None
        assert await store.load_events("lost.9") == []
        assert [e.idx for e in await store.load_events("kept")] == list(range(6))
        lost = await store.get_run("lost")
        assert lost is not None and lost.status == "queued"
    finally:
        await store.close()


@pytest.mark.parametrize(
    "backend", ["sqlite-writer-thread", "sqlite-loop-thread", pytest.param("postgres", marks=PG)]
)
async def test_many_runs_through_failing_sealed_batches_finish_with_whole_logs(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Batches keep failing while hundreds of runs write through small sealed batches;
    once writes succeed again every run finishes, and no log has a hole (SQLite: commits
    on the writer's thread, and on the loop's)."""
    attempts_run.clear()
    database: Database = (
        PostgresDatabase(request.getfixturevalue("pg_url"))
        if backend == "postgres"
        else SQLiteDatabase(tmp_path / "actorflow.db")
    )
    async with af.Engine(database.url, workflows=[flow]) as engine:
        engine.store.writer._seal_rows = 16  # type: ignore[attr-defined]
        if backend != "postgres":
            inline_limit = 0 if backend == "sqlite-writer-thread" else 512
            engine.store.writer.transactions._inline_limit = inline_limit  # type: ignore[attr-defined]
        refused = RefusedInserts(
            database, f"NEW.kind = 'step_completed' AND NEW.name = '{save.name}'"
        )
        # Started together: the creations commit before any step can write a result.
        runs = await asyncio.gather(*(engine.start(flow, i) for i in range(200)))
        await eventually(lambda: len(attempts_run) >= 400, timeout=20)
        refused.stop()
        results = [await run.result(timeout=60) for run in runs]
        logs = [await engine.store.load_events(run.id) for run in runs]
    assert results == [10 * i + 1 for i in range(200)]
    for events in logs:
        assert_contiguous(events)
        started = [
            loads(e.data or b"{}")["attempt"]
            for e in events
            if e.kind == "step_started" and e.name == save.name
        ]
        assert len(started) >= 2 and started == sorted(set(started))
        assert [e.kind for e in events].count("run_completed") == 1


class _NoLiveRuns:
    """A directory without live actors that records when each run is to come back."""

    def __init__(self, retries: list[tuple[str, float]]) -> None:
        self.retries = retries

    def live_row(self, run_id: str) -> RunRow | None:
        return None

    def abandon(self, run_id: str, error: BaseException) -> None:
        pass

    def rehydrate_at(self, run_id: str, when: float) -> None:
        self.retries.append((run_id, when))


async def test_each_run_backs_off_on_its_own_and_forgets_after_a_quiet_while() -> None:
    """A run's delay doubles with each failed commit of its rows (drawn between half and
    all of it), independently of other runs, up to 30 s; strikes older than the
    `forget_after` window are dropped."""
    store = MemoryStore()
    await store.open()
    retries: list[tuple[str, float]] = []
    failures = WriteFailures(store, _NoLiveRuns(retries), forget_after=0.05)
    error = af.StoreWriteError("commit failed")

    def fail(run_id: str) -> float:
        batch = store.batch()
        batch.events.append(EventRow(run_id, 1, 0, "step_started", 0, "s", None, time.time()))
        failures.failed(batch, error)
        assert retries[-1][0] == run_id
        return retries[-1][1] - time.time()

    assert 0.12 < fail("a") <= 0.25
    assert 0.24 < fail("a") <= 0.5
    assert 0.49 < fail("a") <= 1.0
    assert 0.12 < fail("b") <= 0.25, "another run starts from the shortest delay"
    for _ in range(20):
        delay = fail("a")
    assert 14.9 < delay <= 30.0
    await asyncio.sleep(0.06)  # past `forget_after`: a span of time to let pass, not a race
    assert 0.12 < fail("a") <= 0.25, "forgotten after a quiet while"
    await store.close()


@af.step(name="tests.store_failures.slow")
async def slow_add(x: int) -> int:
    await asyncio.sleep(0.02)
    return x + 1


@af.workflow(name="tests.store_failures.slow_flow")
async def slow_flow(x: int) -> int:
    return await slow_add(await slow_add(await slow_add(x)))


async def test_a_run_whose_rows_are_always_refused_does_not_hold_back_the_others(
    database: Database,
) -> None:
    """One run's step results never commit (a trigger refuses them); the runs whose rows
    shared its failed batches come back at other moments and all finish."""
    async with af.Engine(database.url, workflows=[slow_flow]) as engine:
        RefusedInserts(database, "NEW.run_id = 'poison' AND NEW.kind = 'step_completed'")
        poison = await engine.start(slow_flow, 0, id="poison")
        others = await asyncio.gather(*(engine.start(slow_flow, i) for i in range(30)))
        results = await asyncio.gather(*(run.result(timeout=30) for run in others))
        assert results == [i + 3 for i in range(30)]
        assert await poison.status() == af.RunStatus.RUNNING
        strikes = engine._runs.write_failures._strikes
        await eventually(lambda: strikes.get("poison", (0, 0))[0] >= 3, timeout=10)


async def test_discarding_reaches_a_full_open_batch(tmp_path: Path) -> None:
    """An open batch that reached the sealing size is discarded from, not sealed past."""
    store = SQLiteStore(str(tmp_path / "full.db"))
    await store.open()
    try:
        store.writer._seal_rows = 4
        now = time.time()
        store.batch().new_runs.append((RunRow("lost", "wf", "queued", b"[]", now), []))
        await store.commit()
        for idx in range(4):  # the fourth row fills the open batch; no commit seals it yet
            store.batch().events.append(
                EventRow("lost", idx, 0, "step_started", idx, "s", None, now)
            )
        assert not store.writer._sealed
        store.discard_pending({"lost"})
        await store.commit()
        assert [(e.idx, e.kind) for e in await store.load_events("lost")] == IMPLIED
    finally:
        await store.close()


async def test_a_read_by_id_that_sqlite_refuses_on_the_loop_thread_goes_to_the_reader(
    tmp_path: Path,
) -> None:
    path = tmp_path / "main.db"
    async with af.Engine(f"sqlite:///{path}", workflows=[flow]) as engine:
        run = await engine.start(flow, 1)
        assert await run.result(timeout=5) == 11
        await eventually(lambda: engine.live_actors() == 0)  # status() must read the store
        store = engine.store
        assert isinstance(store, SQLiteStore)
        # The loop-thread reader meets a database another program holds exclusively
        # (it never waits for a lock): the read must go through the reader's thread.
        blocker = sqlite3.connect(tmp_path / "other.db", isolation_level=None)
        blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
        blocker.execute("CREATE TABLE runs (id TEXT)")
        refused = sqlite3.connect(tmp_path / "other.db", timeout=0, check_same_thread=False)
        own, store._keyed_reader = store._keyed_reader, refused
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                refused.execute("SELECT id FROM runs").fetchall()
            assert await run.status() == af.RunStatus.COMPLETED
            assert await run.result() == 11
        finally:
            store._keyed_reader = own
            refused.close()
            blocker.close()


async def test_repeated_commit_failures_are_logged_once_in_full_then_counted(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15 item 19: a full disk fails every commit; the log gets one traceback, not
    one per commit, and a line when commits succeed again."""
    async with af.Engine(database.url, workflows=[waits]) as engine:
        run = await engine.start(waits)
        await eventually(lambda: _status_is(run, af.RunStatus.WAITING))
        refused = RefusedInserts(database, "NEW.kind = 'event_received'")
        with caplog.at_level(logging.INFO, logger="actorflow.store"):
            for i in range(40):
                with pytest.raises(af.StoreWriteError):
                    await engine.send_event(run.id, "go", i)
            refused.stop()
            await engine.send_event(run.id, "go", "kept")
            assert await run.result(timeout=10) == "kept"
    store_records = [r for r in caplog.records if r.name == "actorflow.store"]
    assert [r.exc_info is not None for r in store_records if r.levelno == logging.ERROR] == [True]
    assert store_records[0].getMessage().startswith("commit failed (")
    assert store_records[-1].getMessage().startswith("commit succeeds again, after 40 failures")
