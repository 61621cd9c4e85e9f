"""Idle eviction: waiting and paused runs leave memory and come back from their log."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import actorflow as af
from tests._probes import Probe, mark, new_probe
from tests.conftest import eventually, wait_for_status

S = af.RunStatus
IDLE = 0.02


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield from new_probe()


@pytest.fixture
async def evicting(store_url: str) -> AsyncIterator[af.Engine]:
    async with af.Engine(store_url, idle_timeout=IDLE, wake_ahead=0) as engine:
        yield engine


async def _evicted(engine: af.Engine, *runs: af.Run[Any], count: int = 0) -> None:
    """Wait until only `count` actors are live; the runs stay unfinished in the store."""
    await eventually(lambda: engine.live_actors() == count)
    for run in runs:
        assert not (await run.status()).is_final


@af.workflow
async def ev_sleeper(key: str) -> list[int]:
    before = await mark(key, "before")
    await af.sleep("500ms")
    return [before, await mark(key, "after")]


async def test_evicted_sleeping_run_wakes_on_its_timer(evicting: af.Engine, probe: Probe) -> None:
    run = await evicting.start(ev_sleeper, probe.key)
    await probe.reached("before")
    await _evicted(evicting, run)
    assert await run.status() == S.WAITING
    assert probe.calls["after"] == 0
    assert await run.result(timeout=5) == [1, 1]
    assert probe.calls == {"before": 1, "after": 1}  # the replay did not re-run `before`
    await eventually(lambda: evicting.live_actors() == 0)


@af.workflow
async def ev_event(key: str) -> list[Any]:
    before = await mark(key, "before")
    got = await af.wait_for_event("ev_go")
    return [before, got, await mark(key, "after")]


async def test_evicted_run_rehydrates_on_event(evicting: af.Engine, probe: Probe) -> None:
    run = await evicting.start(ev_event, probe.key)
    await wait_for_status(run, S.WAITING)
    await _evicted(evicting, run)
    info = await run.info()
    assert info.status == S.WAITING
    assert [s.name for s in info.steps] == ["mark"]
    await run.send_event("ev_go", {"x": 1})
    assert await run.result(timeout=5) == [1, {"x": 1}, 1]
    assert probe.calls == {"before": 1, "after": 1}
    await eventually(lambda: evicting.live_actors() == 0)


async def test_many_evicted_runs(evicting: af.Engine, probe: Probe) -> None:
    runs = [await evicting.start(ev_event, probe.key) for _ in range(20)]
    for run in runs:
        await wait_for_status(run, S.WAITING)
    await _evicted(evicting)
    for i, run in enumerate(runs):
        await run.send_event("ev_go", i)
    assert [(await r.result(timeout=5))[1] for r in runs] == list(range(20))
    assert probe.calls == {"before": 20, "after": 20}


@af.workflow
async def ev_two_types(key: str) -> list[Any]:
    first = await af.wait_for_event("ev_first")
    second = await af.wait_for_event("ev_second")
    return [first, second]


async def test_buffered_event_survives_eviction(evicting: af.Engine, probe: Probe) -> None:
    run = await evicting.start(ev_two_types, probe.key)
    await wait_for_status(run, S.WAITING)
    await run.send_event("ev_second", "buffered")  # not waited for yet
    await _evicted(evicting, run)
    await run.send_event("ev_first", "first")
    assert await run.result(timeout=5) == ["first", "buffered"]


@af.workflow
async def ev_event_timeout(key: str) -> str:
    try:
        return await af.wait_for_event("ev_never", timeout="400ms")
    except af.EventTimeoutError:
        return "timed out"


async def test_evicted_run_wakes_for_event_timeout(evicting: af.Engine, probe: Probe) -> None:
    run = await evicting.start(ev_event_timeout, probe.key)
    await wait_for_status(run, S.WAITING)
    await _evicted(evicting, run)
    assert await run.result(timeout=5) == "timed out"


@pytest.mark.parametrize("paused", [False, True])
async def test_evicted_run_wakes_for_deadline(
    evicting: af.Engine, probe: Probe, paused: bool
) -> None:
    # Long enough to be seen waiting, paused and evicted before the deadline under load.
    run = await evicting.start(ev_event, probe.key, deadline="1s")
    await wait_for_status(run, S.WAITING)
    if paused:
        await run.pause()
    await _evicted(evicting, run)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "DeadlineExceededError"


@af.workflow
async def ev_hook(key: str, token: str) -> list[Any]:
    hook = af.create_hook(token)
    before = await mark(key, "before")
    return [before, await hook, await hook]


async def test_evicted_run_rehydrates_on_hook(evicting: af.Engine, probe: Probe) -> None:
    token = f"ev-hook-{probe.key}"
    run = await evicting.start(ev_hook, probe.key, token)
    await wait_for_status(run, S.WAITING)
    await _evicted(evicting, run)
    await evicting.resume_hook(token, "one")
    await _evicted(evicting, run)  # waits again for the second payload, and is evicted
    await evicting.resume_hook(token, "two")
    assert await run.result(timeout=5) == [1, "one", "two"]
    assert probe.calls == {"before": 1}
    with pytest.raises(af.HookNotFoundError):
        await evicting.resume_hook(token, "three")


@af.workflow
async def ev_abc(key: str) -> list[int]:
    return [await mark(key, "a"), await mark(key, "b"), await mark(key, "c")]


async def test_evicted_paused_run_rehydrates_on_resume(evicting: af.Engine, probe: Probe) -> None:
    probe.values["gated"] = {"b"}
    run = await evicting.start(ev_abc, probe.key)
    await probe.reached("b")
    await run.pause()
    assert evicting.live_actors() == 1  # pausing: its step still runs
    probe.open("b:go")
    await wait_for_status(run, S.PAUSED)
    await _evicted(evicting, run)
    assert await run.status() == S.PAUSED
    await run.resume()
    assert await run.result(timeout=5) == [1, 1, 1]
    assert probe.calls == {"a": 1, "b": 1, "c": 1}


@af.workflow
async def ev_wait_only() -> Any:
    return await af.wait_for_event("ev_only")


async def test_evicted_run_holding_its_outcome_while_paused(evicting: af.Engine) -> None:
    run = await evicting.start(ev_wait_only)
    await wait_for_status(run, S.WAITING)
    await run.pause()
    await run.send_event("ev_only", "held")
    await _evicted(evicting, run)  # its workflow returned, but a paused run does not finish
    assert await run.status() == S.PAUSED
    await run.resume()
    assert await run.result(timeout=5) == "held"


async def test_control_of_evicted_runs(evicting: af.Engine, probe: Probe) -> None:
    run = await evicting.start(ev_event, probe.key)
    await wait_for_status(run, S.WAITING)
    await _evicted(evicting, run)
    await run.pause()
    assert await run.status() == S.PAUSED
    await _evicted(evicting, run)
    await run.send_event("ev_go", "while paused")
    await _evicted(evicting, run)
    assert probe.calls["after"] == 0
    await run.resume()
    assert await run.result(timeout=5) == [1, "while paused", 1]

    other = await evicting.start(ev_event, probe.key)
    await wait_for_status(other, S.WAITING)
    await _evicted(evicting, other)
    await other.terminate()
    with pytest.raises(af.RunTerminatedError):
        await other.result(timeout=5)

    third = await evicting.start(ev_event, probe.key)
    await wait_for_status(third, S.WAITING)
    await _evicted(evicting, third)
    await third.restart()
    await wait_for_status(third, S.WAITING)
    await third.send_event("ev_go", "restarted")
    assert (await third.result(timeout=5))[1] == "restarted"
    assert (await third.info()).generation == 1


@af.workflow
async def ev_parent(key: str) -> dict[str, Any]:
    child = await af.start(ev_event, key)
    return {"child": child.id, "value": await child.result()}


async def test_evicted_parent_rehydrates_on_child_completion(
    evicting: af.Engine, probe: Probe
) -> None:
    parent = await evicting.start(ev_parent, probe.key)
    await probe.reached("before")
    await wait_for_status(parent, S.WAITING)
    [child] = await evicting.list_runs(parent_id=parent.id)
    child_run = evicting.get_run(child.id)
    await wait_for_status(child_run, S.WAITING)
    await _evicted(evicting, parent, child_run)
    await child_run.send_event("ev_go", "from outside")
    assert await parent.result(timeout=5) == {
        "child": child.id,
        "value": [1, "from outside", 1],
    }
    # Rehydrating the parent replayed its journaled start: still exactly one child.
    assert [c.id for c in await evicting.list_runs(parent_id=parent.id)] == [child.id]
    assert probe.calls == {"before": 1, "after": 1}
    await eventually(lambda: evicting.live_actors() == 0)


async def test_no_eviction_without_idle_timeout_or_while_a_step_runs(
    store_url: str, probe: Probe
) -> None:
    probe.values["gated"] = {"a"}
    async with af.Engine(store_url, idle_timeout=None) as engine:
        waiting = await engine.start(ev_event, probe.key)
        await wait_for_status(waiting, S.WAITING)
        running = await engine.start(ev_abc, probe.key)
        await probe.reached("a")
        assert engine.live_actors() == 2
        await waiting.send_event("ev_go", 1)
        probe.open("a:go")
        assert (await waiting.result(timeout=5))[1] == 1
        assert await running.result(timeout=5) == [1, 1, 1]
    async with af.Engine(store_url, idle_timeout=IDLE) as engine:
        probe.reset("a:go")
        running = await engine.start(ev_abc, probe.key)
        await eventually(lambda: probe.calls["a"] == 2)
        # A running step is never evicted, however long it takes.
        await wait_for_status(running, S.RUNNING)
        assert engine.live_actors() == 1
        probe.open("a:go")
        assert await running.result(timeout=5) == [2, 2, 2]


@af.workflow(concurrency=1)
async def ev_capped(key: str, label: str) -> Any:
    await mark(key, f"{label}1")
    got = await af.wait_for_event("ev_go")
    await mark(key, f"{label}2")
    return got


async def test_rehydrated_run_queues_for_its_slot(evicting: af.Engine, probe: Probe) -> None:
    probe.values["gated"] = {"B1"}
    a = await evicting.start(ev_capped, probe.key, "A")
    await wait_for_status(a, S.WAITING)
    await _evicted(evicting, a)
    b = await evicting.start(ev_capped, probe.key, "B")
    await probe.reached("B1")  # the evicted run holds no slot
    await a.send_event("ev_go", "for A")
    await wait_for_status(a, S.QUEUED)
    assert probe.calls["A2"] == 0
    probe.open("B1:go")
    assert await a.result(timeout=5) == "for A"
    await b.send_event("ev_go", "for B")
    assert await b.result(timeout=5) == "for B"


async def test_terminating_evicted_parent_terminates_evicted_child(
    evicting: af.Engine, probe: Probe
) -> None:
    parent = await evicting.start(ev_parent, probe.key)
    await wait_for_status(parent, S.WAITING)
    [child] = await evicting.list_runs(parent_id=parent.id)
    child_run = evicting.get_run(child.id)
    await wait_for_status(child_run, S.WAITING)
    await _evicted(evicting, parent, child_run)
    await parent.terminate()
    with pytest.raises(af.RunTerminatedError):
        await child_run.result(timeout=5)
    assert probe.calls["after"] == 0


@af.workflow
async def ev_long_sleep(tag: str) -> str:
    await af.sleep("1.2s")
    return f"{tag} woke"


async def _fire_at(run: af.Run[Any]) -> float:
    async with contextlib.aclosing(run.events()) as events:
        async for event in events:
            if event.kind == "sleep_started":
                return float(event.data["fire_at"])
    raise AssertionError("no sleep_started event")


async def test_evicted_run_is_brought_back_ahead_of_its_timer(store_url: str) -> None:
    async with af.Engine(store_url, idle_timeout=IDLE, wake_ahead=0.5) as engine:
        run = await engine.start(ev_long_sleep, "ahead")
        fire_at = await _fire_at(run)
        await _evicted(engine, run)
        await eventually(lambda: engine.live_actors() == 1)
        assert time.time() < fire_at, "rehydrated before its timer was due"
        assert await run.status() == S.WAITING
        assert await run.result(timeout=5) == "ahead woke"
        fired = [e.at.timestamp() async for e in run.events() if e.kind == "sleep_fired"]
        assert len(fired) == 1 and fired[0] >= fire_at


async def test_run_due_within_wake_ahead_is_not_evicted(store_url: str) -> None:
    async with af.Engine(store_url, idle_timeout=IDLE, wake_ahead=5.0) as engine:
        run = await engine.start(ev_long_sleep, "kept")
        await wait_for_status(run, S.WAITING)
        with pytest.raises(AssertionError):  # 15 idle timeouts pass without an eviction
            await eventually(lambda: engine.live_actors() == 0, timeout=0.3)
        assert await run.result(timeout=5) == "kept woke"


@af.workflow
async def ev_long_sleeper() -> None:
    await af.sleep("1h")


async def test_evicted_runs_leave_no_reference_cycles(evicting: af.Engine, no_gc: None) -> None:
    # Memory freed only by the cyclic collector is returned to the OS late or never:
    # an evicted run must be freed by reference counting alone.
    runs = [await evicting.start(ev_long_sleeper) for _ in range(50)]
    await _evicted(evicting, *runs)
    assert gc.collect() < len(runs)  # a cycle per run would show 50 or more
