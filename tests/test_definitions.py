"""Decorators, plain calls outside workflows, durations and retry policies."""

from __future__ import annotations

from datetime import timedelta

import pytest

import actorflow as af
from actorflow._durations import to_seconds


@af.step
async def defs_async_step(x: int) -> int:
    return x + 1


@af.step(name="defs.sync", retry=af.Retry(limit=0), timeout="2s")
def defs_sync_step(x: int) -> int:
    return x * 3


@af.workflow(name="defs.flow", concurrency=3, deadline="1h")
async def defs_flow(x: int) -> int:
    return await defs_sync_step(await defs_async_step(x))


async def test_steps_are_plain_calls_outside_workflows() -> None:
    assert await defs_async_step(1) == 2
    assert defs_sync_step(2) == 6  # type: ignore[comparison-overlap]


@af.workflow
async def defs_async_only(x: int) -> int:
    return await defs_async_step(await defs_async_step(x))


async def test_workflow_called_directly_is_a_plain_coroutine() -> None:
    assert await defs_async_only(1) == 3


def test_decorator_options() -> None:
    assert defs_async_step.name == "defs_async_step"
    assert defs_async_step.retry == af.Retry()
    assert defs_sync_step.name == "defs.sync"
    assert defs_sync_step.retry.limit == 0
    assert defs_sync_step.timeout == 2.0
    assert not defs_sync_step.is_async
    assert defs_flow.name == "defs.flow"
    assert defs_flow.concurrency == 3
    assert defs_flow.deadline == 3600.0
    assert defs_async_step.__name__ == "defs_async_step"


def test_bad_decorations_are_refused() -> None:
    with pytest.raises(TypeError):
        af.workflow(lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError):
        af.workflow(concurrency=0)
    with pytest.raises(TypeError):
        af.step(retry=3)  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        af.step(timeout="soon")


def test_a_workflow_name_cannot_be_taken_twice() -> None:
    async def other() -> None:
        return None

    with pytest.raises(ValueError, match="already used"):
        af.workflow(name="defs.flow")(other)


def test_context_functions_outside_their_context() -> None:
    with pytest.raises(RuntimeError):
        af.step_info()
    with pytest.raises(RuntimeError):
        af.workflow_info()
    with pytest.raises(RuntimeError):
        af.create_hook()
    with pytest.raises(RuntimeError):
        af.get_writable()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1.5, 1.5),
        (0, 0.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        (timedelta(minutes=2), 120.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert to_seconds(value) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["soon", "5 weeks", "-1s", -1, float("inf"), "1x"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        to_seconds(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, True, [1]])
def test_duration_types(value: object) -> None:
    with pytest.raises(TypeError):
        to_seconds(value)  # type: ignore[arg-type]


def test_retry_backoff() -> None:
    assert [af.Retry(delay=2, backoff="constant").delay_before(n) for n in (1, 2, 3)] == [2, 2, 2]
    assert [af.Retry(delay=2, backoff="linear").delay_before(n) for n in (1, 2, 3)] == [2, 4, 6]
    assert [af.Retry(delay=2).delay_before(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert af.Retry(delay=10, max_delay=15).delay_before(3) == 15
    with pytest.raises(ValueError):
        af.Retry(limit=-1)
    with pytest.raises(ValueError):
        af.Retry(backoff="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        af.Retry(delay=-1)
