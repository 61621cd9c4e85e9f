"""Finished runs are freed by reference counting alone, however they ended.

Memory freed only by the cyclic collector comes back late (and, with
`af.tune_gc()`'s thresholds, after many allocations). Exceptions are what
tends to tie cycles: a failed future, the traceback it got when it was raised
in the workflow, and the frames of that traceback (which from Python 3.12 keep
their callers' frames, and those frames' locals) lead back to one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import actorflow as af
from tests._probes import PROBES, Probe, mark, new_probe
from tests.conftest import eventually, wait_for_status

RUNS = 20


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield from new_probe()


@af.step
async def rc_fail() -> int:
    raise af.FatalError("told to fail")


@af.step
async def rc_blocked(key: str) -> int:
    await PROBES[key].gate("never")
    return 0


@af.workflow
async def rc_step_fails(key: str) -> int:
    return await rc_fail()


@af.workflow
async def rc_raises(key: str) -> int:
    await mark(key, "a")
    raise ValueError("the workflow raised")


@af.workflow
async def rc_reraises(key: str) -> int:
    try:
        return await rc_fail()
    except af.StepFailedError as exc:
        raise RuntimeError("handled, then raised again") from exc


@af.workflow
async def rc_event_times_out(key: str) -> Any:
    return await af.wait_for_event("rc_never", timeout="10ms")


@af.workflow
async def rc_gather_fails(key: str) -> list[int]:
    return await asyncio.gather(rc_fail(), rc_blocked(key))


@af.workflow
async def rc_catches(key: str) -> str:
    try:
        await rc_fail()
    except af.StepFailedError:
        return "recovered"
    return "not reached"


@af.workflow
async def rc_blocked_run(key: str) -> int:
    return await rc_blocked(key)


async def _ended(run: af.Run[Any]) -> None:
    """Wait for the run's outcome, whatever it is."""
    with contextlib.suppress(af.RunFailedError, af.RunTerminatedError):
        await run.result(timeout=5)


@pytest.mark.parametrize(
    "workflow",
    [rc_step_fails, rc_raises, rc_reraises, rc_event_times_out, rc_gather_fails, rc_catches],
    ids=lambda wf: wf.name,
)
async def test_finished_runs_leave_no_cycles(
    engine: af.Engine, probe: Probe, no_gc: None, workflow: Any
) -> None:
    runs = [await engine.start(workflow, probe.key) for _ in range(RUNS)]
    for run in runs:
        await _ended(run)
    await eventually(lambda: engine.live_actors() == 0)
    assert gc.collect() < RUNS  # a cycle per run would show RUNS objects or more


async def _terminate(run: af.Run[Any]) -> None:
    await run.terminate()


async def _restart_then_terminate(run: af.Run[Any]) -> None:
    await run.restart()
    await wait_for_status(run, af.RunStatus.RUNNING)
    await run.terminate()


@pytest.mark.parametrize("end", [_terminate, _restart_then_terminate])
async def test_runs_ended_by_control_leave_no_cycles(
    engine: af.Engine,
    probe: Probe,
    no_gc: None,
    end: Callable[[af.Run[Any]], Awaitable[None]],
) -> None:
    runs = [await engine.start(rc_blocked_run, probe.key) for _ in range(RUNS)]
    for run in runs:
        await wait_for_status(run, af.RunStatus.RUNNING)
        await end(run)
        await _ended(run)
    await eventually(lambda: engine.live_actors() == 0)
    assert gc.collect() < RUNS
