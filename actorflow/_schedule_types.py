"""Schedules' public value types, their policies, and how a tick names its run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import attrs

from ._errors import ScheduleError
from ._models import ScheduleTick
from ._serde import loads

if TYPE_CHECKING:
    from ._store import EventRow, ScheduleRow

Overlap = Literal["skip", "buffer_one", "buffer_all", "terminate_other", "allow"]
Catchup = Literal["latest", "all", "skip"]
Outcome = Literal["started", "skipped", "buffered"]

OVERLAPS: tuple[Overlap, ...] = ("skip", "buffer_one", "buffer_all", "terminate_other", "allow")
CATCHUPS: tuple[Catchup, ...] = ("latest", "all", "skip")
MAX_CATCHUP = 100  # runs started for ticks missed while no engine ran (catchup="all")
MAX_RECENT = 20  # ticks kept in ScheduleInfo.recent


class RecentTick(NamedTuple):
    """One tick of a schedule: `(scheduled_time, run_id or None, outcome)`, where outcome
    is `"started"`, `"skipped"` (an earlier run was unfinished) or `"buffered"` (it starts
    when the earlier run ends)."""

    scheduled_time: datetime
    run_id: str | None
    outcome: Outcome


@attrs.frozen
class ScheduleInfo:
    """A snapshot of a schedule. `declared` is true for `@af.workflow(schedules=...)`;
    `next_time` is the next tick (None while paused); `recent` the last ticks, oldest first."""

    id: str
    workflow: str
    cron: str
    args: list[Any]
    timezone: str
    overlap: Overlap
    catchup: Catchup
    paused: bool
    declared: bool
    next_time: datetime | None
    recent: tuple[RecentTick, ...]
    metadata: Any = None
    created_at: datetime | None = None
    buffered: tuple[datetime, ...] = ()


def check_policy(value: object, allowed: tuple[str, ...], what: str) -> Any:
    """`value` if it is one of `allowed`; raises `ScheduleError` naming `what`."""
    if value not in allowed:
        raise ScheduleError(f"unknown {what} policy {value!r}; use one of {', '.join(allowed)}")
    return value


def check_schedule_id(schedule_id: object) -> str:
    """Validate a schedule id: a non-empty printable str (it goes into run ids)."""
    if (
        not isinstance(schedule_id, str)
        or not schedule_id
        or len(schedule_id) > 200
        or not schedule_id.isprintable()
    ):
        raise ScheduleError(
            f"schedule id must be a non-empty printable str of at most 200 chars, "
            f"got {schedule_id!r}"
        )
    return schedule_id


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def tick_fields(tick: ScheduleTick) -> dict[str, Any]:
    """The tick as stored in its run's first log entry (so it survives replay)."""
    at = tick.scheduled_time.timestamp()
    return {"schedule": {"id": tick.schedule_id, "cron": tick.cron, "time": at}}


def schedule_of(log: Sequence[EventRow]) -> ScheduleTick | None:
    """The tick that started the run whose whole event log is `log` (None if none did):
    its first entry, the creation, carries it."""
    if not log or log[0].idx != 0 or log[0].data is None:
        return None
    found = loads(log[0].data).get("schedule")
    if found is None:
        return None
    return ScheduleTick(found["id"], found["cron"], utc(found["time"]))


def to_info(row: ScheduleRow) -> ScheduleInfo:
    """The public snapshot of a schedule's row."""
    return ScheduleInfo(
        id=row.id,
        workflow=row.workflow,
        cron=row.cron,
        args=loads(row.args),
        timezone=row.timezone,
        overlap=cast(Overlap, row.overlap),  # checked when the schedule was created
        catchup=cast(Catchup, row.catchup),
        paused=row.paused,
        declared=row.declared,
        next_time=None if row.next_time is None else utc(row.next_time),
        recent=tuple(RecentTick(utc(t), r, cast(Outcome, o)) for t, r, o in row.recent),
        metadata=None if row.metadata is None else loads(row.metadata),
        created_at=utc(row.created_at),
        buffered=tuple(utc(t) for t in row.buffered),
    )
