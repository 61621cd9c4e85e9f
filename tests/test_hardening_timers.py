"""Issue 15, item 4: retry policies are checked when they are made, and no single
bad value stops the engine-wide timer service."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import pytest

import actorflow as af
from actorflow._timers import TimerService


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay": math.nan},
        {"delay": math.inf},
        {"max_delay": math.nan},
        {"max_delay": -math.inf},
        {"delay": 10.0, "max_delay": 5.0},
        {"limit": 1.5},
        {"limit": True},
        {"limit": "3"},
    ],
)
def test_retry_refuses_bad_values_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"Retry\.(delay|max_delay|limit)"):
        af.Retry(**kwargs)


def test_retry_delay_of_a_late_exponential_retry_is_capped_not_overflowing() -> None:
    assert af.Retry(limit=5000, delay=1.0).delay_before(4000) == 60.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_retryable_error_refuses_a_retry_after_that_is_not_a_finite_delay(value: float) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        af.RetryableError("again", retry_after=value)


async def test_timer_service_refuses_a_non_finite_time_and_keeps_firing() -> None:
    woken: list[str] = []
    fired = asyncio.Event()

    def wake(run_id: str) -> None:
        woken.append(run_id)
        fired.set()

    service = TimerService(wake)
    service.start()
    try:
        for bad in (math.nan, math.inf):
            with pytest.raises(ValueError, match="finite"):
                service.schedule(bad, "bad")
        service.schedule(time.time() + 0.01, "good")
        await asyncio.wait_for(fired.wait(), 5)
        assert woken == ["good"]
    finally:
        await service.stop()


async def test_timer_service_survives_a_wake_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    woken: list[str] = []
    second = asyncio.Event()

    def wake(run_id: str) -> None:
        if run_id == "broken":
            raise RuntimeError("boom")
        woken.append(run_id)
        second.set()

    service = TimerService(wake)
    service.start()
    with caplog.at_level(logging.ERROR, logger="actorflow.timers"):
        service.schedule(time.time(), "broken")
        service.schedule(time.time() + 0.01, "next")
        await asyncio.wait_for(second.wait(), 5)
    await service.stop()  # the service task did not die, so stopping it does not raise
    assert woken == ["next"]
    assert any("'broken'" in r.getMessage() for r in caplog.records)


@af.step(name="htm.bad_retry_after", retry=af.Retry(limit=1, delay=0))
async def htm_bad_retry_after() -> None:
    raise af.RetryableError("again", retry_after=math.nan)


@af.workflow(name="htm.bad_retry")
async def htm_bad_retry() -> None:
    await htm_bad_retry_after()


@af.workflow(name="htm.sleeps")
async def htm_sleeps() -> str:
    await af.sleep(0.05)
    return "woke"


async def test_a_bad_retry_delay_fails_its_step_and_timers_keep_firing(engine: af.Engine) -> None:
    """The issue's case: a NaN delay killed the timer service, after which no timer of
    any run fired and `close()` raised. Now it is refused where it is made."""
    bad = await engine.start(htm_bad_retry)
    with pytest.raises(af.RunFailedError) as caught:
        await bad.result(timeout=5)
    assert caught.value.error.type == "ValueError"
    assert "retry_after" in caught.value.error.message
    sleeper = await engine.start(htm_sleeps)
    assert await sleeper.result(timeout=5) == "woke"
