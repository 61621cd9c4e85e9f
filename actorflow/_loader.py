"""RunLoader: group reads for rehydration.

When many runs come back at once (10,000 timers due in the same second, or
recovery at start-up), loading each run's row, log and stream state on its own
costs three round trips per run through the store's one reader. The loader
collects the requests made during a loop turn and answers them all with a few
bulk reads, as the group-commit writer does for writes (with 10,000 evicted
runs due within one second, p99 wake-up lateness fell from 1.45 s to 0.65 s;
waking them `wake_ahead` seconds early then brought it to 33 ms).
"""

from __future__ import annotations

import asyncio
import contextlib

from ._store import LoadedRun, Store


class RunLoader:
    """Loads runs for rehydrating actors, many per store read."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: dict[str, list[asyncio.Future[LoadedRun | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def load(self, run_id: str) -> LoadedRun | None:
        """The run's row, log and stream state; None if there is no such run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LoadedRun | None] = loop.create_future()
        self._waiting.setdefault(run_id, []).append(future)
        if self._task is None:
            self._task = loop.create_task(self._run(), name="actorflow-run-loader")
        return await future

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)  # every actor woken this turn joins the read
                batch, self._waiting = self._waiting, {}
                try:
                    loaded = await self._store.load_runs(list(batch))
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for run_id, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(loaded.get(run_id))
        finally:
            self._task = None
