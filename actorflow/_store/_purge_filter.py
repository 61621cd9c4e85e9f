"""What a purge deletes (`PurgeFilter`), how the engine keeps runs out of it
(`PurgeClaim`), and what one of its transactions did (`PurgedBatch`): the types of the
`Store.purge_batch` contract (see `_purge` for how the stores delete)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from .._models import FINAL


class _Row(Protocol):
    """What `PurgeFilter.matches` reads of a run's row (a `RunRow`)."""

    id: str
    workflow: str
    status: str
    completed_at: float | None


class PurgeFilter:
    """Which finished runs a purge deletes: finished before `before` (epoch seconds),
    with one of `statuses`, of one of `workflows` (None: any) and none of `exclude`,
    and not one of the ids in `skip` (runs the purge leaves alone, see `RunsBeingPurged`:
    it adds to them as it goes)."""

    __slots__ = ("before", "exclude", "skip", "statuses", "workflows")

    def matches(self, row: _Row) -> bool:
        """Whether `row` itself passes the filter (references are checked apart)."""
        return (
            row.status in self.statuses
            and row.completed_at is not None
            and row.completed_at < self.before
            and (self.workflows is None or row.workflow in self.workflows)
            and row.workflow not in self.exclude
            and row.id not in self.skip
        )

    def __init__(
        self,
        before: float,
        statuses: Sequence[str] = FINAL,
        workflows: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
    ) -> None:
        self.before = before
        self.statuses = tuple(statuses)
        self.workflows = None if workflows is None else tuple(workflows)
        self.exclude = tuple(exclude)
        self.skip: set[str] = set()


PurgeClaim = Callable[[list[str]], list[str]]
"""Given the ids of the runs a purge batch chose, the ones it may delete (see
`RunsBeingPurged.claim`); called on the event loop before any of them is deleted."""


class PurgedBatch(NamedTuple):
    """What one purge transaction did: `runs` and `rows` (runs included) deleted, `rows`
    0 once no run is left to delete; `partial`: runs it deleted some rows of but not all
    (a large run takes several transactions)."""

    runs: int
    rows: int
    partial: list[str]
