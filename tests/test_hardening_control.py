"""Issue 15, items 16 and 17: a terminated run cannot be resumed but can be restarted,
and a restarted execution is handed every event the run had received, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import actorflow as af
from actorflow._actor import _control
from tests.conftest import wait_for_status

README = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())

calls: list[str] = []


@af.step(name="hct.record")
async def hct_record(what: Any) -> Any:
    calls.append(str(what))
    return what


@af.workflow(name="hct.approvals")
async def hct_approvals() -> list[Any]:
    first = await af.wait_for_event("approval")
    await hct_record(first)
    second = await af.wait_for_event("approval")
    return [first, await hct_record(second), af.workflow_info().generation]


async def test_a_terminated_run_is_not_resumed_but_can_be_restarted(engine: af.Engine) -> None:
    run = await engine.start(hct_approvals)
    await wait_for_status(run, af.RunStatus.WAITING)
    await run.terminate()
    await run.resume()
    assert await run.status() == af.RunStatus.TERMINATED
    await run.restart()
    await run.send_event("approval", "a")
    await run.send_event("approval", "b")
    assert await run.result(timeout=5) == ["a", "b", 1]
    assert "`restart()` starts a new execution of any run, a terminated one included" in README
    assert "restart()` starts a new one" in " ".join((af.Run.terminate.__doc__ or "").split())


async def test_a_restarted_execution_gets_every_event_received_before_in_order(
    engine: af.Engine,
) -> None:
    run = await engine.start(hct_approvals)
    await run.send_event("other", "c")  # never consumed: it stays buffered
    for payload in ("a", "b"):
        await run.send_event("approval", payload)
    assert await run.result(timeout=5) == ["a", "b", 0]
    await run.restart()  # from the start: both waits re-run and get "a" and "b" again
    assert await run.result(timeout=5) == ["a", "b", 1]
    await run.restart(from_step="hct.record")  # keeps the first wait (and its "a")
    assert await run.result(timeout=5) == ["a", "b", 2]
    events = [e async for e in run.events()]
    received = [(e.generation, e.data) for e in events if e.kind == "event_received"]
    assert received == [(g, p) for g in (0, 1, 2) for p in ("c", "a", "b")]
    assert "consumed or not, in the order they came, then the ones sent after" in README


@af.step(name="hc.add")
async def _add(n: int) -> int:
    return n + 1


@af.workflow(name="hc.flow")
async def _adds(n: int) -> int:
    return await _add(n)


class _Broken:
    """Stands for a bug on the restart path: raises where the run's streams are rebuilt."""

    def __init__(self, *args: Any) -> None:
        raise RuntimeError("a bug in restart")


async def test_a_control_whose_handling_raises_answers_its_caller_with_the_error(
    engine: af.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception on a control message's path (a bug) reaches its caller, and the run's
    next messages are still answered: nobody waits for ever."""
    run = await engine.start(_adds, 1)
    assert await run.result(timeout=5) == 2
    monkeypatch.setattr(_control, "StreamLedger", _Broken)
    with pytest.raises(RuntimeError, match="a bug in restart"):
        await asyncio.wait_for(run.restart(), 10)
    monkeypatch.undo()
    assert await asyncio.wait_for(run.status(), 10) == af.RunStatus.COMPLETED
    await asyncio.wait_for(run.restart(), 10)
    assert await run.result(timeout=10) == 2
