"""Run control: pause, resume, terminate and restart, on memory:// and SQLite."""

from __future__ import annotations

import asyncio
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


async def _step_body(key: str, name: str) -> str:
    """Count the call; block on `<name>:go` if gated; fail if asked; note cancellation."""
    p = PROBES[key]
    n = p.hit(name)
    try:
        if name in p.values.get("gated", ()):
            await p.gate(f"{name}:go")
    except asyncio.CancelledError:
        p.hit(f"{name}:cancelled")
        raise
    if name in p.values.get("fail", ()):
        raise af.FatalError(f"{name} was told to fail")
    return f"{name}{n}"


@af.step
async def ctl_a(key: str) -> str:
    return await _step_body(key, "a")


@af.step
async def ctl_b(key: str) -> str:
    return await _step_body(key, "b")


@af.step
async def ctl_c(key: str) -> str:
    return await _step_body(key, "c")


@af.workflow
async def ctl_abc(key: str) -> list[str]:
    return [await ctl_a(key), await ctl_b(key), await ctl_c(key)]


@af.workflow
async def ctl_a_wait_b(key: str) -> list[Any]:
    a = await ctl_a(key)
    got = await af.wait_for_event("ctl_go")
    return [a, got, await ctl_b(key)]


@af.workflow
async def ctl_long_sleep(key: str) -> str:
    await ctl_a(key)
    await af.sleep("60s")
    return await ctl_b(key)


@af.workflow
async def ctl_b_twice(key: str) -> list[str]:
    return [await ctl_a(key), await ctl_b(key), await ctl_b(key), await ctl_c(key)]


def _gate(p: Probe, *names: str) -> None:
    p.values["gated"] = set(names)


async def _kinds(run: af.Run[Any]) -> list[tuple[int, str, str | None]]:
    """(generation, kind, name) of every event, once the run is final."""
    return [(e.generation, e.kind, e.name) async for e in run.events()]


def _index(events: list[tuple[int, str, str | None]], kind: str, name: str | None = None) -> int:
    for i, (_, k, n) in enumerate(events):
        if k == kind and (name is None or n == name):
            return i
    raise AssertionError(f"no {kind} {name} in {events}")


# -- pause / resume -------------------------------------------------------------------------


async def test_pause_while_step_runs_takes_effect_at_step_boundary(
    engine: af.Engine, probe: Probe
) -> None:
    _gate(probe, "b")
    run = await engine.start(ctl_abc, probe.key)
    await probe.reached("b")
    await run.pause()
    assert await run.status() == S.PAUSING  # the current step is still running
    probe.open("b:go")
    await wait_for_status(run, S.PAUSED)
    assert probe.calls["c"] == 0
    info = await run.info()
    assert info.status == S.PAUSED
    assert [(s.name, s.status) for s in info.steps] == [
        ("ctl_a", "completed"),
        ("ctl_b", "completed"),
    ]
    await run.resume()
    assert await run.result(timeout=5) == ["a1", "b1", "c1"]
    events = await _kinds(run)
    # No step started between the pause and the resume.
    assert _index(events, "run_paused") < _index(events, "step_completed", "ctl_b")
    assert _index(events, "run_resumed") < _index(events, "step_started", "ctl_c")
    assert probe.calls == {"a": 1, "b": 1, "c": 1}


async def test_pause_while_waiting_holds_the_next_step(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(ctl_a_wait_b, probe.key)
    await wait_for_status(run, S.WAITING)
    await run.pause()
    assert await run.status() == S.PAUSED
    await run.pause()  # pausing twice is harmless
    await run.send_event("ctl_go", {"n": 1})
    assert await run.status() == S.PAUSED
    assert probe.calls["b"] == 0
    await run.resume()
    assert await run.result(timeout=5) == ["a1", {"n": 1}, "b1"]
    events = await _kinds(run)
    assert _index(events, "event_received") < _index(events, "run_resumed")
    assert _index(events, "run_resumed") < _index(events, "step_started", "ctl_b")
    assert [k for _, k, _ in events].count("run_paused") == 1


async def test_resume_is_a_noop_unless_paused(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "a")
    run = await engine.start(ctl_abc, probe.key)
    await probe.reached("a")
    await run.resume()  # running: nothing happens
    assert await run.status() == S.RUNNING
    probe.open("a:go")
    assert await run.result(timeout=5) == ["a1", "b1", "c1"]
    await run.resume()  # completed: still a no-op
    assert await run.status() == S.COMPLETED
    assert "run_resumed" not in [k for _, k, _ in await _kinds(run)]


async def test_pause_of_finished_run_is_invalid(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(ctl_abc, probe.key)
    await run.result(timeout=5)
    with pytest.raises(af.InvalidStateError):
        await run.pause()
    assert await run.status() == S.COMPLETED


@af.workflow
async def ctl_no_steps(x: int) -> int:
    return x + 1


@af.workflow
async def ctl_only_waits() -> Any:
    return await af.wait_for_event("ctl_only")


async def test_started_at_is_set_for_runs_without_steps(engine: af.Engine) -> None:
    run = await engine.start(ctl_no_steps, 1)
    assert await run.result(timeout=5) == 2
    info = await run.info()
    assert info.started_at is not None and info.completed_at is not None
    assert info.created_at <= info.started_at <= info.completed_at
    waiting = await engine.start(ctl_only_waits)
    await wait_for_status(waiting, S.WAITING)

    async def started() -> bool:
        return (await waiting.info()).started_at is not None

    await eventually(started)  # (the row is committed right after the status changes)
    await waiting.send_event("ctl_only", "x")
    assert await waiting.result(timeout=5) == "x"


@af.workflow
async def ctl_sleep_then_a(key: str) -> str:
    await af.wait_for_event("ctl_go")
    await af.sleep("50ms")
    return await ctl_a(key)


async def _paused_past_its_sleep(run: af.Run[Any]) -> None:
    """Pause a run that waits for "ctl_go" and then sleeps; let it go on to its sleep while
    paused; return once the sleep has fired. (Pausing while it sleeps would race the
    sleep: on a loaded machine, it could fire before the pause.)"""
    await wait_for_status(run, S.WAITING)
    await run.pause()
    await run.send_event("ctl_go")  # fed to the workflow while paused: it starts its sleep
    async for event in run.events():
        if event.kind == "sleep_fired":
            break
    assert await run.status() == S.PAUSED


async def test_sleep_firing_while_paused_starts_no_step(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(ctl_sleep_then_a, probe.key)
    await _paused_past_its_sleep(run)
    assert probe.calls["a"] == 0
    await run.resume()
    assert await run.result(timeout=5) == "a1"


@af.workflow
async def ctl_wait_then_fail() -> None:
    got = await af.wait_for_event("ctl_fail")
    raise ValueError(f"told to fail with {got}")


@af.workflow
async def ctl_sleep_then_return() -> str:
    await af.wait_for_event("ctl_go")
    await af.sleep("50ms")
    return "slept"


async def _event_kinds(engine: af.Engine, run: af.Run[Any]) -> list[str]:
    """The kinds of the run's events so far (without waiting for it to finish)."""
    return [e.kind for e in await engine.store.load_events(run.id)]


async def test_paused_run_does_not_finish_until_resumed(engine: af.Engine) -> None:
    run = await engine.start(ctl_only_waits)
    await wait_for_status(run, S.WAITING)
    await run.pause()
    await run.send_event("ctl_only", "x")  # committed, and fed to the workflow: it returns
    assert "event_received" in await _event_kinds(engine, run)
    assert await run.status() == S.PAUSED
    assert (await run.info()).completed_at is None
    assert "run_completed" not in await _event_kinds(engine, run)
    await run.resume()
    assert await run.result(timeout=5) == "x"
    kinds = await _event_kinds(engine, run)
    assert kinds.index("run_resumed") < kinds.index("run_completed")


async def test_paused_run_holds_a_failure_too(engine: af.Engine) -> None:
    run = await engine.start(ctl_wait_then_fail)
    await wait_for_status(run, S.WAITING)
    await run.pause()
    await run.send_event("ctl_fail", 7)
    assert await run.status() == S.PAUSED
    await run.resume()
    with pytest.raises(af.RunFailedError, match="told to fail with 7"):
        await run.result(timeout=5)


async def test_sleep_firing_while_paused_does_not_finish_the_run(engine: af.Engine) -> None:
    run = await engine.start(ctl_sleep_then_return)
    await _paused_past_its_sleep(run)
    assert "run_completed" not in await _event_kinds(engine, run)
    await run.resume()
    assert await run.result(timeout=5) == "slept"


# -- terminate ------------------------------------------------------------------------------


async def test_terminate_while_step_runs_cancels_it(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "b")
    run = await engine.start(ctl_abc, probe.key)
    await probe.reached("b")
    await run.terminate()
    await probe.reached("b:cancelled")
    assert await run.status() == S.TERMINATED
    with pytest.raises(af.RunTerminatedError):
        await run.result(timeout=5)
    info = await run.info()
    assert info.status == S.TERMINATED and info.completed_at is not None
    assert probe.calls["c"] == 0
    assert (await _kinds(run))[-1][1] == "run_terminated"
    # Final: further control is refused (resume stays a no-op).
    with pytest.raises(af.InvalidStateError):
        await run.terminate()
    with pytest.raises(af.InvalidStateError):
        await run.pause()
    await run.resume()
    assert await run.status() == S.TERMINATED


async def test_terminate_while_pausing_and_while_paused(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "b")
    pausing = await engine.start(ctl_abc, probe.key)
    await probe.reached("b")
    await pausing.pause()
    assert await pausing.status() == S.PAUSING
    await pausing.terminate()
    await probe.reached("b:cancelled")
    with pytest.raises(af.RunTerminatedError):
        await pausing.result(timeout=5)

    other = Probe()
    PROBES[other.key] = other
    try:
        paused = await engine.start(ctl_a_wait_b, other.key)
        await wait_for_status(paused, S.WAITING)
        await paused.pause()
        assert await paused.status() == S.PAUSED
        await paused.terminate()
        with pytest.raises(af.RunTerminatedError):
            await paused.result(timeout=5)
        with pytest.raises(af.InvalidStateError):
            await paused.send_event("ctl_go", 1)
        assert other.calls["b"] == 0
    finally:
        del PROBES[other.key]


async def test_terminate_sleeping_run(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(ctl_long_sleep, probe.key)
    await wait_for_status(run, S.WAITING)
    await run.terminate()
    with pytest.raises(af.RunTerminatedError):
        await run.result(timeout=5)
    info = await run.info()
    assert info.status == S.TERMINATED
    assert probe.calls == {"a": 1}


async def test_terminate_finished_runs_is_invalid(engine: af.Engine, probe: Probe) -> None:
    done = await engine.start(ctl_abc, probe.key)
    await done.result(timeout=5)
    with pytest.raises(af.InvalidStateError):
        await done.terminate()
    assert await done.status() == S.COMPLETED

    probe.values["fail"] = {"a"}
    failed = await engine.start(ctl_abc, probe.key)
    with pytest.raises(af.RunFailedError):
        await failed.result(timeout=5)
    with pytest.raises(af.InvalidStateError):
        await failed.terminate()
    assert await failed.status() == S.FAILED


async def test_control_of_unknown_run(engine: af.Engine) -> None:
    ghost = engine.get_run("ctl-no-such-run")
    assert not await ghost.exists()
    for action in (ghost.pause, ghost.resume, ghost.terminate, ghost.restart):
        with pytest.raises(af.RunNotFoundError):
            await action()


# -- restart --------------------------------------------------------------------------------


async def test_restart_completed_run_from_step_reruns_only_that_step_and_later(
    engine: af.Engine, probe: Probe
) -> None:
    run = await engine.start(ctl_abc, probe.key)
    assert await run.result(timeout=5) == ["a1", "b1", "c1"]
    await run.restart(from_step="ctl_b")
    # a's recorded result is kept; b and c run again.
    assert await run.result(timeout=5) == ["a1", "b2", "c2"]
    assert probe.calls == {"a": 1, "b": 2, "c": 2}
    info = await run.info()
    assert info.generation == 1
    assert info.status == S.COMPLETED
    assert [(s.name, s.result) for s in info.steps] == [
        ("ctl_a", "a1"),
        ("ctl_b", "b2"),
        ("ctl_c", "c2"),
    ]
    events = await _kinds(run)
    assert {g for g, _, _ in events} == {0, 1}
    old = [(k, n) for g, k, n in events if g == 0]
    new = [(k, n) for g, k, n in events if g == 1]
    assert ("run_completed", None) in old and ("step_started", "ctl_c") in old
    assert new[0] == ("run_restarted", "ctl_b")
    assert new[-1] == ("run_completed", None)
    assert new.count(("step_started", "ctl_b")) == 1


async def test_restart_from_beginning_reruns_everything(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(ctl_abc, probe.key)
    await run.result(timeout=5)
    await run.restart()
    assert await run.result(timeout=5) == ["a2", "b2", "c2"]
    await run.restart()
    assert await run.result(timeout=5) == ["a3", "b3", "c3"]
    assert (await run.info()).generation == 2


async def test_restart_from_repeated_step_uses_first_occurrence(
    engine: af.Engine, probe: Probe
) -> None:
    run = await engine.start(ctl_b_twice, probe.key)
    assert await run.result(timeout=5) == ["a1", "b1", "b2", "c1"]
    await run.restart(from_step="ctl_b")
    assert await run.result(timeout=5) == ["a1", "b3", "b4", "c2"]
    assert probe.calls == {"a": 1, "b": 4, "c": 2}


async def test_restart_failed_run(engine: af.Engine, probe: Probe) -> None:
    probe.values["fail"] = {"b"}
    run = await engine.start(ctl_abc, probe.key)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "FatalError"
    probe.values["fail"] = set()
    await run.restart(from_step="ctl_b")
    assert await run.result(timeout=5) == ["a1", "b2", "c1"]
    info = await run.info()
    assert info.status == S.COMPLETED and info.error is None and info.generation == 1
    assert probe.calls == {"a": 1, "b": 2, "c": 1}


async def test_restart_terminated_run(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "b")
    run = await engine.start(ctl_abc, probe.key)
    await probe.reached("b")
    await run.terminate()
    with pytest.raises(af.RunTerminatedError):
        await run.result(timeout=5)
    probe.open("b:go")
    await run.restart()
    assert await run.result(timeout=5) == ["a2", "b2", "c1"]
    assert (await run.info()).status == S.COMPLETED


async def test_restart_running_run_from_running_step(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "b")
    run = await engine.start(ctl_abc, probe.key)
    waiter = asyncio.create_task(run.result(timeout=5))
    await probe.reached("b")
    await run.restart(from_step="ctl_b")
    await probe.reached("b:cancelled")  # the old attempt was cancelled
    await eventually(lambda: probe.calls["b"] == 2)
    assert await run.status() == S.RUNNING
    probe.open("b:go")
    # A caller already waiting for the result gets the new generation's.
    assert await waiter == ["a1", "b2", "c1"]
    assert probe.calls == {"a": 1, "b": 2, "c": 1, "b:cancelled": 1}
    assert (await run.info()).generation == 1


async def test_restart_running_run_from_beginning(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "b")
    run = await engine.start(ctl_abc, probe.key)
    await probe.reached("b")
    await run.restart()
    await probe.reached("b:cancelled")
    probe.open("b:go")
    assert await run.result(timeout=5) == ["a2", "b2", "c1"]


async def test_restart_paused_run_unpauses_it(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "b")
    run = await engine.start(ctl_abc, probe.key)
    await probe.reached("b")
    await run.pause()
    probe.open("b:go")
    await wait_for_status(run, S.PAUSED)
    await run.restart(from_step="ctl_b")
    assert await run.result(timeout=5) == ["a1", "b2", "c1"]


async def test_restart_waiting_run(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(ctl_a_wait_b, probe.key)
    await wait_for_status(run, S.WAITING)
    await run.restart()
    await wait_for_status(run, S.WAITING)
    await run.send_event("ctl_go", "x")
    assert await run.result(timeout=5) == ["a2", "x", "b1"]


async def test_invalid_restarts(engine: af.Engine, probe: Probe) -> None:
    _gate(probe, "b")
    run = await engine.start(ctl_abc, probe.key)
    await probe.reached("b")
    # c has not started yet, and there is no step of that name at all.
    for name in ("ctl_c", "ctl_no_such_step"):
        with pytest.raises(af.InvalidStateError):
            await run.restart(from_step=name)
    assert await run.status() == S.RUNNING
    assert probe.calls["b:cancelled"] == 0
    probe.open("b:go")
    assert await run.result(timeout=5) == ["a1", "b1", "c1"]
    with pytest.raises(af.InvalidStateError):
        await run.restart(from_step="ctl_no_such_step")
    info = await run.info()
    assert info.generation == 0 and info.status == S.COMPLETED
    with pytest.raises(af.RunNotFoundError):
        await engine.get_run("ctl-missing").restart(from_step="ctl_a")


@af.workflow
async def ctl_hook_holder(token: str) -> Any:
    return await af.create_hook(token)


async def test_restart_keeps_received_events_as_inputs(engine: af.Engine, probe: Probe) -> None:
    """A restart re-executes the workflow but keeps what the outside world sent it: events
    (and hook payloads) received before the restart are delivered again, in order."""
    token = f"ctl-hook-{probe.key}"
    run = await engine.start(ctl_hook_holder, token)
    await wait_for_status(run, S.WAITING)
    await engine.resume_hook(token, "first")
    assert await run.result(timeout=5) == "first"
    await run.restart()
    assert await run.result(timeout=5) == "first"
    with pytest.raises(af.HookNotFoundError):  # released again when the new execution ended
        await engine.resume_hook(token, "late")
    # With nothing received yet, the restarted wait takes the next event sent.
    waiting = await engine.start(ctl_a_wait_b, probe.key)
    await wait_for_status(waiting, S.WAITING)
    await waiting.restart()
    await wait_for_status(waiting, S.WAITING)
    await waiting.send_event("ctl_go", "fresh")
    assert await waiting.result(timeout=5) == ["a2", "fresh", "b1"]
