"""In-process recovery on SQLite and PostgreSQL: close the engine mid-run, open a new one on
the same store.

(Crash recovery with SIGKILLed processes is tested in test_crash_recovery.py.)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

import actorflow as af
from tests._probes import Probe, mark, new_probe
from tests.conftest import eventually, wait_for_status

S = af.RunStatus


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield from new_probe()


@af.workflow
async def reopen_sleeper(key: str, duration: str) -> list[int]:
    before = await mark(key, "before")
    await af.sleep(duration)
    return [before, await mark(key, "after")]


async def test_sleeping_run_continues_after_reopen(durable_url: str, probe: Probe) -> None:
    async with af.Engine(durable_url) as first:
        # Long enough to be still asleep once the second engine is open, under load too
        # (300 ms was not, once in CI on PostgreSQL: the run had completed already).
        run_id = (await first.start(reopen_sleeper, probe.key, "2s")).id
        await wait_for_status(first.get_run(run_id), S.WAITING)
    assert probe.calls == {"before": 1}
    async with af.Engine(durable_url) as second:
        run = second.get_run(run_id)
        assert await run.status() == S.WAITING
        assert await run.result(timeout=5) == [1, 1]
    assert probe.calls == {"before": 1, "after": 1}


async def test_overdue_timer_fires_at_once_on_reopen(durable_url: str, probe: Probe) -> None:
    async with af.Engine(durable_url) as first:
        run = await first.start(reopen_sleeper, probe.key, "500ms")
        await wait_for_status(run, S.WAITING)
        fire_at = None
        async for event in run.events():
            if event.kind == "sleep_started":
                fire_at = event.data["fire_at"]
                break
        assert fire_at is not None
    await eventually(lambda: time.time() > fire_at + 0.05)  # the timer is overdue now
    opening = time.time()
    async with af.Engine(durable_url) as second:
        opened = time.time()
        assert await second.get_run(run.id).result(timeout=5) == [1, 1]
        # Due at start-up, it fires at once: it does not sleep another 500 ms.
        assert time.time() - opened < 0.4
        sleep_fired = [e async for e in second.get_run(run.id).events() if e.kind == "sleep_fired"]
        # Fired by the second engine (on PostgreSQL it claims the run, and may fire it,
        # while it opens).
        assert sleep_fired[0].at.timestamp() >= opening


@af.workflow
async def reopen_event(key: str, timeout: str | None) -> list[Any]:
    before = await mark(key, "before")
    try:
        got = await af.wait_for_event("reopen_go", timeout=timeout)
    except af.EventTimeoutError:
        got = "timed out"
    return [before, got, await mark(key, "after")]


async def test_run_waiting_for_event_continues_after_reopen(durable_url: str, probe: Probe) -> None:
    async with af.Engine(durable_url) as first:
        run_id = (await first.start(reopen_event, probe.key, None)).id
        await wait_for_status(first.get_run(run_id), S.WAITING)
    async with af.Engine(durable_url) as second:
        run = second.get_run(run_id)
        assert await run.status() == S.WAITING
        await run.send_event("reopen_go", {"ok": True})
        assert await run.result(timeout=5) == [1, {"ok": True}, 1]
    assert probe.calls == {"before": 1, "after": 1}


async def test_event_timeout_survives_reopen(durable_url: str, probe: Probe) -> None:
    async with af.Engine(durable_url) as first:
        # Long enough to be seen waiting under load (the timeout is the run's next input).
        run_id = (await first.start(reopen_event, probe.key, "1s")).id
        await wait_for_status(first.get_run(run_id), S.WAITING)
    async with af.Engine(durable_url) as second:
        assert await second.get_run(run_id).result(timeout=5) == [1, "timed out", 1]


@af.workflow
async def reopen_gated_then_wait(key: str) -> list[Any]:
    before = await mark(key, "gated")
    return [before, await af.wait_for_event("reopen_go"), await af.wait_for_event("reopen_go")]


async def test_buffered_events_survive_reopen(durable_url: str, probe: Probe) -> None:
    probe.values["gated"] = {"gated"}
    async with af.Engine(durable_url) as first:
        run = await first.start(reopen_gated_then_wait, probe.key)
        await probe.reached("gated")
        await run.send_event("reopen_go", 1)
        await run.send_event("reopen_go", 2)
    probe.open("gated:go")
    async with af.Engine(durable_url) as second:
        # The interrupted step runs again (at-least-once); the events come from the log.
        assert await second.get_run(run.id).result(timeout=5) == [2, 1, 2]


@af.workflow
async def reopen_abc(key: str) -> list[int]:
    return [
        await mark(key, "a"),
        await mark(key, "b"),
        await mark(key, "c"),
    ]


async def test_paused_run_stays_paused_after_reopen(durable_url: str, probe: Probe) -> None:
    probe.values["gated"] = {"b"}
    async with af.Engine(durable_url) as first:
        run = await first.start(reopen_abc, probe.key)
        await probe.reached("b")
        await run.pause()
        probe.open("b:go")
        await wait_for_status(run, S.PAUSED)
    async with af.Engine(durable_url) as second:
        handle = second.get_run(run.id)
        assert await handle.status() == S.PAUSED
        assert (await second.list_runs(status="paused"))[0].id == run.id
        assert probe.calls["c"] == 0
        await handle.resume()
        assert await handle.result(timeout=5) == [1, 1, 1]
    assert probe.calls == {"a": 1, "b": 1, "c": 1}


@af.workflow
async def reopen_wait_only() -> Any:
    return await af.wait_for_event("reopen_go")


async def test_outcome_held_by_a_pause_survives_a_reopen(durable_url: str) -> None:
    async with af.Engine(durable_url) as first:
        run = await first.start(reopen_wait_only)
        await wait_for_status(run, S.WAITING)
        await run.pause()
        await run.send_event("reopen_go", [1, 2])
        assert await run.status() == S.PAUSED
    async with af.Engine(durable_url) as second:
        handle = second.get_run(run.id)
        assert await handle.status() == S.PAUSED
        await handle.resume()
        assert await handle.result(timeout=5) == [1, 2]


async def test_run_closed_while_pausing_is_paused_after_reopen(
    durable_url: str, probe: Probe
) -> None:
    probe.values["gated"] = {"b"}
    async with af.Engine(durable_url) as first:
        run = await first.start(reopen_abc, probe.key)
        await probe.reached("b")
        await run.pause()
        assert await run.status() == S.PAUSING
    # The step never finished; the pause was recorded.
    async with af.Engine(durable_url) as second:
        handle = second.get_run(run.id)
        await wait_for_status(handle, S.PAUSED)
        assert probe.calls["b"] == 1  # not re-run while paused
        probe.open("b:go")
        await handle.resume()
        assert await handle.result(timeout=5) == [1, 2, 1]


@af.workflow(concurrency=1)
async def reopen_capped(key: str, label: str) -> int:
    return await mark(key, label)


async def test_queued_runs_continue_in_order_after_reopen(durable_url: str, probe: Probe) -> None:
    probe.values["gated"] = {"A"}
    async with af.Engine(durable_url) as first:
        ids = [(await first.start(reopen_capped, probe.key, label)).id for label in "ABC"]
        await probe.reached("A")
        assert [await first.get_run(i).status() for i in ids] == [
            S.RUNNING,
            S.QUEUED,
            S.QUEUED,
        ]
    probe.reset("A")
    async with af.Engine(durable_url) as second:
        await probe.reached("A")  # the interrupted step starts again
        assert await second.get_run(ids[1]).status() == S.QUEUED
        assert await second.get_run(ids[2]).status() == S.QUEUED
        probe.open("A:go")
        assert [await second.get_run(i).result(timeout=5) for i in ids] == [2, 1, 1]
    assert probe.order == ["A", "A", "B", "C"]


@af.workflow
async def reopen_hook(key: str, token: str) -> list[Any]:
    hook = af.create_hook(token)
    return [await mark(key, "before"), await hook]


async def test_hook_survives_reopen(durable_url: str, probe: Probe) -> None:
    token = f"reopen-hook-{probe.key}"
    async with af.Engine(durable_url) as first:
        run = await first.start(reopen_hook, probe.key, token)
        await wait_for_status(run, S.WAITING)
    async with af.Engine(durable_url) as second:
        await second.resume_hook(token, "after reopen")
        assert await second.get_run(run.id).result(timeout=5) == [1, "after reopen"]
        # Released when the recovered run finished.
        with pytest.raises(af.HookNotFoundError):
            await second.resume_hook(token, "again")
    async with af.Engine(durable_url) as third:
        with pytest.raises(af.HookNotFoundError):
            await third.resume_hook(token, "again")


async def test_finished_runs_stay_final_and_can_be_restarted_after_reopen(
    durable_url: str, probe: Probe
) -> None:
    probe.values["gated"] = {"b"}
    async with af.Engine(durable_url) as first:
        done = await first.start(reopen_abc, probe.key)
        stopped = await first.start(reopen_event, probe.key, None)
        await wait_for_status(stopped, S.WAITING)
        await stopped.terminate()
        probe.open("b:go")
        assert await done.result(timeout=5) == [1, 1, 1]
    async with af.Engine(durable_url) as second:
        assert await second.get_run(done.id).result(timeout=5) == [1, 1, 1]
        with pytest.raises(af.RunTerminatedError):
            await second.get_run(stopped.id).result(timeout=5)
        assert second.live_actors() == 0
        await second.get_run(done.id).restart(from_step="mark")
        assert await second.get_run(done.id).result(timeout=5) == [2, 2, 2]
        info = await second.get_run(done.id).info()
        assert info.generation == 1


async def test_paused_run_can_be_terminated_and_restarted_after_reopen(
    durable_url: str, probe: Probe
) -> None:
    async with af.Engine(durable_url) as first:
        run = await first.start(reopen_event, probe.key, None)
        await wait_for_status(run, S.WAITING)
        await run.pause()
    async with af.Engine(durable_url) as second:
        handle = second.get_run(run.id)
        assert await handle.status() == S.PAUSED
        await handle.terminate()
        with pytest.raises(af.RunTerminatedError):
            await handle.result(timeout=5)
        await handle.restart()
        await wait_for_status(handle, S.WAITING)
        await handle.send_event("reopen_go", "restarted")
        assert await handle.result(timeout=5) == [2, "restarted", 1]


@af.workflow
async def reopen_parent(key: str) -> Any:
    child = await af.start(reopen_event, key, None)
    return await child.result()


async def test_terminating_recovered_parent_terminates_its_child(
    durable_url: str, probe: Probe
) -> None:
    async with af.Engine(durable_url) as first:
        parent = await first.start(reopen_parent, probe.key)
        await wait_for_status(parent, S.WAITING)
        [child] = await first.list_runs(parent_id=parent.id)
        await wait_for_status(first.get_run(child.id), S.WAITING)
    async with af.Engine(durable_url) as second:
        assert second.live_actors() == 0  # both only wait for events: nothing to load
        await second.get_run(parent.id).terminate()
        with pytest.raises(af.RunTerminatedError):
            await second.get_run(child.id).result(timeout=5)


async def test_paused_run_still_meets_its_deadline_after_reopen(
    durable_url: str, probe: Probe
) -> None:
    async with af.Engine(durable_url) as first:
        # Long enough to be seen waiting, and paused, before the deadline under load.
        run = await first.start(reopen_event, probe.key, None, deadline="1s")
        await wait_for_status(run, S.WAITING)
        await run.pause()
    async with af.Engine(durable_url) as second:
        with pytest.raises(af.RunFailedError) as caught:
            await second.get_run(run.id).result(timeout=5)
        assert caught.value.error.type == "DeadlineExceededError"


async def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Any) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    with pytest.raises(af.ActorflowError, match=r"notes.txt cannot be an actorflow database"):
        async with af.Engine(f"sqlite:///{path}"):
            pass
    assert path.read_text() == "not a database\n" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no lock file either


async def test_another_applications_database_is_refused_untouched(tmp_path: Any) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('alice')")
    conn.commit()
    conn.close()
    with pytest.raises(af.ActorflowError, match=r"holds another application's tables \(users\)"):
        async with af.Engine(f"sqlite:///{path}"):
            pass
    conn = sqlite3.connect(path)
    try:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master")]
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert tables == ["users"]
    assert mode == "delete"  # not switched to WAL


@af.workflow
async def reopen_echo(value: str) -> str:
    return value


async def test_an_empty_file_becomes_an_actorflow_database(tmp_path: Any) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    async with af.Engine(f"sqlite:///{path}", workflows=[reopen_echo]) as engine:
        run = await engine.start(reopen_echo, "stored")
        assert await run.result(timeout=5) == "stored"
    async with af.Engine(f"sqlite:///{path}", workflows=[reopen_echo]) as engine:
        assert await engine.get_run(run.id).result(timeout=5) == "stored"
