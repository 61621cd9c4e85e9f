"""Child runs: results, failures, recursion, termination and journaling."""

from __future__ import annotations

import asyncio
import itertools
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


@af.step
async def child_double(x: int) -> int:
    return 2 * x


@af.step
async def child_explode(message: str) -> None:
    raise af.FatalError(message)


@af.workflow
async def child_doubler(x: int) -> dict[str, Any]:
    return {"doubled": await child_double(x), "parent": af.workflow_info().parent_id}


@af.workflow
async def child_sum_parent(xs: list[int]) -> dict[str, Any]:
    children = [await af.start(child_doubler, x) for x in xs]
    results = await asyncio.gather(*(c.result() for c in children))
    return {"ids": [c.id for c in children], "results": results}


async def test_child_results(engine: af.Engine) -> None:
    parent = await engine.start(child_sum_parent, [1, 2, 3])
    out = await parent.result(timeout=5)
    assert [r["doubled"] for r in out["results"]] == [2, 4, 6]
    assert {r["parent"] for r in out["results"]} == {parent.id}
    children = await engine.list_runs(parent_id=parent.id)
    assert sorted(c.id for c in children) == sorted(out["ids"])
    for child_id in out["ids"]:
        info = await engine.get_run(child_id).info()
        assert info.status == S.COMPLETED
        assert info.parent_id == parent.id
        assert info.workflow == "child_doubler"
    kinds = [e.kind async for e in parent.events()]
    assert kinds.count("child_started") == 3
    assert kinds.count("child_finished") == 3


@af.workflow
async def child_waits_for_go(key: str) -> str:
    await mark(key, "child")
    return f"child got {await af.wait_for_event('child_go')}"


@af.workflow
async def child_awaiting_parent(key: str) -> dict[str, Any]:
    await mark(key, "parent-before")
    child = await af.start(child_waits_for_go, key)
    await mark(key, "parent-after-start")
    return {"id": child.id, "value": await child.result()}


async def test_parent_waits_for_child_without_holding_status_running(
    engine: af.Engine, probe: Probe
) -> None:
    parent = await engine.start(child_awaiting_parent, probe.key)
    await probe.reached("child")
    await wait_for_status(parent, S.WAITING)
    [child] = await engine.list_runs(parent_id=parent.id)
    await wait_for_status(engine.get_run(child.id), S.WAITING)
    await engine.get_run(child.id).send_event("child_go", 7)
    assert await parent.result(timeout=5) == {"id": child.id, "value": "child got 7"}
    assert probe.calls == {"parent-before": 1, "child": 1, "parent-after-start": 1}


async def test_child_finishing_before_it_is_awaited(engine: af.Engine, probe: Probe) -> None:
    probe.values["gated"] = {"parent-after-start"}
    parent = await engine.start(child_awaiting_parent, probe.key)
    await probe.reached("parent-after-start")
    [child] = await engine.list_runs(parent_id=parent.id)
    child_run = engine.get_run(child.id)
    await wait_for_status(child_run, S.WAITING)
    await child_run.send_event("child_go", "early")
    assert await child_run.result(timeout=5) == "child got early"
    probe.open("parent-after-start:go")
    assert (await parent.result(timeout=5))["value"] == "child got early"


@af.workflow
async def child_failing(message: str) -> None:
    await child_explode(message)


@af.workflow
async def child_catching_parent(message: str) -> dict[str, Any]:
    child = await af.start(child_failing, message)
    try:
        await child.result()
    except af.RunFailedError as exc:
        return {
            "same_run": exc.run_id == child.id,
            "type": exc.error.type,
            "message": exc.error.message,
        }
    return {"caught": False}


@af.workflow
async def child_uncaught_parent(message: str) -> None:
    child = await af.start(child_failing, message)
    await child.result()


async def test_child_failure_is_catchable_in_parent(engine: af.Engine) -> None:
    parent = await engine.start(child_catching_parent, "kaboom")
    assert await parent.result(timeout=5) == {
        "same_run": True,
        "type": "FatalError",
        "message": "kaboom",
    }
    [child] = await engine.list_runs(parent_id=parent.id)
    assert child.status == S.FAILED


async def test_child_failure_uncaught_fails_parent(engine: af.Engine) -> None:
    parent = await engine.start(child_uncaught_parent, "kaboom")
    with pytest.raises(af.RunFailedError) as caught:
        await parent.result(timeout=5)
    assert caught.value.error.type == "RunFailedError"
    assert "kaboom" in caught.value.error.message


@af.workflow
async def child_terminated_parent(key: str) -> str:
    child = await af.start(child_waits_for_go, key)
    try:
        await child.result()
    except af.RunTerminatedError as exc:
        return f"terminated {exc.run_id == child.id}"
    return "finished"


async def test_child_terminated_is_reported_to_parent(engine: af.Engine, probe: Probe) -> None:
    parent = await engine.start(child_terminated_parent, probe.key)
    await probe.reached("child")
    [child] = await engine.list_runs(parent_id=parent.id)
    await engine.get_run(child.id).terminate()
    assert await parent.result(timeout=5) == "terminated True"


@af.workflow
async def child_chain(n: int) -> list[str]:
    me = af.workflow_info().run_id
    if n == 0:
        return [me]
    child = await af.start(child_chain, n - 1)
    return [me, *await child.result()]


async def test_recursive_self_start_chain(engine: af.Engine) -> None:
    root = await engine.start(child_chain, 5)
    ids = await root.result(timeout=10)
    assert len(ids) == 6 and len(set(ids)) == 6
    assert ids[0] == root.id
    for parent_id, child_id in itertools.pairwise(ids):
        info = await engine.get_run(child_id).info()
        assert info.parent_id == parent_id
        assert info.status == S.COMPLETED
    runs = await engine.list_runs(workflow="child_chain")
    assert len(runs) == 6


@af.workflow
async def child_two_waiters(key: str) -> list[str]:
    first = await af.start(child_waits_for_go, key)
    second = await af.start(child_waits_for_go, key)
    return [await first.result(), await second.result()]


async def test_terminating_parent_terminates_children(engine: af.Engine, probe: Probe) -> None:
    parent = await engine.start(child_two_waiters, probe.key)
    await eventually(lambda: probe.calls["child"] == 2)
    children = [engine.get_run(c.id) for c in await engine.list_runs(parent_id=parent.id)]
    assert len(children) == 2
    await parent.terminate()
    with pytest.raises(af.RunTerminatedError):
        await parent.result(timeout=5)
    for child in children:
        with pytest.raises(af.RunTerminatedError):
            await child.result(timeout=5)


@af.workflow
async def child_grandparent(key: str) -> list[str]:
    child = await af.start(child_two_waiters, key)
    return await child.result()


async def test_termination_reaches_grandchildren(engine: af.Engine, probe: Probe) -> None:
    root = await engine.start(child_grandparent, probe.key)
    await eventually(lambda: probe.calls["child"] == 2)
    [middle] = await engine.list_runs(parent_id=root.id)
    grandchildren = await engine.list_runs(parent_id=middle.id)
    assert len(grandchildren) == 2
    await root.terminate()
    for run_id in [middle.id, *(g.id for g in grandchildren)]:
        await wait_for_status(engine.get_run(run_id), S.TERMINATED)


async def test_restarting_parent_terminates_old_child_and_starts_a_new_one(
    engine: af.Engine, probe: Probe
) -> None:
    parent = await engine.start(child_awaiting_parent, probe.key)
    await probe.reached("child")
    await wait_for_status(parent, S.WAITING)
    [old] = await engine.list_runs(parent_id=parent.id)
    await parent.restart()
    await wait_for_status(engine.get_run(old.id), S.TERMINATED)
    await eventually(lambda: probe.calls["child"] == 2)
    children = await engine.list_runs(parent_id=parent.id)
    [new] = [c for c in children if c.id != old.id]
    await wait_for_status(engine.get_run(new.id), S.WAITING)
    await engine.get_run(new.id).send_event("child_go", "again")
    assert await parent.result(timeout=5) == {"id": new.id, "value": "child got again"}
    assert probe.calls["parent-before"] == 2


@pytest.mark.parametrize("close_during", ["child-wait", "parent-step"])
async def test_child_start_is_journaled_across_engine_restart(
    durable_url: str, probe: Probe, close_during: str
) -> None:
    """Reopening the store replays the parent: its recorded `af.start` does not start a
    second child, and recorded steps do not run again."""
    if close_during == "parent-step":
        probe.values["gated"] = {"parent-after-start"}
    first = af.Engine(durable_url)
    await first.open()
    try:
        parent_id = (await first.start(child_awaiting_parent, probe.key)).id
        await probe.reached("child")
        if close_during == "parent-step":
            await probe.reached("parent-after-start")
        else:
            await wait_for_status(first.get_run(parent_id), S.WAITING)
        [child] = await first.list_runs(parent_id=parent_id)
        await wait_for_status(first.get_run(child.id), S.WAITING)
    finally:
        await first.close()

    probe.open("parent-after-start:go")
    async with af.Engine(durable_url) as second:
        parent = second.get_run(parent_id)
        child_run = second.get_run(child.id)
        await wait_for_status(child_run, S.WAITING)
        await child_run.send_event("child_go", "after reopen")
        assert await parent.result(timeout=5) == {"id": child.id, "value": "child got after reopen"}
        assert [c.id for c in await second.list_runs(parent_id=parent_id)] == [child.id]
        assert len(await second.list_runs(workflow="child_waits_for_go")) == 1
        kinds = [e.kind async for e in parent.events()]
        assert kinds.count("child_started") == 1
    assert probe.calls["parent-before"] == 1
    assert probe.calls["child"] == 1
    # A step that was running when the engine closed runs again (at-least-once).
    expected = 2 if close_during == "parent-step" else 1
    assert probe.calls["parent-after-start"] == expected


async def test_child_finished_while_engine_closed_is_picked_up(
    durable_url: str, probe: Probe
) -> None:
    """The parent learns of a child outcome that was committed while it was not in memory."""
    first = af.Engine(durable_url)
    await first.open()
    try:
        parent_id = (await first.start(child_awaiting_parent, probe.key)).id
        await probe.reached("child")
        await wait_for_status(first.get_run(parent_id), S.WAITING)
        [child] = await first.list_runs(parent_id=parent_id)
        child_run = first.get_run(child.id)
        await wait_for_status(child_run, S.WAITING)
        await child_run.send_event("child_go", "just in time")
        assert await child_run.result(timeout=5) == "child got just in time"
    finally:
        await first.close()
    async with af.Engine(durable_url) as second:
        parent = second.get_run(parent_id)
        assert (await parent.result(timeout=5))["value"] == "child got just in time"


@af.workflow
async def child_step_and_start_together(key: str) -> list[Any]:
    marked, child = await asyncio.gather(mark(key, "beside"), af.start(child_doubler, 4))
    return [marked, (await child.result())["doubled"]]


async def test_parent_log_stays_ordered_when_a_step_and_a_child_start_together(
    engine: af.Engine, probe: Probe
) -> None:
    parent = await engine.start(child_step_and_start_together, probe.key)
    assert await parent.result(timeout=5) == [1, 8]
    events = [e async for e in parent.events()]
    indexes = [e.index for e in events]
    assert indexes == sorted(indexes) == list(range(len(events)))
    kinds = [e.kind for e in events]
    assert kinds.count("child_started") == 1 and kinds.count("step_started") == 1
    [child] = await engine.list_runs(parent_id=parent.id)
    child_kinds = [e.kind async for e in engine.get_run(child.id).events()]
    assert "child_started" not in child_kinds


@af.workflow
async def child_then_step(key: str) -> list[Any]:
    child = await af.start(child_doubler, 2)
    value = await child.result()
    return [child.id, value["doubled"], await mark(key, "after-child")]


async def test_restart_after_the_child_keeps_it_restart_before_starts_a_new_one(
    engine: af.Engine, probe: Probe
) -> None:
    parent = await engine.start(child_then_step, probe.key)
    first_id, doubled, n = await parent.result(timeout=5)
    assert (doubled, n) == (4, 1)
    await parent.restart(from_step="mark")
    assert await parent.result(timeout=5) == [first_id, 4, 2]
    assert [c.id for c in await engine.list_runs(parent_id=parent.id)] == [first_id]
    await parent.restart()
    second_id, doubled, n = await parent.result(timeout=5)
    assert second_id != first_id and (doubled, n) == (4, 3)
    children = await engine.list_runs(parent_id=parent.id)
    assert sorted(c.id for c in children) == sorted([first_id, second_id])


@af.workflow
async def child_with_chosen_id(child_id: str) -> dict[str, Any]:
    try:
        await af.start(child_doubler, 5, id=child_id)
    except af.RunAlreadyExistsError as exc:
        taken = str(exc)
    else:
        taken = ""
    await af.wait_for_event("go")
    fresh = await af.start(child_doubler, 6, id=f"{child_id}-fresh")
    return {"taken": taken, "fresh": await fresh.result()}


async def test_a_child_id_that_is_taken_raises_in_the_parent_and_replays(
    durable_url: str,
) -> None:
    """`af.start(..., id=)` inside a workflow with an existing id raises (catchable) and
    leaves the existing run alone; after a reopen, replay takes the same path."""
    async with af.Engine(durable_url) as engine:
        existing = await engine.start(child_doubler, 1, id="chosen-child")
        assert (await existing.result(timeout=5))["doubled"] == 2
        parent = await engine.start(child_with_chosen_id, "chosen-child")
        await wait_for_status(parent, S.WAITING)
    async with af.Engine(durable_url) as engine:
        await engine.get_run(parent.id).send_event("go")
        out = await engine.get_run(parent.id).result(timeout=5)
        assert "chosen-child" in out["taken"]
        assert out["fresh"] == {"doubled": 12, "parent": parent.id}
        assert (await engine.get_run("chosen-child").result())["doubled"] == 2
        children = await engine.list_runs(parent_id=parent.id)
        events = [e async for e in engine.get_run(parent.id).events()]
    assert [c.id for c in children] == ["chosen-child-fresh"]
    started = [e.data for e in events if e.kind == "child_started"]
    assert len(started) == 2 and "error" in started[0] and "error" not in started[1]


@af.workflow
async def child_timeout_parent(key: str, timeout: float) -> dict[str, Any]:
    child = await af.start(child_waits_for_go, key)
    try:
        first = await child.result(timeout=timeout)
    except TimeoutError:
        first = "timed out"
    await af.wait_for_event("parent_go")
    return {"first": first, "final": await child.result()}


async def test_child_result_timeout_in_a_workflow_is_a_durable_timer(
    engine: af.Engine, probe: Probe
) -> None:
    parent = await engine.start(child_timeout_parent, probe.key, 0.05)
    await eventually(lambda: _logged(engine, parent.id, "sleep_fired"))
    assert not await _logged(engine, parent.id, "child_finished")
    [child] = await engine.list_runs(parent_id=parent.id)
    await engine.get_run(child.id).send_event("child_go", "late")
    await parent.send_event("parent_go")
    assert await parent.result(timeout=5) == {"first": "timed out", "final": "child got late"}


async def _logged(engine: af.Engine, run_id: str, kind: str) -> bool:
    """Whether the run's committed log holds an entry of `kind`."""
    return kind in [e.kind for e in await engine.store.load_events(run_id)]


async def test_child_result_within_its_timeout_in_a_workflow(
    engine: af.Engine, probe: Probe
) -> None:
    parent = await engine.start(child_timeout_parent, probe.key, 60)
    await probe.reached("child")
    [child] = await engine.list_runs(parent_id=parent.id)
    child_run = engine.get_run(child.id)
    await wait_for_status(child_run, S.WAITING)
    await child_run.send_event("child_go", "quick")
    await eventually(lambda: _logged(engine, parent.id, "child_finished"))
    # The child won: the timer is cancelled, the waiting parent has no wake-up time.
    await wait_for_status(parent, S.WAITING)
    assert (await engine._client.stored_run(parent.id)).wake_at is None
    await parent.send_event("parent_go")
    out = await parent.result(timeout=5)
    assert out == {"first": "child got quick", "final": "child got quick"}


async def test_child_result_timeout_replays_as_it_happened(durable_url: str, probe: Probe) -> None:
    """The timer fired before the child finished: after a reopen the parent replays both
    entries in log order and still sees the timeout."""
    async with af.Engine(durable_url) as first:
        parent = await first.start(child_timeout_parent, probe.key, 0.05)
        await eventually(lambda: _logged(first, parent.id, "sleep_fired"))
        [child] = await first.list_runs(parent_id=parent.id)
        await first.get_run(child.id).send_event("child_go", "late")
        assert await first.get_run(child.id).result(timeout=5) == "child got late"
        await eventually(lambda: _logged(first, parent.id, "child_finished"))
    async with af.Engine(durable_url) as second:
        parent = second.get_run(parent.id)
        kinds = [e.kind for e in await second.store.load_events(parent.id)]
        assert kinds.index("sleep_fired") < kinds.index("child_finished")
        await parent.send_event("parent_go")
        assert await parent.result(timeout=5) == {"first": "timed out", "final": "child got late"}
