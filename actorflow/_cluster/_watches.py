"""RunWatches: the runs this engine's readers follow, and the `watches` rows that make
commits to them notify it while another engine owns them.

Readers (`result()`, `events()`, `stream()`) count here for every run they follow,
owned here or not; a row is written only for a run owned elsewhere. A run that
moves away while followed (its commits refused, the lease lost, and after a rejoin
under a new id, whose rows are new) gets its row from the node's work loop, which
then has its readers read on from the store: they miss nothing committed meanwhile.
Registering a watch marks the run's row, so that a commit already under way either
notifies or is seen by the read that follows (`_store/_postgres_watch_marks.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg

from .._store._postgres_watch_marks import UNWATCH, WATCH

# Rows of engines that are gone (a crashed engine leaves its own).
_GONE = (
    "SELECT run_id, engine FROM watches w"
    " WHERE NOT EXISTS (SELECT 1 FROM engines e WHERE e.id = w.engine)"
)

Execute = Callable[..., Awaitable[Any]]


async def forget_gone(conn: asyncpg.Connection) -> None:
    """Drop the watches of engines that are gone, each by `unwatch`, which also clears its
    run's mark once no watch is left (else every commit to the run would notify nobody):
    one run per statement, as marks are changed (`_store/_postgres_watch_marks.py`)."""
    for run_id, engine in await conn.fetch(_GONE):
        await conn.execute(UNWATCH, run_id, engine)


class RunWatches:
    """See the module docstring. `execute(sql, *args)` runs a statement on the node's
    connection; `owns(run_id)` and `engine_id()` are the node's."""

    def __init__(
        self, execute: Execute, owns: Callable[[str], bool], engine_id: Callable[[], str]
    ) -> None:
        self._execute = execute
        self._owns = owns
        self._engine_id = engine_id
        self._counts: dict[str, int] = {}
        self._rows: set[str] = set()  # runs with a row under the current engine id
        self._moved: set[str] = set()  # followed runs that moved away, without a row yet

    async def watch(self, run_id: str) -> None:
        """A local reader follows `run_id`: commits to it notify this engine while another
        engine owns it."""
        count = self._counts.get(run_id, 0)
        self._counts[run_id] = count + 1
        if count == 0 and not self._owns(run_id):
            await self._write([run_id])

    async def unwatch(self, run_id: str) -> None:
        count = self._counts.get(run_id, 0) - 1
        if count > 0:
            self._counts[run_id] = count
            return
        self._counts.pop(run_id, None)
        self._moved.discard(run_id)
        if run_id in self._rows:
            self._rows.discard(run_id)
            await self._execute(UNWATCH, run_id, self._engine_id())

    def moved(self, run_ids: Iterable[str]) -> bool:
        """This engine no longer owns `run_ids`; True if readers follow some of them (then
        `register_moved()` is due)."""
        followed = [run_id for run_id in run_ids if run_id in self._counts]
        self._moved.update(followed)
        return bool(followed)

    def rejoined(self) -> bool:
        """The engine has a new id: its rows are to be written again; True if any."""
        self._rows.clear()
        return self.moved(list(self._counts))

    async def register_moved(self) -> set[str]:
        """Write the rows of the followed runs that moved away (and are not back); returns
        them: their readers are to read on from the store."""
        moved, self._moved = self._moved, set()
        runs = [run_id for run_id in moved if run_id in self._counts and not self._owns(run_id)]
        if runs:
            try:
                await self._write(runs)
            except BaseException:
                self._moved.update(runs)  # the next round tries again
                raise
        return set(runs)

    async def _write(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            await self._execute(WATCH, run_id, self._engine_id())
            self._rows.add(run_id)
