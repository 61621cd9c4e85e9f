"""Many engines on one PostgreSQL database, in one process: messages for a run reach its
owner through the inbox (events in order and once, control, hook payloads, a child's
outcome), readers elsewhere are told of its progress, queued runs wait for room, and
commits to a run another engine took are refused (the fence)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import actorflow as af
from tests.cluster_processes import check_logs
from tests.conftest import eventually, wait_for_status
from tests.databases import PostgresDatabase

pytestmark = pytest.mark.postgres


@af.step(name="tests.cluster.slow")
async def slow(i: int, gate: float) -> int:
    await asyncio.sleep(gate)
    return i


@af.workflow(name="tests.cluster.collect")
async def collect(count: int) -> list[int]:
    got = []
    for i in range(count):
        await slow(i, 0.0)
        got.append(await af.wait_for_event("n"))
    return got


@af.workflow(name="tests.cluster.hooked")
async def hooked(token: str) -> object:
    return await af.create_hook(token)


@af.workflow(name="tests.cluster.child")
async def child(i: int) -> int:
    return await slow(i, 0.01) * 10


@af.workflow(name="tests.cluster.parent")
async def parent(n: int) -> int:
    runs = [await af.start(child, i) for i in range(n)]
    total = 0
    for run in runs:
        total += await run.result()
    return total


@af.workflow(name="tests.cluster.streamer")
async def streamer(n: int) -> int:
    for i in range(n):
        await slow(i, 0.01)
        await af.wait_for_event("next")
    return n


WORKFLOWS = [collect, hooked, child, parent, streamer]


@pytest.fixture
async def pair(pg_url: str) -> AsyncIterator[tuple[af.Engine, af.Engine]]:
    """An executing engine and a client on one database."""
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=2) as owner,
        af.Engine(pg_url, workflows=WORKFLOWS, execute=False) as client,
    ):
        yield owner, client


async def test_events_sent_from_elsewhere_arrive_once_and_in_order(
    pg_url: str, pair: tuple[af.Engine, af.Engine]
) -> None:
    owner, client = pair
    runs = [await owner.start(collect, 5) for _ in range(5)]
    for n in range(5):
        for run in runs:
            await client.send_event(run.id, "n", n)
    for run in runs:
        assert await client.get_run(run.id).result(timeout=20) == [0, 1, 2, 3, 4]
    check_logs(PostgresDatabase(pg_url), [run.id for run in runs])
    assert PostgresDatabase(pg_url).query("SELECT count(*) FROM inbox") == [(0,)]
    with pytest.raises(af.InvalidStateError):
        await client.send_event(runs[0].id, "n", 5)
    with pytest.raises(af.RunNotFoundError):
        await client.send_event("no-such-run", "n", 5)


async def test_control_and_hooks_from_elsewhere(pair: tuple[af.Engine, af.Engine]) -> None:
    owner, client = pair
    run = await owner.start(collect, 2)
    there = client.get_run(run.id)
    await wait_for_status(there, af.RunStatus.WAITING, timeout=10)
    await there.pause()
    await wait_for_status(there, af.RunStatus.PAUSED, timeout=10)
    await there.resume()
    await wait_for_status(there, af.RunStatus.WAITING, timeout=10)
    await there.terminate()
    with pytest.raises(af.RunTerminatedError):
        await there.result(timeout=10)

    held = await owner.start(hooked, "tok-1")
    await wait_for_status(held, af.RunStatus.WAITING, timeout=10)
    await client.resume_hook("tok-1", {"ok": True})
    assert await client.get_run(held.id).result(timeout=10) == {"ok": True}


async def test_a_childs_outcome_reaches_a_parent_on_another_engine(pg_url: str) -> None:
    # The parent's engine has room for one run: its children wait queued, and the
    # other engine takes them; their outcomes come back through the parent's inbox.
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS, max_runs=1) as narrow,
        af.Engine(pg_url, workflows=WORKFLOWS) as wide,
    ):
        run = await narrow.start(parent, 4)
        assert await run.result(timeout=20) == 60
        db = PostgresDatabase(pg_url)
        owners = dict(db.query("SELECT id, owner FROM runs WHERE parent_id = ?", (run.id,)))
        wide_id = wide._runs.cluster.engine_id  # type: ignore[union-attr]
        assert set(owners.values()) == {wide_id}
        check_logs(db, [run.id, *owners])


async def test_readers_elsewhere_follow_events_and_results(
    pair: tuple[af.Engine, af.Engine],
) -> None:
    owner, client = pair
    run = await owner.start(streamer, 3)
    there = client.get_run(run.id)
    kinds: list[str] = []

    async def read() -> None:
        async for event in there.events():
            kinds.append(event.kind)

    reader = asyncio.create_task(read())
    await eventually(lambda: "step_completed" in kinds, timeout=10)
    for _ in range(3):
        await client.send_event(run.id, "next")
    await asyncio.wait_for(reader, 20)
    assert kinds[-1] == "run_completed"
    assert kinds.count("event_received") == 3
    assert await there.result(timeout=5) == 3


async def test_a_commit_to_a_run_another_engine_took_is_refused(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=WORKFLOWS) as owner:
        run = await owner.start(collect, 3)
        await wait_for_status(run, af.RunStatus.WAITING, timeout=10)
        before = db.query("SELECT count(*) FROM events WHERE run_id = ?", (run.id,))
        # What a takeover does: another owner, the epoch raised.
        db.execute(
            f"UPDATE runs SET owner = 'someone-else', epoch = epoch + 1 WHERE id = '{run.id}'"
        )
        # This engine has not heard: it journals the event, and the commit is refused.
        with pytest.raises(af.StoreWriteError):
            await owner.send_event(run.id, "n", 1)
        cluster = owner._runs.cluster
        assert cluster is not None and not cluster.owns(run.id)
        await eventually(lambda: owner.live_actors() == 0, timeout=10)
        after = db.query("SELECT count(*) FROM events WHERE run_id = ?", (run.id,))
        assert after == before


async def test_hook_tokens_are_unique_across_engines(pg_url: str) -> None:
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS) as one,
        af.Engine(pg_url, workflows=WORKFLOWS) as other,
    ):
        first = await one.start(hooked, "shared")
        await wait_for_status(first, af.RunStatus.WAITING, timeout=10)
        second = await other.start(hooked, "shared")  # `other` has not heard of it
        with pytest.raises(af.RunFailedError, match="HookConflictError"):
            await second.result(timeout=10)
        await other.resume_hook("shared", 1)
        assert await first.result(timeout=10) == 1
