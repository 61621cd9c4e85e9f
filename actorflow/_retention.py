"""Retention: finished runs are deleted once they are older than their workflow's
`retention=` or else the engine's, by a background sweeper; `Engine.purge` deletes
on demand. Both delete in short batches (see `_store._purge`), pausing between them so
that commits get the store's write lock in between.

A purge and a restart of the same finished run never interleave (`RunsBeingPurged`): a
large run is deleted over several transactions, and a restart reads the run's log, then
journals a new generation after it; interleaved, the new generation would follow a
partial log, or outlive its run's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Protocol

from ._durations import to_timestamp
from ._dying import cancel_and_wait
from ._errors import InvalidStateError
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


class RunsBeingPurged:
    """The runs this engine's purges are deleting, kept apart from its restarts: a purge
    leaves alone a run being restarted, and a restart of a run a purge has taken is
    refused."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._restarting: Counter[str] = Counter()

    @contextlib.contextmanager
    def restarting(self, run_id: str) -> Iterator[None]:
        """Around a restart of run `run_id`, until it is committed (the run is then
        unfinished: no purge selects it). Raises `InvalidStateError` if a purge is
        deleting the run."""
        if run_id in self._ids:
            raise InvalidStateError(f"cannot restart run {run_id!r}: it is being purged")
        self._restarting[run_id] += 1
        try:
            yield
        finally:
            self._restarting[run_id] -= 1
            if not self._restarting[run_id]:
                del self._restarting[run_id]

    def claim(self, chosen: list[str], skip: set[str], held: set[str]) -> list[str]:
        """Of the runs a purge holding `held` chose, the ones it may delete, now held too;
        the others (being restarted, or another purge's) go to `skip`, to be left alone."""
        claimed = []
        for run_id in chosen:
            if run_id in held or (run_id not in self._ids and run_id not in self._restarting):
                claimed.append(run_id)
            else:
                skip.add(run_id)
        self._ids.update(claimed)
        held.update(claimed)
        return claimed

    def release(self, ids: Iterable[str]) -> None:
        self._ids.difference_update(ids)


async def purge(store: Store, which: PurgeFilter, runs: RunsBeingPurged) -> int:
    """Delete every run `which` selects, batch by batch; how many runs were deleted."""
    total = 0
    held: set[str] = set()
    try:
        while True:
            batch = await store.purge_batch(
                which, lambda chosen: runs.claim(chosen, which.skip, held)
            )
            total += batch.runs
            # A run deleted in part stays held until its last rows go.
            done = held.difference(batch.partial)
            runs.release(done)
            held.difference_update(done)
            if batch.rows == 0:
                return total
            await asyncio.sleep(PAUSE)
    finally:
        runs.release(held)


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
        purging: RunsBeingPurged,
    ) -> None:
        self._store = store
        self._purging = purging
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
            deleted += await purge(
                self._store, PurgeFilter(now - seconds, workflows=[name]), self._purging
            )
        if self._default is not None:
            deleted += await purge(
                self._store,
                PurgeFilter(now - self._default, exclude=list(own)),
                self._purging,
            )
        return deleted
