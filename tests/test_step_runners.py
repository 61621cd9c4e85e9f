"""Step runners: attempts share a pool of tasks, each attempt still seeing a task of its
own (its name, its context variables, its cancellation) while it runs."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import actorflow as af
from tests.conftest import eventually, wait_for_status

seen_tasks: list[tuple[asyncio.Task[object], str]] = []
where: contextvars.ContextVar[str] = contextvars.ContextVar("where")
gate: asyncio.Event
events: list[str] = []
gated: dict[str, asyncio.Task[object]] = {}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[af.Engine]:
    global gate
    gate = asyncio.Event()
    seen_tasks.clear()
    events.clear()
    gated.clear()
    async with af.Engine(f"sqlite:///{tmp_path / 'runners.db'}") as engine:
        yield engine


def record_task() -> asyncio.Task[object]:
    task = asyncio.current_task()
    assert task is not None
    seen_tasks.append((task, task.get_name()))
    return task


@af.step(name="sr.first")
async def sr_first(x: int) -> str:
    record_task()
    leaked = where.get("unset")
    where.set(f"first {x}")  # must not reach any other attempt
    return leaked


@af.step(name="sr.second")
async def sr_second(x: int) -> str:
    record_task()
    return where.get("unset")


@af.workflow(name="sr.pair")
async def sr_pair(x: int) -> list[str]:
    return [await sr_first(x), await sr_second(x)]


async def test_steps_that_do_not_wait_share_one_task_renamed_for_each_and_isolated(
    engine: af.Engine,
) -> None:
    runs = await engine.start_many(sr_pair, [(i,) for i in range(20)])
    assert [await run.result(timeout=5) for run in runs] == [["unset", "unset"]] * 20
    assert len(seen_tasks) == 40
    # One runner took every attempt (none waited), named after each step as it ran it.
    assert len({id(task) for task, _ in seen_tasks}) == 1
    assert sorted({name for _, name in seen_tasks}) == ["sr.first", "sr.second"]
    assert [name for _, name in seen_tasks].count("sr.first") == 20


@af.step(name="sr.gated")
async def sr_gated(key: str) -> str:
    before = gated[key] = record_task()
    try:
        await gate.wait()
    except asyncio.CancelledError:
        events.append(f"{key} cancelled")
        raise
    assert asyncio.current_task() is before and before.get_name() == "sr.gated"
    return where.get("unset")


@af.workflow(name="sr.gated_wf")
async def sr_gated_wf(key: str) -> str:
    return await sr_gated(key)


async def test_a_step_that_waits_keeps_its_task_and_holds_back_no_other(
    engine: af.Engine,
) -> None:
    waiting = await engine.start(sr_gated_wf, "w")
    await eventually(lambda: len(seen_tasks) == 1)
    quick = await engine.start_many(sr_pair, [(i,) for i in range(10)])
    assert [await run.result(timeout=5) for run in quick] == [["unset", "unset"]] * 10
    assert await waiting.status() is af.RunStatus.RUNNING
    assert all(task is not gated["w"] for task, _ in seen_tasks[1:])
    gate.set()
    assert await waiting.result(timeout=5) == "unset"


async def test_terminating_a_run_cancels_its_waiting_step_and_only_it(
    engine: af.Engine,
) -> None:
    doomed = await engine.start(sr_gated_wf, "doomed")
    spared = await engine.start(sr_gated_wf, "spared")
    await eventually(lambda: len(seen_tasks) == 2)
    await doomed.terminate()
    await wait_for_status(doomed, af.RunStatus.TERMINATED)
    await eventually(lambda: events == ["doomed cancelled"])
    # The cancelled attempt's runner ends with it; steps go on in other runners.
    assert gated["doomed"] is not gated["spared"]
    await eventually(gated["doomed"].done)
    quick = await engine.start(sr_pair, 1)
    assert await quick.result(timeout=5) == ["unset", "unset"]
    gate.set()
    assert await spared.result(timeout=5) == "unset"
    assert events == ["doomed cancelled"]


@af.step(name="sr.stubborn")
async def sr_stubborn() -> str:
    record_task()
    try:
        await gate.wait()
    except asyncio.CancelledError:
        events.append("swallowed")
    return "returned anyway"


@af.workflow(name="sr.stubborn_wf")
async def sr_stubborn_wf() -> str:
    return await sr_stubborn()


@af.step(name="sr.timed", timeout=0.05, retry=af.Retry(limit=0))
async def sr_timed() -> None:
    await asyncio.Event().wait()


@af.step(name="sr.clean")
async def sr_clean() -> int:
    task = record_task()
    async with asyncio.timeout(5):  # a cancel count left by an earlier attempt breaks this
        await asyncio.sleep(0)
    return task.cancelling()


@af.workflow(name="sr.after_timeout")
async def sr_after_timeout() -> int:
    try:
        await sr_timed()
    except af.StepFailedError as exc:
        assert exc.error.type == "StepTimeoutError"
    return await sr_clean()


async def test_cancellations_never_reach_a_later_attempt(engine: af.Engine) -> None:
    """A step that swallows its cancellation, and a step's timeout: the attempts that
    come after them in the same engine see no cancellation of their own."""
    stubborn = await engine.start(sr_stubborn_wf)
    await eventually(lambda: len(seen_tasks) == 1)
    await stubborn.terminate()
    await wait_for_status(stubborn, af.RunStatus.TERMINATED)
    await eventually(lambda: events == ["swallowed"])
    assert await (await engine.start(sr_after_timeout)).result(timeout=5) == 0
    assert await (await engine.start(sr_pair, 2)).result(timeout=5) == ["unset", "unset"]


async def test_close_leaves_no_runner_behind(tmp_path: Path) -> None:
    seen_tasks.clear()

    def runners() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name() in ("step runner", "sr.gated")]

    global gate
    gate = asyncio.Event()
    async with af.Engine(f"sqlite:///{tmp_path / 'close.db'}") as engine:
        await engine.start(sr_gated_wf, "at close")
        await eventually(lambda: len(seen_tasks) == 1)
        assert await (await engine.start(sr_pair, 3)).result(timeout=5) == ["unset", "unset"]
        # One runner is in the waiting attempt; the other ran the pair's, and waits for work.
        await eventually(
            lambda: sorted(t.get_name() for t in runners()) == ["sr.gated", "step runner"]
        )
        tasks = runners()
    assert runners() == []
    assert all(task.done() for task in tasks)


kept: list[asyncio.Task[object]] = []


@af.step(name="sr.keeps_its_task")
async def sr_keeps_its_task() -> None:
    kept.append(record_task())


@af.step(name="sr.gated_retried", retry=af.Retry(limit=1, delay=0))
async def sr_gated_retried() -> int:
    record_task()
    await gate.wait()
    return af.step_info().attempt


@af.workflow(name="sr.keeps_then_waits")
async def sr_keeps_then_waits() -> int:
    await sr_keeps_its_task()
    return await sr_gated_retried()


async def test_a_task_kept_from_an_earlier_attempt_cancels_no_run(engine: af.Engine) -> None:
    """Code that kept a runner (`current_task()` in a step) and cancels it later, when
    the runner is in another attempt: that attempt fails like any error, retried by its
    policy, and nothing hangs."""
    kept.clear()
    run = await engine.start(sr_keeps_then_waits)
    await eventually(lambda: len(seen_tasks) == 2)
    assert seen_tasks[1][0] is kept[0]  # the idle runner took the next attempt
    kept[0].cancel()
    await eventually(lambda: len(seen_tasks) == 3)  # the retry
    gate.set()
    assert await run.result(timeout=5) == 2
    step = (await run.info()).steps[1]
    assert (step.status, step.attempts) == ("completed", 2)


@af.step(name="sr.cancels_itself", retry=af.Retry(limit=1, delay=0))
async def sr_cancels_itself() -> int:
    if af.step_info().attempt == 1:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
    return af.step_info().attempt


@af.workflow(name="sr.cancels_itself_wf")
async def sr_cancels_itself_wf() -> int:
    return await sr_cancels_itself()


async def test_a_step_that_cancels_its_own_task_fails_that_attempt(engine: af.Engine) -> None:
    run = await engine.start(sr_cancels_itself_wf)
    assert await run.result(timeout=5) == 2
    assert await (await engine.start(sr_pair, 4)).result(timeout=5) == ["unset", "unset"]


def coroutine_name(task: asyncio.Task[object]) -> str:
    """The name of a task's coroutine function (a compiled one's type is `<name>_gen`)."""
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or type(coro).__name__.removesuffix("_gen")


async def test_attempts_queued_behind_one_that_waits_start_in_tasks_of_their_own(
    engine: af.Engine,
) -> None:
    """Not in a chain of runners, each starting on the next turn of the loop only to
    wait in its turn: a batch's attempts tend to be alike."""
    runs = await engine.start_many(sr_gated_wf, [(f"k{i}",) for i in range(10)])
    await eventually(lambda: len(gated) == 10)
    tasks = list(gated.values())
    assert len({id(task) for task in tasks}) == 10
    kinds = sorted(coroutine_name(task).rpartition(".")[2] for task in tasks)
    assert kinds.count("_run_attempt") >= 8  # one runner per commit at most, here 1 or 2
    gate.set()
    assert [await run.result(timeout=5) for run in runs] == ["unset"] * 10
