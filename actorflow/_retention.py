"""Retention: finished runs are deleted once they are older than their workflow's
`retention=` or else the engine's, by a background sweeper; `Engine.purge` deletes
on demand. Both delete in short batches (see `_store._purge`), pausing between them so
that commits get the store's write lock in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

from ._durations import to_timestamp
from ._dying import cancel_and_wait
from ._models import FINAL, RunStatus
from ._store import PurgeFilter, Store

log = logging.getLogger("actorflow.retention")

PAUSE = 0.005
"""Seconds between two purge transactions: the writer's commits go in between."""


def purge_filter(
    before: datetime,
    status: RunStatus | str | Iterable[RunStatus | str] | None,
    workflow: str | None,
) -> PurgeFilter:
    """The filter of `Engine.purge`'s arguments; raises `ValueError`/`TypeError` for bad ones."""
    given = [] if status is None else [status] if isinstance(status, str) else list(status)
    statuses = [str(s) for s in given] or list(FINAL)
    for s in statuses:
        if s not in FINAL:
            raise ValueError(
                f"purge deletes finished runs: status must be one of {FINAL}, got {s!r}"
            )
    if workflow is not None and not isinstance(workflow, str):
        raise TypeError(f"workflow must be an @af.workflow function or its name, got {workflow!r}")
    return PurgeFilter(
        to_timestamp(before, "before"), statuses, None if workflow is None else [workflow]
    )


class Retained(Protocol):
    """What the sweeper needs of a workflow (a `WorkflowFunction`)."""

    name: str
    retention: float | None


async def purge(store: Store, which: PurgeFilter) -> int:
    """Delete every run `which` selects, batch by batch; how many runs were deleted."""
    total = 0
    while True:
        runs, rows = await store.purge_batch(which)
        total += runs
        if rows == 0:
            return total
        await asyncio.sleep(PAUSE)


class RetentionSweeper:
    """Deletes finished runs past their retention, every `interval` seconds (a quarter of
    the shortest retention, between 50 ms and a minute). Owned by the engine: started
    with it, cancelled and awaited when it closes. A failing sweep is logged and
    retried at the next interval."""

    def __init__(
        self,
        store: Store,
        default: float | None,
        workflows: Callable[[], Iterable[Retained]],
    ) -> None:
        self._store = store
        self._default = default
        self._workflows = workflows
        self._task: asyncio.Task[None] | None = None

    def _retentions(self) -> dict[str, float]:
        return {wf.name: wf.retention for wf in self._workflows() if wf.retention is not None}

    def start(self) -> None:
        own = self._retentions()
        shortest = min(
            [*own.values(), *([] if self._default is None else [self._default])], default=None
        )
        if shortest is not None:
            interval = max(0.05, min(60.0, shortest / 4))
            self._task = asyncio.create_task(self._run(interval), name="actorflow-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self, interval: float) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("deleting finished runs past their retention failed")
            await asyncio.sleep(interval)

    async def sweep(self) -> int:
        """Delete what is past its retention now; how many runs were deleted."""
        now = time.time()
        own = self._retentions()
        deleted = 0
        for name, seconds in own.items():
            deleted += await purge(self._store, PurgeFilter(now - seconds, workflows=[name]))
        if self._default is not None:
            deleted += await purge(self._store, PurgeFilter(now - self._default, exclude=list(own)))
        return deleted
