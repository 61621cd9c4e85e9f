"""A workflow's own coroutine runs in a `WorkflowTask`, not an `asyncio.Task`: it is
`asyncio.current_task()` in workflow code, cancels as a task does, and wakes in the
order an `asyncio.Task` would, including when the step it awaits has other waiters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import actorflow as af
from tests.conftest import eventually, wait_for_status

order: list[str] = []
gate: asyncio.Event


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[af.Engine]:
    global gate
    gate = asyncio.Event()
    order.clear()
    async with af.Engine(f"sqlite:///{tmp_path / 'root.db'}") as engine:
        yield engine


@af.step(name="wt.add")
async def wt_add(x: int) -> int:
    return x + 1


@af.step(name="wt.gated")
async def wt_gated(x: int) -> int:
    order.append("gated step started")
    await gate.wait()
    return x


@af.workflow(name="wt.introspect")
async def wt_introspect(x: int) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    before = (task.get_name(), task.done(), task.cancelling())
    x = await wt_add(x)
    assert asyncio.current_task() is task
    return {"name": before[0], "done": before[1], "cancelling": before[2], "x": x}


async def test_the_workflow_is_the_current_task_named_after_its_run(engine: af.Engine) -> None:
    run = await engine.start(wt_introspect, 1)
    assert await run.result(timeout=10) == {
        "name": run.id,
        "done": False,
        "cancelling": 0,
        "x": 2,
    }


async def _waiting(name: str, future: asyncio.Future[int]) -> int:
    value = await future
    order.append(name)
    return value


@af.workflow(name="wt.shared")
async def wt_shared(first: str) -> list[int]:
    """The root awaits a step's future that another task awaits too, registered before or
    after the root's own wait: whoever waited first resumes first."""
    future = wt_add(1)
    other = asyncio.ensure_future(_waiting("child", future))
    if first == "child":
        await asyncio.sleep(0)  # the child runs (and waits) before the root does
    value = await future
    order.append("root")
    return [value, await other]


@pytest.mark.parametrize(
    ("first", "expected"), [("root", ["root", "child"]), ("child", ["child", "root"])]
)
async def test_the_waiter_that_waited_first_resumes_first(
    engine: af.Engine, first: str, expected: list[str]
) -> None:
    run = await engine.start(wt_shared, first)
    assert await run.result(timeout=10) == [2, 2]
    assert order == expected


@af.workflow(name="wt.callback")
async def wt_callback() -> int:
    future = wt_add(1)
    future.add_done_callback(lambda f: order.append(f"callback {f.result()}"))
    value = await future
    order.append("root")
    return value


async def test_a_callback_added_before_the_await_runs_before_the_workflow_resumes(
    engine: af.Engine,
) -> None:
    assert await (await engine.start(wt_callback)).result(timeout=10) == 2
    assert order == ["callback 2", "root"]


@af.workflow(name="wt.group")
async def wt_group() -> str:
    async def failing() -> None:
        await wt_add(0)
        raise ValueError("child failed")

    task = asyncio.current_task()
    assert task is not None
    outcome = "not cancelled"
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(failing())
            await wt_gated(1)  # the root waits here, cancelled by the group
    except* ValueError as failed:
        outcome = f"{len(failed.exceptions)} failed; cancelling {task.cancelling()}"
    return outcome


async def test_a_task_group_cancels_the_workflow_and_takes_the_cancellation_back(
    engine: af.Engine,
) -> None:
    assert await (await engine.start(wt_group)).result(timeout=10) == "1 failed; cancelling 0"


@af.workflow(name="wt.cancelled_self")
async def wt_cancelled_self() -> str:
    task = asyncio.current_task()
    assert task is not None
    task.cancel("by itself")
    try:
        await wt_add(1)
    except asyncio.CancelledError as cancelled:
        return f"caught {cancelled.args}, uncancel -> {task.uncancel()}"
    return "not cancelled"


async def test_a_workflow_that_cancels_itself_gets_the_cancellation_at_its_next_await(
    engine: af.Engine,
) -> None:
    result = await (await engine.start(wt_cancelled_self)).result(timeout=10)
    assert result == "caught ('by itself',), uncancel -> 0"


@af.workflow(name="wt.cancels_step")
async def wt_cancels_step() -> str:
    future = wt_add(1)

    async def cancel_it() -> None:
        future.cancel()

    canceller = asyncio.ensure_future(cancel_it())
    try:
        await future
    except asyncio.CancelledError:
        await canceller
        return "step cancelled"
    return "not cancelled"


async def test_a_step_future_cancelled_by_workflow_code_wakes_the_workflow(
    engine: af.Engine,
) -> None:
    assert await (await engine.start(wt_cancels_step)).result(timeout=10) == "step cancelled"


@af.workflow(name="wt.terminated")
async def wt_terminated() -> str:
    try:
        return str(await wt_gated(1))
    finally:
        order.append("workflow unwound")


async def test_terminating_a_run_unwinds_the_workflow_waiting_on_a_step(engine: af.Engine) -> None:
    run = await engine.start(wt_terminated)
    await eventually(lambda: order == ["gated step started"], 10)
    await run.terminate()
    await wait_for_status(run, af.RunStatus.TERMINATED)
    assert order == ["gated step started", "workflow unwound"]
    gate.set()


@af.workflow(name="wt.raises")
async def wt_raises() -> None:
    await wt_add(1)
    raise KeyError("from the workflow")


async def test_a_workflow_error_keeps_the_workflows_traceback_only(engine: af.Engine) -> None:
    run = await engine.start(wt_raises)
    with pytest.raises(af.RunFailedError) as failed:
        await run.result(timeout=10)
    recorded = failed.value.error.traceback or ""
    assert "in wt_raises" in recorded and "KeyError" in recorded
    assert "in _step" not in recorded and "in _driven" not in recorded, recorded
    # The first frame recorded is the workflow's own, as with an asyncio.Task.
    assert recorded.splitlines()[1].lstrip().startswith(f'File "{__file__}"'), recorded


@af.step(name="wt.fails", retry=af.Retry(limit=0))
async def wt_fails(n: int) -> int:
    raise ValueError(f"step failure {n}")


@af.workflow(name="wt.step_error")
async def wt_step_error(caught: bool) -> str:
    """A step's error is thrown into the workflow's coroutine: caught, the coroutine
    returns from there; else it leaves the workflow with it."""
    try:
        await wt_fails(1)
    except af.StepFailedError as exc:
        if not caught:
            raise KeyError("after the step") from exc
        return f"caught: {exc}"
    return "not reached"


async def test_a_workflow_returns_or_fails_where_a_step_error_is_thrown_in(
    engine: af.Engine,
) -> None:
    caught = await engine.start(wt_step_error, True)
    message = "step 'wt.fails' failed: ValueError: step failure 1"
    assert await caught.result(timeout=10) == f"caught: {message}"
    escaped = await engine.start(wt_step_error, False)
    with pytest.raises(af.RunFailedError) as failed:
        await escaped.result(timeout=10)
    recorded = failed.value.error.traceback or ""
    assert "KeyError" in recorded and "in wt_step_error" in recorded, recorded
    assert "in _step" not in recorded and "in _driven" not in recorded, recorded
    assert recorded.splitlines()[1].lstrip().startswith(f'File "{__file__}"'), recorded


foreign: asyncio.Future[int]


@af.workflow(name="wt.foreign")
async def wt_foreign() -> int:
    return await foreign  # a future of the engine's loop, not the run's


async def test_a_future_of_another_loop_fails_the_run_with_advice(engine: af.Engine) -> None:
    global foreign
    foreign = asyncio.get_running_loop().create_future()
    run = await engine.start(wt_foreign)
    with pytest.raises(af.RunFailedError) as failed:
        await run.result(timeout=10)
    assert failed.value.error.type == "WorkflowSandboxError"
    assert "awaited something that is not journaled" in failed.value.error.message
    assert not foreign.done()  # nothing touched the other loop's future


@af.workflow(name="wt.yields")
async def wt_yields() -> list[str]:
    task = asyncio.current_task()
    assert task is not None
    task.add_done_callback(lambda t: order.append(f"done: {t.result()}"))
    order.append("before")
    await asyncio.sleep(0)  # a bare yield: the task steps again, at the back of the queue
    order.append("after")
    await wt_add(1)
    return ["stepped", "returned"]


async def test_a_bare_yield_steps_again_and_done_callbacks_see_the_result(
    engine: af.Engine,
) -> None:
    assert await (await engine.start(wt_yields)).result(timeout=10) == ["stepped", "returned"]
    assert order == ["before", "after", "done: ['stepped', 'returned']"]
