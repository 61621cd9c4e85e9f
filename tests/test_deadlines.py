"""Step timeouts and workflow deadlines (children inherit their parent's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import actorflow as af
from tests._probes import PROBES, Probe, new_probe
from tests.conftest import wait_for_status

S = af.RunStatus


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield from new_probe()


@af.step(timeout=0.05, retry=af.Retry(limit=2, delay=0))
async def dl_slow_then_fast(key: str, slow_attempts: int) -> int:
    """Hang on the first `slow_attempts` attempts (the timeout cancels them)."""
    p = PROBES[key]
    attempt = af.step_info().attempt
    p.hit("attempt")
    if attempt <= slow_attempts:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            p.hit("cancelled")
            raise
    return attempt


@af.workflow
async def dl_step_timeout(key: str, slow_attempts: int) -> int:
    return await dl_slow_then_fast(key, slow_attempts)


@af.workflow
async def dl_step_timeout_caught(key: str) -> dict[str, Any]:
    try:
        await dl_slow_then_fast(key, 99)
    except af.StepFailedError as exc:
        return {"step": exc.step, "type": exc.error.type}
    return {}


async def test_step_timeout_is_retried(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(dl_step_timeout, probe.key, 1)
    assert await run.result(timeout=5) == 2
    assert probe.calls == {"attempt": 2, "cancelled": 1}
    [step] = (await run.info()).steps
    assert step.status == "completed" and step.attempts == 2
    retrying = [e async for e in run.events() if e.kind == "step_retrying"]
    assert retrying[0].data["error"]["type"] == "StepTimeoutError"


async def test_step_timeout_exhausts_retries_and_fails_run(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(dl_step_timeout, probe.key, 99)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "StepTimeoutError"
    assert probe.calls == {"attempt": 3, "cancelled": 3}  # 1 attempt + 2 retries
    [step] = (await run.info()).steps
    assert step.status == "failed" and step.attempts == 3
    assert step.error is not None and step.error.type == "StepTimeoutError"


async def test_step_timeout_is_catchable_in_workflow(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(dl_step_timeout_caught, probe.key)
    assert await run.result(timeout=5) == {
        "step": "dl_slow_then_fast",
        "type": "StepTimeoutError",
    }


@af.step
async def dl_hang(key: str) -> None:
    p = PROBES[key]
    p.hit("hang")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        p.hit("hang:cancelled")
        raise


@af.step
async def dl_quick(key: str) -> str:
    PROBES[key].hit("quick")
    return "quick"


@af.workflow(deadline="150ms")
async def dl_hanging(key: str) -> None:
    await dl_quick(key)
    await dl_hang(key)


@af.workflow
async def dl_sleepy(key: str, how: str) -> str:
    await dl_quick(key)
    if how == "sleep":
        await af.sleep("60s")
    else:
        await af.wait_for_event("dl_never")
    return "woke"


@af.workflow(deadline="10s")
async def dl_fast_enough(key: str) -> str:
    return await dl_quick(key)


async def _assert_deadline_failure(run: af.Run[Any]) -> None:
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "DeadlineExceededError"
    info = await run.info()
    assert info.status == S.FAILED
    assert info.error is not None and info.error.type == "DeadlineExceededError"


async def test_workflow_deadline_cancels_running_step(engine: af.Engine, probe: Probe) -> None:
    started = time.time()
    run = await engine.start(dl_hanging, probe.key)
    info = await run.info()
    assert info.deadline_at is not None
    assert info.deadline_at.timestamp() == pytest.approx(started + 0.15, abs=0.1)
    await _assert_deadline_failure(run)
    assert time.time() >= info.deadline_at.timestamp()
    await probe.reached("hang:cancelled")
    assert probe.calls["quick"] == 1


@pytest.mark.parametrize("how", ["sleep", "event"])
async def test_deadline_given_at_start_ends_a_waiting_run(
    engine: af.Engine, probe: Probe, how: str
) -> None:
    run = await engine.start(dl_sleepy, probe.key, how, deadline="100ms")
    await _assert_deadline_failure(run)
    with pytest.raises(af.InvalidStateError):
        await run.send_event("dl_never", 1)


async def test_deadline_at_start_overrides_the_workflows(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(dl_hanging, probe.key, deadline="30s")
    await probe.reached("hang")
    info = await run.info()
    assert info.deadline_at is not None
    assert info.deadline_at.timestamp() - time.time() > 20
    assert await run.status() == S.RUNNING
    await run.terminate()


async def test_run_within_deadline_completes(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(dl_fast_enough, probe.key)
    assert await run.result(timeout=5) == "quick"
    assert (await run.info()).status == S.COMPLETED


@af.workflow(deadline="200ms")
async def dl_parent(key: str) -> str:
    child = await af.start(dl_sleepy, key, "event")
    return await child.result()


@af.workflow
async def dl_parent_catching(key: str) -> str:
    child = await af.start(dl_sleepy, key, "event")
    try:
        return await child.result()
    except af.RunFailedError as exc:
        return f"child failed: {exc.error.type}"


async def test_children_inherit_the_deadline(engine: af.Engine, probe: Probe) -> None:
    parent = await engine.start(dl_parent, probe.key)
    await probe.reached("quick")
    [child] = await engine.list_runs(parent_id=parent.id)
    assert child.deadline_at == (await parent.info()).deadline_at
    await _assert_deadline_failure(engine.get_run(child.id))
    await _assert_deadline_failure(parent)


async def test_deadline_given_at_start_is_inherited(engine: af.Engine, probe: Probe) -> None:
    parent = await engine.start(dl_parent_catching, probe.key, deadline="30s")
    await probe.reached("quick")
    [child] = await engine.list_runs(parent_id=parent.id)
    parent_deadline = (await parent.info()).deadline_at
    assert parent_deadline is not None and child.deadline_at == parent_deadline
    await parent.terminate()
    await wait_for_status(engine.get_run(child.id), S.TERMINATED)


@af.workflow(deadline="100ms")
async def dl_short_child(key: str) -> str:
    await af.wait_for_event("dl_never")
    return "never"


@af.workflow
async def dl_parent_of_short(key: str) -> str:
    child = await af.start(dl_short_child, key)
    try:
        return await child.result()
    except af.RunFailedError as exc:
        return f"child failed: {exc.error.type}"


async def test_childs_own_deadline_applies_and_parent_can_catch(
    engine: af.Engine, probe: Probe
) -> None:
    parent = await engine.start(dl_parent_of_short, probe.key)
    assert await parent.result(timeout=5) == "child failed: DeadlineExceededError"
    assert (await parent.info()).deadline_at is None
