"""RunLoader: group reads of runs that are not in memory.

When many runs come back at once (10,000 timers due in the same second, or
recovery at start-up), loading each run's row, log and stream state on its own
costs three round trips per run through the store's one reader. The loader
collects the requests made during a loop turn and answers them all with a few
bulk reads, as the group-commit writer does for writes (with 10,000 evicted
runs due within one second, p99 wake-up lateness fell from 1.45 s to 0.65 s;
waking them `wake_ahead` seconds early then brought it to 33 ms).

Rows alone (what `result()`, `status()` and `exists()` read for runs no
longer in memory) are grouped the same way: ten thousand `result()` calls on
finished runs cost a few reads, not ten thousand round trips. The first few
of a loop turn are answered at once instead, when the store can read them
without waiting (`Store.get_runs_now`: SQLite's lookup by key on the loop's
thread): a lone request then costs no task and no loop turn (a `result()` of
an evicted run, one by one: 113,800 -> 71,700 instructions per call), and the
rest of a burst still goes to the store's reader in bulk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._errors import EngineClosedError
from ._store import LoadedRun, RunRow, Store

_Waiting = dict[str, list[asyncio.Future[Any]]]
# Rows read at once per loop turn: beyond a few, bulk reads in the store's own reader
# (SQLite's thread) cost the event loop less than a lookup each.
_IMMEDIATE_ROWS_PER_TURN = 16


class RunLoader:
    """Loads runs for rehydrating actors, and run rows, many per store read."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._loads: _Waiting = {}
        self._rows: _Waiting = {}
        self._task: asyncio.Task[None] | None = None
        self._immediate_left = _IMMEDIATE_ROWS_PER_TURN

    async def load(self, run_id: str) -> LoadedRun | None:
        """The run's row, log and stream state; None if there is no such run."""
        loaded: LoadedRun | None = await self._request(self._loads, run_id)
        return loaded

    async def row(self, run_id: str) -> RunRow | None:
        """The run's committed row; None if there is no such run."""
        if self._immediate_left:
            found = self._store.get_runs_now([run_id])
            if found is not None:
                if self._immediate_left == _IMMEDIATE_ROWS_PER_TURN:
                    asyncio.get_running_loop().call_soon(self._next_turn)
                self._immediate_left -= 1
                return found.get(run_id)
        row: RunRow | None = await self._request(self._rows, run_id)
        return row

    def _next_turn(self) -> None:
        self._immediate_left = _IMMEDIATE_ROWS_PER_TURN

    def _request(self, waiting: _Waiting, run_id: str) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waiting.setdefault(run_id, []).append(future)
        if self._task is None:
            self._task = loop.create_task(self._run(), name="actorflow-run-loader")
        return future

    async def stop(self) -> None:
        """Stop reading; whoever still waits gets `EngineClosedError`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiting in (self._loads, self._rows):
            _fail(waiting, EngineClosedError("the engine was closed"))
            waiting.clear()

    async def _run(self) -> None:
        try:
            while self._loads or self._rows:
                await asyncio.sleep(0)  # every request made this turn joins the read
                loads, self._loads = self._loads, {}
                rows, self._rows = self._rows, {}
                await _answer(loads, self._store.load_runs)
                await _answer(rows, self._store.get_runs)
        finally:
            self._task = None


async def _answer(
    waiting: _Waiting, read: Callable[[Sequence[str]], Awaitable[dict[str, Any]]]
) -> None:
    """Read what `waiting` asks for and resolve its futures (with the error, if it fails)."""
    if not waiting:
        return
    try:
        found = await read(list(waiting))
    except asyncio.CancelledError:
        _fail(waiting, EngineClosedError("the engine was closed"))
        raise
    except Exception as exc:
        _fail(waiting, exc)
        return
    for run_id, futures in waiting.items():
        for future in futures:
            if not future.done():
                future.set_result(found.get(run_id))


def _fail(waiting: _Waiting, error: BaseException) -> None:
    for futures in waiting.values():
        for future in futures:
            if not future.done():
                future.set_exception(error)
