"""How the SQLite store keeps a run's log: every entry but the `run_created` its row implies.

A run's first entry (`run_created`, index 0) holds nothing beyond its row's
workflow name and creation time, unless the run joins a trace or was started
by a schedule's tick (then it has data). Such a plain entry is not written
(`_sqlite_writer`): it is one row of the eight a 3-step workflow journals, and
each row costs the writer about 9,500 instructions. Every read of a run's log
puts it back, from the run's row, so readers see the log as it was appended:
the engine replaying a run, `Run.events()`, the HTTP API and the command line.
Files written by earlier versions keep the stored entry, which is read as it is.
The run's row and its entries commit in one transaction, so the row is there
whenever the entry would have been.
"""

from __future__ import annotations

from typing import Final

from ._base import EventRow, RunRow, as_event

# `_log.RUN_CREATED` (`_log` imports the stores).
IMPLIED_KIND: Final = "run_created"

# The run's entries after index `?2`, its implied `run_created` first when `?2` is below
# 0 and no entry 0 is stored.
SELECT_EVENTS: Final = (
    f"SELECT id, 0, 0, '{IMPLIED_KIND}', NULL, workflow, NULL, created_at FROM runs"
    " WHERE id = ?1 AND ?2 < 0"
    " AND NOT EXISTS (SELECT 1 FROM events WHERE run_id = ?1 AND idx = 0)"
    " UNION ALL SELECT * FROM events WHERE run_id = ?1 AND idx > ?2 ORDER BY 2"
)


def implied_creation(row: RunRow) -> EventRow:
    """The `run_created` entry `row` implies, as reads put it back (the SQL above makes
    the same row)."""
    return as_event((row.id, 0, 0, IMPLIED_KIND, None, row.workflow, None, row.created_at))


def is_implied(event: EventRow, row: RunRow) -> bool:
    """Whether `event` is `implied_creation(row)`, which the writer leaves out. Compared
    field by field: building the entry to compare with costs about 3,000 instructions per
    run more (measured)."""
    return (
        event.data is None
        and event.idx == 0
        and event.generation == 0
        and event.seq is None
        and event.kind == IMPLIED_KIND
        and event.name == row.workflow
        and event.at == row.created_at
    )


def with_creation(row: RunRow, events: list[EventRow]) -> list[EventRow]:
    """A run's whole log as read (`events`, in order), its implied `run_created` entry put
    back in front where none is stored."""
    if not events or events[0].idx != 0:
        events.insert(0, implied_creation(row))
    return events
