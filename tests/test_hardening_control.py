"""Issue 15, items 16 and 17: a terminated run cannot be resumed but can be restarted,
and a restarted execution is handed every event the run had received, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import actorflow as af
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
