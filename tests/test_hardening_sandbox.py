"""Issue 15, item 15: every asyncio loop operation workflow code cannot use raises
`WorkflowSandboxError` naming the call, and a workflow blocked on an awaitable the run
cannot deliver (an asyncio.Event of its own) fails instead of staying `running`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import actorflow as af
from actorflow._sandbox import WorkflowLoop

OWN = {
    "call_soon", "create_future", "create_task", "get_debug", "is_running", "is_closed",
    "close", "call_exception_handler", "default_exception_handler",
    "get_exception_handler", "get_task_factory",
}  # fmt: skip


def _unsupported() -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(asyncio.AbstractEventLoop)
        if not name.startswith("_") and callable(member) and name not in OWN
    )


@pytest.mark.parametrize("name", _unsupported())
def test_every_unsupported_loop_method_raises_naming_the_call(name: str) -> None:
    loop = WorkflowLoop.__new__(WorkflowLoop)  # type: ignore[type-abstract]
    with pytest.raises(af.WorkflowSandboxError, match=rf"\b{name}\b.*cannot be used"):
        result = getattr(loop, name)()
        if inspect.iscoroutine(result):  # an async method of the base class
            result.close()


BLOCKERS: dict[str, Callable[[], Awaitable[Any]]] = {
    "event": lambda: asyncio.Event().wait(),
    "queue": lambda: asyncio.Queue[int]().get(),
    "future": lambda: asyncio.get_running_loop().create_future(),
    "connection": lambda: asyncio.open_connection("127.0.0.1", 9),
    "subprocess": lambda: asyncio.create_subprocess_exec("true"),
    "dns": lambda: asyncio.get_running_loop().getaddrinfo("localhost", 80),
}


@af.workflow(name="hsb.blocked")
async def hsb_blocked(kind: str) -> None:
    await BLOCKERS[kind]()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("event", "waits on something that is not journaled"),
        ("queue", "waits on something that is not journaled"),
        ("future", "waits on something that is not journaled"),
        ("connection", r"loop\.create_connection\(\) \(network connections"),
        ("subprocess", r"loop\.subprocess_exec\(\) \(subprocesses"),
        ("dns", r"loop\.getaddrinfo\(\) \(DNS lookups\)"),
    ],
)
async def test_a_workflow_blocked_outside_the_journal_fails(
    engine: af.Engine, kind: str, message: str
) -> None:
    run = await engine.start(hsb_blocked, kind)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "WorkflowSandboxError"
    assert re.search(message, caught.value.error.message)
    assert await run.status() == af.RunStatus.FAILED


@af.step(name="hsb.tick")
async def hsb_tick() -> int:
    return 1


@af.workflow(name="hsb.event_set_by_own_task")
async def hsb_event_set_by_own_task() -> str:
    ready = asyncio.Event()

    async def setter() -> None:
        await hsb_tick()
        await af.sleep(0.01)
        ready.set()

    task = asyncio.create_task(setter())
    await ready.wait()  # while the step and the sleep are pending, this is fine
    await task
    return "set"


async def test_an_event_set_by_another_task_of_the_workflow_is_fine(engine: af.Engine) -> None:
    run = await engine.start(hsb_event_set_by_own_task)
    assert await run.result(timeout=5) == "set"


@af.step
async def sandbox_thread_double(x: int) -> int:
    await asyncio.sleep(0)  # threads switch while steps and workflow turns interleave
    return 2 * x


@af.workflow
async def sandbox_thread_sum(n: int) -> int:
    total = 0
    for i in range(n):
        # Long enough for the other thread to take the GIL inside this turn.
        total += await sandbox_thread_double(i) + sum(range(3000)) - 4498500
    return total


def test_engines_on_two_threads_journal_their_steps_and_plain_calls_stay_plain() -> None:
    """Whether code runs in a workflow is answered per thread: while one thread runs a
    workflow's turn, the other's workflows still journal their steps, and its plain
    calls of the step (outside any workflow) still run the function."""

    async def main() -> tuple[list[int], list[int], list[int]]:
        async with af.Engine("memory://", workflows=[sandbox_thread_sum]) as engine:
            runs = [await engine.start(sandbox_thread_sum, 20) for _ in range(30)]
            plain: list[int] = []
            async with asyncio.timeout(60):
                while not all([(await run.status()).is_final for run in runs]):
                    plain.append(await sandbox_thread_double(21))
            steps = [
                sum([e.kind == "step_completed" async for e in run.events(follow=False)])
                for run in runs
            ]
            return [await run.result() for run in runs], steps, plain

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(lambda _: asyncio.run(main()), range(2)))
    finally:
        sys.setswitchinterval(interval)
    for results, steps, plain in outcomes:
        assert results == [380] * 30
        assert steps == [20] * 30
        assert plain and set(plain) == {42}
