"""Rows of runs no longer in memory (`result()`, `status()`, `exists()` of finished runs):
the first few requests of a loop turn are answered at once when the store can read
without waiting (SQLite's lookup by key, the memory store), the rest of a burst in bulk
reads, and every request on PostgreSQL, where each read is a round trip, in bulk."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

import actorflow as af
from actorflow._loader import _IMMEDIATE_ROWS_PER_TURN
from actorflow._store import RunRow
from tests.conftest import eventually


@af.workflow(name="loader.echo")
async def echo(x: int) -> int:
    return x


class StoreReads:
    """The store's row reads, counted around its own methods."""

    def __init__(self, store: Any) -> None:
        self.immediate: list[list[str]] = []
        self.bulk: list[list[str]] = []
        now, bulk = store.get_runs_now, store.get_runs

        def get_runs_now(run_ids: Sequence[str]) -> dict[str, RunRow] | None:
            found: dict[str, RunRow] | None = now(run_ids)
            if found is not None:
                self.immediate.append(list(run_ids))
            return found

        async def get_runs(run_ids: Sequence[str]) -> dict[str, RunRow]:
            self.bulk.append(list(run_ids))
            found: dict[str, RunRow] = await bulk(run_ids)
            return found

        store.get_runs_now = get_runs_now
        store.get_runs = get_runs


async def _finished_runs(engine: af.Engine, count: int) -> list[af.Run[int]]:
    runs = await engine.start_many(echo, [(i,) for i in range(count)])
    assert await asyncio.gather(*(run.result() for run in runs)) == list(range(count))
    await eventually(lambda: engine.live_actors() == 0)  # finished runs leave memory
    return [engine.get_run(run.id, workflow=echo) for run in runs]


async def test_lone_reads_at_once_and_a_burst_in_bulk(store_url: str) -> None:
    count = _IMMEDIATE_ROWS_PER_TURN + 24
    async with af.Engine(store_url, workflows=[echo]) as engine:
        runs = await _finished_runs(engine, count)
        reads = StoreReads(engine.store)
        immediate = not store_url.startswith("postgresql")

        for i, run in enumerate(runs[:5]):  # one by one: each in a turn of its own
            assert await run.result() == i
            assert await run.status() is af.RunStatus.COMPLETED
        asked = {run.id for run in runs[:5]}
        if immediate:
            assert reads.bulk == [] and len(reads.immediate) == 10
        else:  # (a shared database's `result()` also reads the row to watch the run)
            assert reads.immediate == [] and len(reads.bulk) >= 10
        assert {run_id for ids in reads.immediate + reads.bulk for run_id in ids} == asked

        reads.immediate.clear()
        reads.bulk.clear()
        # A burst, all asked in one turn: a few rows at once, the rest in one bulk read.
        assert await asyncio.gather(*(run.result() for run in runs)) == list(range(count))
        burst = [run.id for run in runs]
        if immediate:
            assert reads.immediate == [[run_id] for run_id in burst[:_IMMEDIATE_ROWS_PER_TURN]]
            assert reads.bulk == [burst[_IMMEDIATE_ROWS_PER_TURN:]]
        else:
            assert reads.immediate == [] and reads.bulk[-1] == burst


async def test_missing_runs_are_not_found_either_way(store_url: str) -> None:
    async with af.Engine(store_url, workflows=[echo]) as engine:
        (done,) = await _finished_runs(engine, 1)
        with pytest.raises(af.RunNotFoundError):
            await engine.get_run("no-such-run").result()
        assert not await engine.get_run("no-such-run").exists()
        # In one turn: past the immediate ones, a missing run is not found in bulk too.
        missing = [engine.get_run(f"missing-{i}") for i in range(_IMMEDIATE_ROWS_PER_TURN + 2)]
        outcomes = await asyncio.gather(
            *(run.result() for run in missing), done.result(), return_exceptions=True
        )
        assert all(isinstance(o, af.RunNotFoundError) for o in outcomes[:-1])
        assert outcomes[-1] == 0
