"""WriteFailures: what the engine does when a commit fails (disk full, I/O error).

The runs the failed batch touched are now ahead of the store: their actors
hold state it lost, and rows continuing that state may wait in later batches,
which must never be written (the log would have a hole). So their actors are
abandoned at once, those rows discarded, and the runs rehydrated from what the
store holds a little later. Replay redoes what was lost; a step whose result
was lost runs again, as after a crash. Runs the batch was to create do not
exist: their `start()` raises the error and nothing retries them.

Each run backs off on its own: 0.25 s after its first failed commit, twice as
long after each further one (up to 30 s), forgotten after a minute without one.
A full disk is not hammered. And the delay is drawn between half and all of
that, so runs that failed together come back at different moments: one run
whose rows are refused every time (a trigger, a bug) cannot keep failing the
batches of the runs that happen to share them.
"""

from __future__ import annotations

import random
import time
from typing import Protocol

from ._store import RunRow, Store, WriteBatch

FIRST_RETRY_DELAY = 0.25
MAX_RETRY_DELAY = 30.0
FORGET_AFTER = 60.0


class LiveRuns(Protocol):
    """What `WriteFailures` needs of the directory of live actors."""

    def live_row(self, run_id: str) -> RunRow | None:
        """The row the run's live actor holds, if it has one."""

    def abandon(self, run_id: str, error: BaseException) -> None:
        """Remove the run's live actor (if any), which writes nothing more."""

    def rehydrate_at(self, run_id: str, when: float) -> None:
        """Bring the run back into memory at `when` (a time.time() value)."""


class WriteFailures:
    """Handles the store's failed commits for the directory of live runs `runs`."""

    def __init__(self, store: Store, runs: LiveRuns, forget_after: float = FORGET_AFTER) -> None:
        self._store = store
        self._runs = runs
        self._forget_after = forget_after
        # Per run: failed commits in a row, and when the last one was.
        self._strikes: dict[str, tuple[int, float]] = {}

    def failed(self, batch: WriteBatch, error: BaseException) -> None:
        """`batch` failed with `error`; called before any later batch is written."""
        now = time.monotonic()
        self._forget(now)
        touched = batch.run_ids()
        creations = self._own_creations(batch)
        creations |= self._store.discard_pending(touched | creations.keys())
        for run_id, row in creations.items():
            if self._runs.live_row(run_id) is row:
                self._runs.abandon(run_id, error)
        for run_id in touched - creations.keys():
            self._runs.abandon(run_id, error)
            self._runs.rehydrate_at(run_id, time.time() + self._delay(run_id, now))

    def _delay(self, run_id: str, now: float) -> float:
        strikes = self._strikes.get(run_id, (0, now))[0] + 1
        self._strikes[run_id] = (strikes, now)
        delay = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2.0 ** min(strikes - 1, 16))
        return delay * random.uniform(0.5, 1.0)

    def _forget(self, now: float) -> None:
        """Drop the strikes of runs that have not failed for `forget_after` seconds."""
        stale = [r for r, (_, last) in self._strikes.items() if now - last > self._forget_after]
        for run_id in stale:
            del self._strikes[run_id]

    def _own_creations(self, batch: WriteBatch) -> dict[str, RunRow]:
        """The runs `batch` was to create; not one whose id was taken, which has an
        actor of its own (if any) and lost nothing."""
        return {
            row.id: row
            for row, _ in batch.new_runs
            if (live := self._runs.live_row(row.id)) is None or live is row
        }
