"""Many engines on one PostgreSQL database: what two engines do at the same instant is
decided by the database, as one engine decides it. Each race is forced, not waited
for: by a transaction the test holds open until both engines' commits wait on it, by
holding one engine's writer while the other commits, or by a run one engine's
scheduler cannot know of (started by `trigger` elsewhere)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

import actorflow as af
from actorflow._store import WriteBatch
from actorflow._store._postgres import PostgresStore, split_url
from tests.conftest import eventually, wait_for_status
from tests.databases import PostgresDatabase
from tests.test_cluster_routing import WORKFLOWS, hooked

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def held(url: str, sql: str) -> AsyncIterator[None]:
    """A transaction that ran `sql` and stays open (uncommitted) until the block ends,
    when it rolls back."""
    dsn, schema = split_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(sql)
        yield
    finally:
        await transaction.rollback()
        await conn.close()


def writers_waiting(db: PostgresDatabase, *engines: af.Engine) -> int:
    """How many of the engines' writer connections wait for a lock."""
    pids = []
    for engine in engines:
        store = engine.store
        assert isinstance(store, PostgresStore)
        pids.append(store.transactions.server_pid())
    found = db.query(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(?) AND wait_event_type = 'Lock'",
        (pids,),
    )
    return int(found[0][0])


async def test_two_engines_taking_one_hook_token_at_once_one_is_refused(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=5) as one,
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=5) as other,
    ):
        # An uncommitted row of the token holds both engines' commits taking it until
        # both have checked that no run holds it (the check cannot see this row).
        async with held(pg_url, "INSERT INTO hooks VALUES ('same-instant', 'no-run', 0)"):
            first = asyncio.create_task(one.start(hooked, "same-instant"))
            await eventually(lambda: writers_waiting(db, one) == 1, timeout=10)
            second = asyncio.create_task(other.start(hooked, "same-instant"))
            await eventually(lambda: writers_waiting(db, one, other) == 2, timeout=10)
        winner, loser = await asyncio.wait_for(first, 10), await asyncio.wait_for(second, 10)
        await wait_for_status(winner, af.RunStatus.WAITING, timeout=10)
        with pytest.raises(af.RunFailedError, match="HookConflictError"):
            await loser.result(timeout=10)
        assert db.query("SELECT run_id FROM hooks WHERE token = 'same-instant'") == [(winner.id,)]
        await other.resume_hook("same-instant", "to the winner")
        assert await winner.result(timeout=10) == "to the winner"


@af.workflow(name="tests.cluster.races.ticked")
async def ticked(tag: str) -> str:
    return tag


@af.workflow(name="tests.cluster.races.elsewhere")
async def elsewhere(tag: str) -> str:
    return tag


@pytest.mark.parametrize("change", ["pause", "update", "delete"])
async def test_a_tick_of_a_schedule_changed_elsewhere_meanwhile_is_not_fired(
    pg_url: str, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine fires a tick; before its commit, another engine changes the schedule
    (the first has not heard of it: its scheduler waits for that commit). The tick's
    write finds the schedule changed: it neither creates the tick's run nor writes the
    schedule's old settings back; the engine reads the schedules again. (The other
    engine does not run the workflow, so it fires no tick of its own.)"""
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[ticked], lease_timeout=5) as firing:
        await firing.create_schedule("every-second", ticked, "* * * * * *", args=("a",))
        async with af.Engine(pg_url, workflows=[elsewhere], execute=False) as other:
            await eventually(lambda: "every-second" in other.schedules.rows, timeout=10)
            store = firing.store
            assert isinstance(store, PostgresStore)
            transactions = store.transactions
            write = transactions.write
            gate = asyncio.Event()
            ticks: list[WriteBatch] = []

            async def held_write(batch: WriteBatch) -> None:
                if batch.schedule_writes and batch.new_runs and not gate.is_set():
                    ticks.append(batch)
                    await gate.wait()
                await write(batch)

            monkeypatch.setattr(transactions, "write", held_write)
            await eventually(lambda: ticks, timeout=10)
            (tick_run,) = [row.id for row, _ in ticks[0].new_runs]
            schedule = other.get_schedule("every-second")
            if change == "pause":
                await schedule.pause()
            elif change == "update":
                await other.create_schedule("every-second", elsewhere, "0 0 1 1 *", args=("b",))
            else:
                await schedule.delete()
            gate.set()
            await asyncio.wait_for(ticks[0].future, 10)
            assert db.query("SELECT count(*) FROM runs WHERE id = ?", (tick_run,)) == [(0,)]
            stored = db.query("SELECT paused, cron, args FROM schedules")
            rows = firing.schedules.rows
            if change == "pause":
                assert stored == [(1, "* * * * * *", b'["a"]')]
                await eventually(lambda: rows["every-second"].paused, timeout=10)
            elif change == "update":
                assert stored == [(0, "0 0 1 1 *", b'["b"]')]
                await eventually(lambda: rows["every-second"].cron == "0 0 1 1 *", timeout=10)
            else:
                assert stored == []
                await eventually(lambda: "every-second" not in rows, timeout=10)
        assert firing.live_actors() == 0
    assert db.query("SELECT count(*) FROM runs WHERE id = ?", (tick_run,)) == [(0,)]


@af.workflow(name="tests.cluster.races.held_open")
async def held_open() -> object:
    return await af.wait_for_event("go")


def _watermark(db: PostgresDatabase) -> float:
    found = db.query("SELECT watermark FROM schedules WHERE id = 'one-at-a-time'")
    return float(found[0][0]) if found else 0.0


def _runs(db: PostgresDatabase) -> dict[str, str]:
    rows = db.query("SELECT id, status FROM runs WHERE workflow = ?", (held_open.name,))
    return dict(rows)


async def test_overlap_skip_sees_a_run_started_on_another_engine(pg_url: str) -> None:
    """`overlap="skip"` skips a tick while a run of the schedule is unfinished, whichever
    engine started it: an engine that does not know of the run (started by `trigger` on
    another) has its tick's write refused, reads the schedule with that run, and skips
    the tick; once the run finished, each tick again gets exactly one run."""
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=[held_open], lease_timeout=5) as one,
        af.Engine(pg_url, workflows=[held_open], lease_timeout=5) as other,
    ):
        schedule = await one.create_schedule(
            "one-at-a-time", held_open, "* * * * * *", overlap="skip", paused=True
        )
        await eventually(lambda: "one-at-a-time" in other.schedules.rows, timeout=10)
        triggered = await schedule.trigger()  # `other` is not told: no setting changed
        await wait_for_status(triggered, af.RunStatus.WAITING, timeout=10)
        assert other.schedules.rows["one-at-a-time"].running == []
        await schedule.resume()
        await eventually(lambda: not other.schedules.rows["one-at-a-time"].paused, timeout=10)
        resumed = _watermark(db)
        await eventually(lambda: _watermark(db) >= resumed + 3, timeout=20)
        assert _runs(db) == {triggered.id: "waiting"}, "ticks skipped on both engines"
        assert triggered.id in other.schedules.rows["one-at-a-time"].running

        await other.send_event(triggered.id, "go", 1)
        assert await triggered.result(timeout=10) == 1
        await eventually(lambda: len(_runs(db)) == 2, timeout=20)
        (ticked,) = _runs(db).keys() - {triggered.id}
        await wait_for_status(one.get_run(ticked), af.RunStatus.WAITING, timeout=10)
        started = _watermark(db)
        await eventually(lambda: _watermark(db) >= started + 3, timeout=20)
        assert _runs(db) == {triggered.id: "completed", ticked: "waiting"}
        await one.send_event(ticked, "go", 2)
        assert await one.get_run(ticked).result(timeout=10) == 2
        await one.get_schedule("one-at-a-time").pause()


async def test_terminate_other_terminates_a_run_its_engine_did_not_start(pg_url: str) -> None:
    """`overlap="terminate_other"` terminates the schedule's unfinished run wherever it
    came from: here one started by `trigger` on an engine since closed (the run moved to
    the other engine, whose scheduler never knew of it); a change made by that other
    engine keeps it in the schedule's row, and that engine's first tick's write is
    refused until it has read the run with the schedule and terminated it."""
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[held_open], lease_timeout=5) as other:
        async with af.Engine(pg_url, workflows=[held_open], lease_timeout=5) as one:
            schedule = await one.create_schedule(
                "one-at-a-time", held_open, "* * * * * *", overlap="terminate_other", paused=True
            )
            await eventually(lambda: "one-at-a-time" in other.schedules.rows, timeout=10)
            triggered = await schedule.trigger()
            await wait_for_status(triggered, af.RunStatus.WAITING, timeout=10)
        node = other._runs.cluster
        assert node is not None
        await eventually(lambda: node.owns(triggered.id), timeout=10)  # handed over at close
        assert other.schedules.rows["one-at-a-time"].running == []
        await other.get_schedule("one-at-a-time").resume()
        moved = other.get_run(triggered.id)
        with pytest.raises(af.RunTerminatedError):
            await moved.result(timeout=20)
        await eventually(lambda: len(_runs(db)) >= 2, timeout=20)
        await other.get_schedule("one-at-a-time").pause()
        statuses = _runs(db)
        assert statuses.pop(triggered.id) == "terminated"
        # Each tick's run terminated the one before it: one is left unfinished.
        await eventually(
            lambda: [s for s in _runs(db).values() if s != "terminated"] == ["waiting"], timeout=10
        )


@af.workflow(name="tests.cluster.races.awaits_go")
async def awaits_go() -> object:
    return await af.wait_for_event("go")


@af.workflow(name="tests.cluster.races.awaits_go_then_a_hook")
async def awaits_go_then_a_hook(token: str) -> object:
    got = await af.wait_for_event("go")
    return [got, await af.create_hook(token)]


def waiting_on_run_row(db: PostgresDatabase) -> int:
    """How many backends wait for a row lock (the test's transaction holds one run's)."""
    found = db.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    return int(found[0][0])


def writer_statement(db: PostgresDatabase, engine: af.Engine) -> str:
    store = engine.store
    assert isinstance(store, PostgresStore)
    found = db.query(
        "SELECT query FROM pg_stat_activity WHERE pid = ?", (store.transactions.server_pid(),)
    )
    return str(found[0][0])


@pytest.mark.parametrize("path", ["one statement", "commit_batch"])
async def test_a_reader_that_registers_while_the_owner_commits_misses_nothing(
    pg_url: str, path: str
) -> None:
    """A client begins to follow a run while its owner's commit to it is under way: that
    commit's statement took its snapshot before the client's watch committed, so it
    cannot see the watch. Then the client's read after registering must see the commit
    (the watch waited for it), or the commit must notify (it saw the watch's mark on the
    run's row). Forced: the test holds the run's row until the commit waits on it, and
    until the watch has committed or waits too. A commit that takes a hook token goes
    through `commit_batch`, the others through one statement of their parts."""
    db = PostgresDatabase(pg_url)
    workflows = [awaits_go, awaits_go_then_a_hook]
    async with (
        af.Engine(pg_url, workflows=workflows, lease_timeout=5) as owner,
        af.Engine(pg_url, workflows=workflows, execute=False) as client,
    ):
        if path == "one statement":
            run = await owner.start(awaits_go)
        else:
            run = await owner.start(awaits_go_then_a_hook, "t-" + path)
        await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
        node = client._runs.cluster
        assert node is not None
        notified: list[str] = []
        dsn, schema = split_url(pg_url)
        listener = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        await listener.add_listener("actorflow_watch", lambda *a: notified.append(str(a[3])))
        received = "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'event_received'"
        try:
            async with held(pg_url, f"SELECT 1 FROM runs WHERE id = '{run.id}' FOR UPDATE"):
                # Sent from the owner: its commit (which send_event awaits) journals it.
                sending = asyncio.create_task(owner.send_event(run.id, "go", "went"))
                await eventually(lambda: writers_waiting(db, owner) == 1, timeout=10)
                function = "commit_batch(" in writer_statement(db, owner)
                assert function == (path == "commit_batch")
                watching = asyncio.create_task(node.watches.watch(run.id))
                await eventually(lambda: watching.done() or waiting_on_run_row(db) == 2, timeout=10)
                # Registered while the commit waits: what a reader reads now.
                seen = db.query(received, (run.id,)) if watching.done() else []
            await asyncio.wait_for(watching, 10)
            await asyncio.wait_for(sending, 10)
            if not seen:
                seen = db.query(received, (run.id,))
            # The listener hears what the commit sent (delivered before its own queries).
            await listener.fetchval("SELECT 1")
            assert seen == [(1,)] or any(run.id in n.split() for n in notified)
        finally:
            await listener.close()
        if path == "one statement":
            assert await asyncio.wait_for(client.get_run(run.id).result(), 10) == "went"
        else:
            await eventually(lambda: db.query("SELECT run_id FROM hooks"), timeout=10)
            await owner.resume_hook("t-" + path, "hooked")
            assert await asyncio.wait_for(client.get_run(run.id).result(), 10) == [
                "went",
                "hooked",
            ]
        assert db.query("SELECT watched FROM runs WHERE id = ?", (run.id,)) == [(True,)]
        await node.watches.unwatch(run.id)
        assert db.query("SELECT count(*) FROM watches") == [(0,)]
        # The last watch gone, the run's commits notify nobody.
        assert db.query("SELECT watched FROM runs WHERE id = ?", (run.id,)) == [(False,)]
