"""WriteFailures: what the engine does when a commit fails (disk full, I/O error).

The runs the failed batch touched are now ahead of the store: their actors
hold state it lost, and rows continuing that state may wait in later batches,
which must never be written (the log would have a hole). So their actors are
abandoned at once, those rows discarded, and the runs rehydrated from what the
store holds at the end of the current retry round. Replay redoes what was
lost; a step whose result was lost runs again, as after a crash. Runs the
batch was to create do not exist: their `start()` raises the error and nothing
retries them.

Retry rounds last 0.25 s, and each round that starts without a successful
commit since the last one lasts twice as long, up to 30 s: a full disk is not
hammered, and runs failing together come back together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._store import RunRow, Store, WriteBatch

if TYPE_CHECKING:
    from ._actor import RunActor

FIRST_RETRY_DELAY = 0.25
MAX_RETRY_DELAY = 30.0


class WriteFailures:
    """Handles the store's failed commits for the engine that owns `actors`."""

    def __init__(
        self,
        store: Store,
        actors: dict[str, RunActor],
        rehydrate_at: Callable[[str, float], None],
    ) -> None:
        self._store = store
        self._actors = actors
        self._rehydrate_at = rehydrate_at
        self._delay = 0.0
        self._round_end = 0.0

    def committed(self) -> None:
        """A commit succeeded: the next failure starts over with the shortest round."""
        self._delay = 0.0

    def failed(self, batch: WriteBatch, error: BaseException) -> None:
        """`batch` failed with `error`; called before any later batch is written."""
        now = time.monotonic()
        if now >= self._round_end:
            self._delay = min(MAX_RETRY_DELAY, 2 * self._delay or FIRST_RETRY_DELAY)
            self._round_end = now + self._delay
        retry_at = time.time() + self._round_end - now
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
            self._rehydrate_at(run_id, retry_at)

    def _own_creations(self, batch: WriteBatch) -> dict[str, RunRow]:
        """The runs `batch` was to create; not one whose id was taken, which has an
        actor of its own (if any) and lost nothing."""
        return {
            row.id: row
            for row, _ in batch.new_runs
            if (actor := self._actors.get(row.id)) is None or actor.row is row
        }
