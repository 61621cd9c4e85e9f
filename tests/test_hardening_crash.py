"""Issue 15, item 2: whatever kills a turn of a run's actor fails that run with the error
and answers every caller; `terminate()` always returns; reopening finds the failure
instead of crashing again."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

import actorflow as af
import actorflow._actor._driver as driver


@af.workflow(name="hcr.returns")
async def hcr_returns(value: str) -> str:
    return value


def _crashing(encode: Any) -> Any:
    """`encode` for the driver, raising for the result "crash", as a bug in the engine
    would in the turn that finishes the run."""

    def crash(value: Any, *args: Any) -> bytes:
        if value == "crash":
            raise RuntimeError("a bug in the engine")
        return encode(value, *args)  # type: ignore[no-any-return]

    return crash


@pytest.fixture
def crashing_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "encode", _crashing(driver.encode))


@pytest.mark.sources
@pytest.mark.usefixtures("crashing_turns")
async def test_a_crashed_turn_fails_the_run_and_answers_every_caller(engine: af.Engine) -> None:
    run = await engine.start(hcr_returns, "crash", id="crashes")
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "RuntimeError"
    assert caught.value.error.message == "the run's actor crashed: a bug in the engine"
    assert await run.status() == af.RunStatus.FAILED
    with pytest.raises(af.InvalidStateError, match="failed"):
        await asyncio.wait_for(run.terminate(), 5)
    with pytest.raises(af.InvalidStateError):
        await asyncio.wait_for(run.send_event("x", 1), 5)
    other = await engine.start(hcr_returns, "fine")  # the engine goes on
    assert await other.result(timeout=5) == "fine"


@pytest.mark.sources
async def test_a_crashed_run_stays_failed_after_reopening(
    durable_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        encode = driver.encode
        patch.setattr(
            driver,
            "encode",
            lambda v, *a: (
                (_ for _ in ()).throw(RuntimeError("bug")) if v == "crash" else encode(v, *a)
            ),
        )
        async with af.Engine(durable_url) as engine:
            run = await engine.start(hcr_returns, "crash", id="crashes")
            with pytest.raises(af.RunFailedError):
                await run.result(timeout=5)
    async with af.Engine(durable_url) as engine:
        assert await engine.get_run("crashes").status() == af.RunStatus.FAILED
        with pytest.raises(af.InvalidStateError):
            await asyncio.wait_for(engine.get_run("crashes").terminate(), 5)


@dataclasses.dataclass
class Touchy:
    """orjson reads its fields from `__dict__` (and refuses the lambda); looking at them
    by name, as `encode` does to find the bad part, raises."""

    callback: Any

    def __getattribute__(self, name: str) -> Any:
        if name == "callback":
            raise ZeroDivisionError("looked at")
        return super().__getattribute__(name)


@af.workflow(name="hcr.returns_touchy")
async def hcr_returns_touchy() -> Any:
    return Touchy(lambda: 1)


async def test_a_value_that_raises_when_looked_at_fails_the_run_cleanly(
    engine: af.Engine,
) -> None:
    run = await engine.start(hcr_returns_touchy)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "SerializationError"
    assert "looking for the bad part raised ZeroDivisionError('looked at')" in (
        caught.value.error.message
    )
