"""Issue 15, item 5: `Engine.close()` is bounded by `close_timeout`, abandoning (with a
warning naming the run and the step) a step that swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

import actorflow as af
from tests.conftest import wait_for_status

gates: dict[str, asyncio.Event] = {}


@af.step(name="hcl.stubborn")
async def hcl_stubborn() -> None:
    gates["started"].set()
    release = gates["release"]
    while not release.is_set():
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: it goes on waiting
            await release.wait()


@af.workflow(name="hcl.runs_stubborn")
async def hcl_runs_stubborn() -> None:
    await hcl_stubborn()


@pytest.mark.parametrize("terminate", [True, False])
async def test_close_abandons_a_step_that_swallows_cancellation(
    store_url: str, caplog: pytest.LogCaptureFixture, terminate: bool
) -> None:
    release = gates["release"] = asyncio.Event()
    started = gates["started"] = asyncio.Event()
    engine = af.Engine(store_url, close_timeout=0.3)
    await engine.open()
    try:
        run = await engine.start(hcl_runs_stubborn, id=f"stubborn-{terminate}")
        await asyncio.wait_for(started.wait(), 5)
        if terminate:
            await asyncio.wait_for(run.terminate(), 5)  # terminate returns
            await wait_for_status(run, af.RunStatus.TERMINATED)
        begin = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="actorflow.engine"):
            await asyncio.wait_for(engine.close(), 5)
        assert time.monotonic() - begin < 3
        warnings = [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()]
        assert warnings == [
            f"step 'hcl.stubborn' of run 'stubborn-{terminate}' did not stop within the "
            "engine's close_timeout after it was cancelled (does it catch CancelledError?); "
            "abandoned"
        ]
    finally:
        release.set()  # let the abandoned step end before the test's loop does
        await engine.close()
    await asyncio.sleep(0)


def test_close_timeout_is_checked() -> None:
    with pytest.raises(ValueError, match="close_timeout"):
        af.Engine("memory://", close_timeout=-1)


async def test_close_is_bounded_by_default(caplog: pytest.LogCaptureFixture) -> None:
    """Without the option (5 s by default): the issue's case, where close() hung."""
    release = gates["release"] = asyncio.Event()
    started = gates["started"] = asyncio.Event()
    engine = af.Engine("memory://")
    await engine.open()
    try:
        run = await engine.start(hcl_runs_stubborn)
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.wait_for(run.terminate(), 5)
        with caplog.at_level(logging.WARNING, logger="actorflow.engine"):
            await asyncio.wait_for(engine.close(), 15)
        assert any("abandoned" in r.getMessage() for r in caplog.records)
    finally:
        release.set()
        await engine.close()
    await asyncio.sleep(0)
