"""`steps_done` (steps of the current execution completed) in run listings and run
details, and `streams` (the namespaces of its streams) in details: the same from the
engine, from the HTTP API and from a store read directly (the command line's `--db`),
so the dashboard needs no request per listed run to count its steps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import actorflow as af
from actorflow._store_reader import StoreReader
from actorflow.http import asgi_app
from tests._cli import cli, doc
from tests.conftest import eventually, wait_for_status


@af.step(name="summaries.write")
async def write_two_streams(n: int) -> int:
    for namespace in ("log", "default"):
        writer = af.get_writable(namespace)
        await writer.write(n)
        await writer.close()
    return n


@af.step(name="summaries.add")
async def add_one(n: int) -> int:
    return n + 1


@af.workflow(name="summaries.flow")
async def flow(n: int) -> int:
    written = await write_two_streams(n)
    await af.wait_for_event("go")
    return await add_one(written)


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[af.Engine]:
    async with af.Engine(store_url, workflows=[flow]) as engine:
        yield engine


async def _http(engine: af.Engine, path: str) -> Any:
    transport = httpx.ASGITransport(app=asgi_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
        response = await http.get(f"/v1{path}")
        assert response.status_code == 200
        return response.json()


async def _stored_status(engine: af.Engine, run_id: str, status: af.RunStatus) -> bool:
    return any(r.id == run_id for r in await engine.list_runs(status=status))


async def _summaries(engine: af.Engine, run: af.Run[Any]) -> list[Any]:
    """(steps_done, streams) of the run, as listed and as detailed, by the engine and the
    HTTP API."""
    [listed] = [r for r in await engine.list_runs() if r.id == run.id]
    info = await run.info()
    [item] = [r for r in (await _http(engine, "/runs"))["runs"] if r["id"] == run.id]
    detail = await _http(engine, f"/runs/{run.id}")
    return [
        (listed.steps_done, listed.streams),
        (info.steps_done, info.streams),
        (item["steps_done"], item["streams"]),
        (detail["steps_done"], detail["streams"]),
    ]


async def test_steps_done_and_streams_of_a_run_as_it_goes_and_restarts(
    engine: af.Engine, store_url: str
) -> None:
    run = await engine.start(flow, 1)
    # `status()` is live, a commit ahead of the store the listings read: wait for the
    # store to have the step's outcome (committed with the run's `waiting` row).
    await wait_for_status(run, af.RunStatus.WAITING)
    await eventually(lambda: _stored_status(engine, run.id, af.RunStatus.WAITING))
    assert await _summaries(engine, run) == [
        (1, ()), (1, ("default", "log")), (1, []), (1, ["default", "log"])
    ]  # fmt: skip

    await run.send_event("go")
    assert await run.result(timeout=10) == 2
    assert await _summaries(engine, run) == [
        (2, ()), (2, ("default", "log")), (2, []), (2, ["default", "log"])
    ]  # fmt: skip

    # A restart's execution counts its own steps, not the ones before it.
    await run.restart(from_step="summaries.add")
    assert await run.result(timeout=10) == 2
    assert (await run.info()).generation == 1
    assert [done for done, _ in await _summaries(engine, run)] == [2, 2, 2, 2]

    if store_url != "memory://":  # a reader is synchronous: on a thread of its own
        assert await asyncio.to_thread(_read, store_url, run.id) == [
            (2, ()), (2, ("default", "log"))
        ]  # fmt: skip


def _read(url: str, run_id: str) -> list[Any]:
    with StoreReader(url) as reader:
        [listed] = reader.list_runs()
        detail = reader.run_info(run_id)
    return [(listed.steps_done, listed.streams), (detail.steps_done, detail.streams)]


async def test_the_command_line_lists_steps_done_from_a_store(sqlite_url: str) -> None:
    async with af.Engine(sqlite_url, workflows=[flow]) as engine:
        run = await engine.start(flow, 1)
        await wait_for_status(run, af.RunStatus.WAITING)
    listed = doc(cli("runs", "list", "--db", sqlite_url, "--json"))
    assert [(r["id"], r["steps_done"], r["streams"]) for r in listed["runs"]] == [(run.id, 1, [])]
    described = doc(cli("runs", "describe", run.id, "--db", sqlite_url, "--json"))
    assert (described["steps_done"], described["streams"]) == (1, ["default", "log"])
