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
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._store import RunRow, Store, WriteBatch

if TYPE_CHECKING:
    from ._actor import RunActor

FIRST_RETRY_DELAY = 0.25
MAX_RETRY_DELAY = 30.0
FORGET_AFTER = 60.0


class WriteFailures:
    """Handles the store's failed commits for the engine that owns `actors`."""

    def __init__(
        self,
        store: Store,
        actors: dict[str, RunActor],
        rehydrate_at: Callable[[str, float], None],
        forget_after: float = FORGET_AFTER,
    ) -> None:
        self._store = store
        self._actors = actors
        self._rehydrate_at = rehydrate_at
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
            actor = self._actors.get(run_id)
            if actor is not None and actor.row is row:
                del self._actors[run_id]
                actor.abandon(error)
        for run_id in touched - creations.keys():
            actor = self._actors.pop(run_id, None)
            if actor is not None:
                actor.abandon(error)
            self._rehydrate_at(run_id, time.time() + self._delay(run_id, now))

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
            if (actor := self._actors.get(row.id)) is None or actor.row is row
        }
