"""Concurrency slots: per-workflow and engine-wide caps, FIFO queueing, freed slots."""

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
async def conc_work(key: str, label: str) -> str:
    """Record the start order and the peak of concurrently running steps."""
    p = PROBES[key]
    p.order.append(label)
    active = p.values["active"] = p.values.get("active", 0) + 1
    p.values["peak"] = max(p.values.get("peak", 0), active)
    p.hit(label)
    try:
        if label in p.values.get("gated", ()):
            await p.gate(f"{label}:go")
    finally:
        p.values["active"] -= 1
    return label


@af.workflow(concurrency=2)
async def conc_capped(key: str, label: str) -> str:
    return await conc_work(key, label)


@af.workflow
async def conc_free_a(key: str, label: str) -> str:
    return await conc_work(key, label)


@af.workflow
async def conc_free_b(key: str, label: str) -> str:
    return await conc_work(key, label)


def _gate_all(p: Probe, labels: list[str]) -> None:
    p.values["gated"] = set(labels)


async def test_per_workflow_cap_queues_fifo(engine: af.Engine, probe: Probe) -> None:
    labels = [f"r{i}" for i in range(5)]
    _gate_all(probe, labels)
    runs = [await engine.start(conc_capped, probe.key, label) for label in labels]
    await probe.reached("r0")
    await probe.reached("r1")
    for run in runs[:2]:
        assert await run.status() == S.RUNNING
    for run in runs[2:]:
        assert await run.status() == S.QUEUED
    queued = await engine.list_runs(status="queued", workflow=conc_capped)
    assert {r.id for r in queued} == {r.id for r in runs[2:]}
    assert all(r.started_at is None for r in queued)
    assert sorted(probe.order) == ["r0", "r1"]

    probe.open("r1:go")
    assert await runs[1].result(timeout=5) == "r1"
    await probe.reached("r2")  # the oldest queued run got the slot
    assert await runs[2].status() == S.RUNNING
    assert await runs[3].status() == S.QUEUED
    probe.open("r0:go")
    await probe.reached("r3")
    assert await runs[4].status() == S.QUEUED
    for label in labels:
        probe.open(f"{label}:go")
    assert [await r.result(timeout=5) for r in runs] == labels
    assert probe.order[2:] == ["r2", "r3", "r4"]
    assert probe.values["peak"] == 2
    for run in runs:
        info = await run.info()
        assert info.started_at is not None and info.started_at >= info.created_at


async def test_cap_does_not_block_other_workflows(engine: af.Engine, probe: Probe) -> None:
    _gate_all(probe, ["c0", "c1", "c2"])
    capped = [await engine.start(conc_capped, probe.key, f"c{i}") for i in range(3)]
    await probe.reached("c1")
    assert await capped[2].status() == S.QUEUED
    free = await engine.start(conc_free_a, probe.key, "free")
    assert await free.result(timeout=5) == "free"
    for i in range(3):
        probe.open(f"c{i}:go")
    assert [await r.result(timeout=5) for r in capped] == ["c0", "c1", "c2"]


async def test_engine_wide_cap_across_workflows(store_url: str, probe: Probe) -> None:
    labels = [f"e{i}" for i in range(5)]
    _gate_all(probe, labels)
    async with af.Engine(store_url, max_concurrency=2) as engine:
        runs = []
        for i, label in enumerate(labels):
            wf = conc_free_a if i % 2 == 0 else conc_free_b
            runs.append(await engine.start(wf, probe.key, label))
        await probe.reached("e0")
        await probe.reached("e1")
        assert [await r.status() for r in runs] == [S.RUNNING] * 2 + [S.QUEUED] * 3
        for i, label in enumerate(labels):
            probe.open(f"{label}:go")
            assert await runs[i].result(timeout=5) == label
        assert probe.order[2:] == ["e2", "e3", "e4"]
        assert probe.values["peak"] == 2


@af.workflow(concurrency=1)
async def conc_waiter(key: str, label: str, how: str) -> Any:
    await conc_work(key, f"{label}-1")
    got = await af.wait_for_event("conc_go") if how == "event" else await af.sleep("60s")
    await conc_work(key, f"{label}-2")
    return got


async def test_waiting_runs_free_their_slot(engine: af.Engine, probe: Probe) -> None:
    _gate_all(probe, ["B-2"])
    a = await engine.start(conc_waiter, probe.key, "A", "event")
    await wait_for_status(a, S.WAITING)
    # A waits: B gets the only slot.
    b = await engine.start(conc_waiter, probe.key, "B", "event")
    await wait_for_status(b, S.WAITING)
    assert probe.order == ["A-1", "B-1"]
    await b.send_event("conc_go", "for B")
    await probe.reached("B-2")  # B holds the slot again
    await a.send_event("conc_go", "for A")
    await wait_for_status(a, S.QUEUED)
    assert probe.calls["A-2"] == 0
    probe.open("B-2:go")
    assert await b.result(timeout=5) == "for B"
    assert await a.result(timeout=5) == "for A"
    assert probe.order == ["A-1", "B-1", "B-2", "A-2"]
    assert probe.values["peak"] == 1


async def test_sleeping_runs_free_their_slot(engine: af.Engine, probe: Probe) -> None:
    sleeper = await engine.start(conc_waiter, probe.key, "S", "sleep")
    await wait_for_status(sleeper, S.WAITING)
    other = await engine.start(conc_capped, probe.key, "other")
    assert await other.result(timeout=5) == "other"
    for label in ("T", "U"):
        run = await engine.start(conc_waiter, probe.key, label, "event")
        await wait_for_status(run, S.WAITING)
    assert await sleeper.status() == S.WAITING
    assert probe.order == ["S-1", "other", "T-1", "U-1"]
    await sleeper.terminate()


@af.workflow(concurrency=1)
async def conc_two_steps(key: str, label: str) -> list[str]:
    return [await conc_work(key, f"{label}-1"), await conc_work(key, f"{label}-2")]


async def test_paused_runs_free_their_slot(engine: af.Engine, probe: Probe) -> None:
    _gate_all(probe, ["A-1", "B-1"])
    a = await engine.start(conc_two_steps, probe.key, "A")
    await probe.reached("A-1")
    b = await engine.start(conc_two_steps, probe.key, "B")
    assert await b.status() == S.QUEUED
    await a.pause()
    assert await a.status() == S.PAUSING  # still holds the slot while its step runs
    assert await b.status() == S.QUEUED
    probe.open("A-1:go")
    await wait_for_status(a, S.PAUSED)
    await probe.reached("B-1")  # the paused run gave its slot to B
    await a.resume()
    assert await a.status() == S.QUEUED  # resumed, but the slot is B's
    probe.open("B-1:go")
    assert await b.result(timeout=5) == ["B-1", "B-2"]
    assert await a.result(timeout=5) == ["A-1", "A-2"]
    assert probe.order == ["A-1", "B-1", "B-2", "A-2"]
    assert probe.values["peak"] == 1


async def test_queued_runs_can_be_paused_and_terminated(engine: af.Engine, probe: Probe) -> None:
    _gate_all(probe, ["A-1"])
    a = await engine.start(conc_two_steps, probe.key, "A")
    await probe.reached("A-1")
    b = await engine.start(conc_two_steps, probe.key, "B")
    c = await engine.start(conc_two_steps, probe.key, "C")
    d = await engine.start(conc_two_steps, probe.key, "D")
    assert [await r.status() for r in (b, c, d)] == [S.QUEUED] * 3
    await b.pause()
    assert await b.status() == S.PAUSED
    await c.terminate()
    with pytest.raises(af.RunTerminatedError):
        await c.result(timeout=5)
    probe.open("A-1:go")
    # Neither the paused nor the terminated run takes the freed slot.
    assert await d.result(timeout=5) == ["D-1", "D-2"]
    assert await a.result(timeout=5) == ["A-1", "A-2"]
    assert await b.status() == S.PAUSED
    assert probe.calls["B-1"] == probe.calls["C-1"] == 0
    await b.resume()
    assert await b.result(timeout=5) == ["B-1", "B-2"]
    assert probe.order == ["A-1", "A-2", "D-1", "D-2", "B-1", "B-2"]
    await eventually(lambda: probe.values["active"] == 0)


async def test_full_workflow_does_not_block_the_engine_queue(store_url: str, probe: Probe) -> None:
    """A queued run whose workflow is at its cap does not hold back a later run of
    another workflow that fits under the engine-wide cap."""
    _gate_all(probe, ["c0", "c1", "c2", "f"])
    async with af.Engine(store_url, max_concurrency=3) as engine:
        capped = [await engine.start(conc_capped, probe.key, f"c{i}") for i in range(3)]
        await probe.reached("c1")
        assert await capped[2].status() == S.QUEUED
        free = await engine.start(conc_free_a, probe.key, "f")
        await probe.reached("f")
        assert await free.status() == S.RUNNING
        blocked = await engine.start(conc_free_b, probe.key, "g")
        assert await blocked.status() == S.QUEUED  # engine-wide cap of 3 reached
        probe.open("f:go")
        assert await free.result(timeout=5) == "f"
        assert await blocked.result(timeout=5) == "g"
        assert await capped[2].status() == S.QUEUED  # its workflow is still full
        for i in range(3):
            probe.open(f"c{i}:go")
        assert [await r.result(timeout=5) for r in capped] == ["c0", "c1", "c2"]
        assert probe.values["peak"] == 3


async def test_runs_started_together_with_start_many_respect_the_cap(
    engine: af.Engine, probe: Probe
) -> None:
    labels = [f"m{i}" for i in range(6)]
    _gate_all(probe, labels)
    runs = await engine.start_many(conc_capped, [(probe.key, label) for label in labels])
    await probe.reached("m0")
    await probe.reached("m1")
    assert [await r.status() for r in runs] == [S.RUNNING] * 2 + [S.QUEUED] * 4
    for label in labels:
        probe.open(f"{label}:go")
    assert [await r.result(timeout=5) for r in runs] == labels
    assert probe.values["peak"] == 2
    assert probe.order == labels, "slots are granted in start order"
