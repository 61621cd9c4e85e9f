"""Read-side engine API the HTTP layer needs: keyset paging of `list_runs`, run counts
by workflow and status, the workflows an engine runs, and the count of live readers."""

from __future__ import annotations

import asyncio

import actorflow as af
from tests.conftest import eventually


@af.workflow
async def query_echo(x: int) -> int:
    return x


@af.workflow
async def query_waits() -> object:
    return await af.wait_for_event("go")


async def test_list_runs_after_pages_without_gaps_or_repeats(engine: af.Engine) -> None:
    runs = [await engine.start(query_echo, i) for i in range(7)]
    seen: list[str] = []
    after = None
    while True:
        page = await engine.list_runs(workflow=query_echo, limit=3, after=after)
        if not page:
            break
        seen += [r.id for r in page]
        after = page[-1].id
        # A run started between pages is newer than every listed one: not on later pages.
        await engine.start(query_echo, 99)
    assert seen == [r.id for r in reversed(runs)]
    assert await engine.list_runs(after="no-such-run") == []


async def test_count_runs_by_workflow_and_status(engine: af.Engine) -> None:
    done = [await engine.start(query_echo, i) for i in range(3)]
    for run in done:
        await run.result(timeout=5)
    waiting = await engine.start(query_waits)
    await eventually(lambda: _is(waiting, af.RunStatus.WAITING))
    counts = await engine.count_runs()
    assert counts["query_echo"] == {af.RunStatus.COMPLETED: 3}
    assert counts["query_waits"] == {af.RunStatus.WAITING: 1}


async def _is(run: af.Run[object], status: af.RunStatus) -> bool:
    return await run.status() == status


async def test_workflows_lists_the_engines_workflows(store_url: str) -> None:
    async with af.Engine(store_url, workflows=[query_waits, query_echo]) as engine:
        assert [wf.name for wf in engine.workflows()] == ["query_echo", "query_waits"]
    async with af.Engine(store_url) as engine:
        names = [wf.name for wf in engine.workflows()]
        assert {"query_echo", "query_waits"} <= set(names)
        assert names == sorted(names)


async def test_live_readers_counts_open_readers(engine: af.Engine) -> None:
    run = await engine.start(query_waits)
    readers = [asyncio.create_task(_read_all(run)) for _ in range(5)]
    await eventually(lambda: _count(engine, 5))
    await run.send_event("go", 1)
    for task in readers:
        assert (await task)[-1] == "run_completed"
    assert engine.live_readers() == 0


async def _read_all(run: af.Run[object]) -> list[str]:
    return [event.kind async for event in run.events()]


async def _count(engine: af.Engine, n: int) -> bool:
    return engine.live_readers() == n


async def test_events_after_and_follow(engine: af.Engine) -> None:
    run = await engine.start(query_waits)
    await eventually(lambda: _is(run, af.RunStatus.WAITING))
    recorded = [e async for e in run.events(follow=False)]
    assert [e.index for e in recorded] == list(range(len(recorded)))
    assert recorded[0].kind == "run_created"
    rest = [e.index async for e in run.events(after=0, follow=False)]
    assert rest == [e.index for e in recorded[1:]]
    await run.send_event("go", 7)
    tail = [e async for e in run.events(after=recorded[-1].index)]
    assert tail[0].index == recorded[-1].index + 1
    assert tail[-1].kind == "run_completed"
    resumed_at_end = [e async for e in run.events(after=tail[-1].index)]
    assert resumed_at_end == []
