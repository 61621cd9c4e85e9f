from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import actorflow as af
from tests._probes import PROBES, Probe, new_probe
from tests.conftest import eventually, wait_for_status

S = af.RunStatus


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield from new_probe()


@af.step
async def scr_mark(key: str, name: str) -> int:
    p = PROBES[key]
    n = p.hit(name)
    if name in p.values.get("gated", ()):
        await p.gate(f"{name}:go")
    return n


@af.workflow
async def scr_kid(x: int) -> int:
    return x * 10


@af.workflow
async def scr_parent(key: str) -> list[Any]:
    child = await af.start(scr_kid, 2)
    v = await child.result()
    return [child.id, v, await scr_mark(key, "after")]


async def test_restart_after_child_keeps_child(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(scr_parent, probe.key)
    first = await run.result(timeout=5)
    await run.restart(from_step="scr_mark")
    second = await run.result(timeout=5)
    assert second[:2] == first[:2]
    assert second[2] == 2
    assert len(await engine.list_runs(parent_id=run.id)) == 1
    await run.restart()
    third = await run.result(timeout=5)
    assert third[0] != first[0]
    assert len(await engine.list_runs(parent_id=run.id)) == 2


@af.workflow
async def scr_hook(token: str) -> Any:
    return await af.create_hook(token)


async def test_restart_hook_run(engine: af.Engine, probe: Probe) -> None:
    token = f"scr-{probe.key}"
    run = await engine.start(scr_hook, token)
    await wait_for_status(run, S.WAITING)
    await engine.resume_hook(token, 1)
    assert await run.result(timeout=5) == 1
    await run.restart()
    await wait_for_status(run, S.WAITING)
    await engine.resume_hook(token, 2)
    assert await run.result(timeout=5) == 2
    # restart while waiting on the hook
    await run.restart()
    await wait_for_status(run, S.WAITING)
    await run.restart()
    await wait_for_status(run, S.WAITING)
    await engine.resume_hook(token, 3)
    assert await run.result(timeout=5) == 3


@af.workflow
async def scr_sleep_paused(key: str) -> int:
    await af.sleep("100ms")
    return await scr_mark(key, "after")


async def test_sleep_fires_while_paused(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(scr_sleep_paused, probe.key)
    await wait_for_status(run, S.WAITING)
    await run.pause()
    async def fired() -> bool:
        return any([e.kind == "sleep_fired" for e in await engine.store.load_events(run.id)])
    await eventually(fired)
    assert await run.status() == S.PAUSED
    assert probe.calls["after"] == 0
    await run.resume()
    assert await run.result(timeout=5) == 1


async def test_pause_closed_reopen_terminate(sqlite_url: str, probe: Probe) -> None:
    async with af.Engine(sqlite_url) as e1:
        run = await e1.start(scr_sleep_paused, probe.key)
        await wait_for_status(run, S.WAITING)
        await run.pause()
    async with af.Engine(sqlite_url) as e2:
        r = e2.get_run(run.id)
        assert await r.status() == S.PAUSED
        await r.terminate()
        with pytest.raises(af.RunTerminatedError):
            await r.result(timeout=5)
        await r.restart()
        assert await r.result(timeout=5) == 1


@af.workflow(concurrency=1)
async def scr_capped_wait(key: str, label: str) -> Any:
    await scr_mark(key, label + "1")
    got = await af.wait_for_event("scr_go")
    await scr_mark(key, label + "2")
    return got


async def test_evicted_capped(store_url: str, probe: Probe) -> None:
    probe.values["gated"] = {"B1"}
    async with af.Engine(store_url, idle_timeout=0.01) as e:
        a = await e.start(scr_capped_wait, probe.key, "A")
        await wait_for_status(a, S.WAITING)
        await eventually(lambda: e.live_actors() == 0)
        b = await e.start(scr_capped_wait, probe.key, "B")
        await probe.reached("B1")
        await a.send_event("scr_go", 1)
        await wait_for_status(a, S.QUEUED)
        probe.open("B1:go")
        await wait_for_status(b, S.WAITING)
        assert await a.result(timeout=5) == 1
        await b.send_event("scr_go", 2)
        assert await b.result(timeout=5) == 2


@af.workflow
async def scr_waiter_child(key: str) -> Any:
    return await af.wait_for_event("scr_go")


@af.workflow
async def scr_parent_of_waiter(key: str) -> Any:
    c = await af.start(scr_waiter_child, key)
    return await c.result()


async def test_parent_terminated_while_evicted(store_url: str, probe: Probe) -> None:
    async with af.Engine(store_url, idle_timeout=0.01) as e:
        p = await e.start(scr_parent_of_waiter, probe.key)
        await wait_for_status(p, S.WAITING)
        [c] = await e.list_runs(parent_id=p.id)
        await wait_for_status(e.get_run(c.id), S.WAITING)
        await eventually(lambda: e.live_actors() == 0)
        await p.terminate()
        await wait_for_status(e.get_run(c.id), S.TERMINATED)


async def test_parent_closed_child_terminated_reopen(sqlite_url: str, probe: Probe) -> None:
    async with af.Engine(sqlite_url) as e1:
        p = await e1.start(scr_parent_of_waiter, probe.key)
        await wait_for_status(p, S.WAITING)
        [c] = await e1.list_runs(parent_id=p.id)
        await wait_for_status(e1.get_run(c.id), S.WAITING)
    async with af.Engine(sqlite_url) as e2:
        await e2.get_run(p.id).terminate()
        await wait_for_status(e2.get_run(c.id), S.TERMINATED)
