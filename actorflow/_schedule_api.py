"""What callers do with schedules: `Engine.create_schedule` and friends, and `af.Schedule`.

`EngineSchedules` is the engine's schedule side, an object the engine owns (its
`create_schedule`, `get_schedule` and `list_schedules` hand over to it): it
checks what callers pass (a bad expression, zone, policy, workflow or argument
raises `ScheduleError` before anything is stored), changes the scheduler's rows
under its lock, and is the scheduler's `SchedulerHost`. What it needs of the
engine is named by `ScheduleOwner`; runs are created in its `RunDirectory`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from ._creation import create_run
from ._cron import CronExpression
from ._definitions import WorkflowFunction
from ._directory import RunDirectory
from ._durations import to_timestamp
from ._errors import (
    InvalidStateError,
    RunNotFoundError,
    ScheduleError,
    ScheduleNotFoundError,
    SerializationError,
    WorkflowNotRegisteredError,
)
from ._models import ScheduleTick
from ._run import Run
from ._schedule_types import (
    CATCHUPS,
    OVERLAPS,
    Catchup,
    Overlap,
    ScheduleInfo,
    check_policy,
    check_schedule_id,
    to_info,
)
from ._schedules import Scheduler, record
from ._serde import encode
from ._store import RunRow, ScheduleRow, Store, WriteBatch

MAX_BACKFILL = 1000


class ScheduleOwner(Protocol):
    """What schedules need from the engine that owns them."""

    @property
    def store(self) -> Store: ...
    @property
    def max_payload_bytes(self) -> int: ...

    def _check_open(self) -> None:
        """Raise unless the engine is open (and the caller is not workflow code)."""

    def get_run(self, run_id: str) -> Run[Any]:
        """A handle for the run `run_id`."""

    def workflows(self) -> list[WorkflowFunction[Any, Any]]:
        """The workflows the engine runs (whose declared schedules it keeps)."""


class EngineSchedules:
    """The engine's schedules (see the module docstring); `scheduler` fires their ticks."""

    def __init__(self, owner: ScheduleOwner, runs: RunDirectory) -> None:
        self._owner = owner
        self._runs = runs
        self.store = owner.store
        self.scheduler = Scheduler(self, runs.timers)

    async def create_schedule(
        self,
        id: str,
        workflow: WorkflowFunction[Any, Any] | str,
        cron: str,
        *,
        args: Sequence[Any] = (),
        timezone: str = "UTC",
        overlap: Overlap = "skip",
        catchup: Catchup = "latest",
        paused: bool = False,
        metadata: Any = None,
    ) -> Schedule:
        """Create a schedule, or update the one with this `id` in place; returns its handle.

        Each tick of `cron` (5 or 6 cron fields, `@hourly`..., `@every 30s`), in
        `timezone`, starts `workflow(*args)` with the run id
        `"{id}@{tick as UTC ISO-8601}"`. Raises `ScheduleError` (nothing stored) for a
        bad id, expression, zone, policy, workflow or argument, or for the id of a
        declared schedule.
        """
        self._owner._check_open()
        schedule_id = check_schedule_id(id)
        try:
            wf = self._runs.resolve_workflow(workflow)
        except (WorkflowNotRegisteredError, TypeError) as exc:
            raise ScheduleError(f"schedule {schedule_id!r}: {exc}") from None
        expr = CronExpression(cron, timezone)
        check_policy(overlap, OVERLAPS, "overlap")
        check_policy(catchup, CATCHUPS, "catchup")
        if not isinstance(paused, bool):
            raise ScheduleError(f"paused must be a bool, got {paused!r}")
        if not isinstance(args, (tuple, list)):
            raise ScheduleError(f"schedule args must be a tuple or list, got {args!r}")
        limit = self._owner.max_payload_bytes
        try:
            wf.check_args(args, f"schedule {schedule_id!r}: ")
            args_data = encode(list(args), "schedule args", limit, wf)
            meta = None if metadata is None else encode(metadata, "metadata", limit)
        except (TypeError, SerializationError) as exc:
            raise ScheduleError(str(exc)) from None
        scheduler = self.scheduler
        async with scheduler.lock:
            now = scheduler.clock()
            old = scheduler.rows.get(schedule_id)
            if old is not None and old.declared:
                raise ScheduleError(_declared(schedule_id))
            row = ScheduleRow(
                schedule_id, wf.name, cron, args_data, timezone, overlap, catchup, paused,
                False, meta, now, now,
            )  # fmt: skip
            if old is not None:
                row.created_at, row.recent = old.created_at, old.recent
                row.buffered, row.running = old.buffered, old.running
                if (old.cron, old.timezone, old.paused) == (cron, timezone, False):
                    row.watermark = old.watermark  # no tick is lost to an update
            if not paused:
                row.next_time = expr.next_after(row.watermark)
            scheduler.rows[schedule_id] = row
            scheduler.exprs[schedule_id] = expr
            scheduler.write(row, change=True)
            await scheduler.settle()
        await self._runs.schedules_written()
        return Schedule(self, schedule_id)

    def get_schedule(self, id: str) -> Schedule:
        """A handle for schedule `id`; nothing is checked until it is used."""
        return Schedule(self, check_schedule_id(id))

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule, by id."""
        self._owner._check_open()
        rows = self.scheduler.rows
        return [to_info(rows[key]) for key in sorted(rows)]

    # -- what handles send -----------------------------------------------------------------

    def row(self, schedule_id: str) -> ScheduleRow:
        """The schedule's row; raises `ScheduleNotFoundError`."""
        self._owner._check_open()
        row = self.scheduler.rows.get(schedule_id)
        if row is None:
            raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
        return row

    async def set_paused(self, schedule_id: str, paused: bool) -> None:
        scheduler = self.scheduler
        async with scheduler.lock:
            row = self.row(schedule_id)
            if row.paused == paused:
                return
            row.paused = paused
            if paused:
                row.next_time = None
            else:  # ticks that fell while it was paused are not run
                row.watermark = max(row.watermark, scheduler.clock())
                row.next_time = scheduler.exprs[schedule_id].next_after(row.watermark)
            scheduler.write(row, change=True)
            await scheduler.settle()
        await self._runs.schedules_written()

    async def delete_schedule(self, schedule_id: str) -> None:
        scheduler = self.scheduler
        async with scheduler.lock:
            row = self.row(schedule_id)
            if row.declared:
                raise ScheduleError(_declared(schedule_id))
            del scheduler.rows[schedule_id], scheduler.exprs[schedule_id]
            scheduler.write(schedule_id)
            await scheduler.settle()
        await self._runs.schedules_written()

    async def start_ticks(self, schedule_id: str, ticks: Iterable[float]) -> list[str]:
        """Start the runs of `ticks` of the schedule at once, whatever its overlap policy."""
        scheduler = self.scheduler
        async with scheduler.lock:
            row = self.row(schedule_id)
            started = []
            for tick in ticks:
                run_id = scheduler.start(row, tick, fired=False)
                if run_id is None:
                    raise WorkflowNotRegisteredError(
                        f"schedule {schedule_id!r}: no workflow named {row.workflow!r} "
                        "is registered"
                    )
                record(row, tick, run_id, "started")
                started.append(run_id)
            scheduler.write(row)
            await scheduler.settle()
        return started

    async def backfill(self, schedule_id: str, start: datetime, end: datetime) -> list[str]:
        self.row(schedule_id)
        try:
            low, high = to_timestamp(start, "start"), to_timestamp(end, "end")
        except (TypeError, ValueError) as exc:
            raise ScheduleError(f"backfill of {schedule_id!r}: {exc}") from None
        # [start, end) as (low - ε, high - ε]: ticks fall on whole milliseconds.
        ticks = self.scheduler.exprs[schedule_id].ticks(low - 1e-4, high - 1e-4, MAX_BACKFILL + 1)
        if len(ticks) > MAX_BACKFILL:
            raise ScheduleError(
                f"backfill of {schedule_id!r} from {start} to {end} has more than "
                f"{MAX_BACKFILL} ticks; split it"
            )
        return await self.start_ticks(schedule_id, ticks)

    # -- SchedulerHost ---------------------------------------------------------------------

    def scheduled_workflows(self) -> Iterable[WorkflowFunction[Any, Any]]:
        return self._owner.workflows()

    def workflow(self, name: str) -> WorkflowFunction[Any, Any] | None:
        return self._runs.workflow(name)

    def record_tick(
        self,
        batch: WriteBatch,
        wf: WorkflowFunction[Any, Any],
        run_id: str,
        args: bytes,
        metadata: bytes | None,
        tick: ScheduleTick,
    ) -> RunRow | None:
        # Recorded, not started: the scheduler starts an instant's runs once all are recorded.
        return create_run(
            self._runs, batch, wf, run_id, args, metadata, wf.deadline, False, tick, None, False
        )

    def spawn_tick(self, row: RunRow, batch: WriteBatch, tick: ScheduleTick) -> None:
        self._runs.spawn(row, batch, unique=False, schedule=tick)

    async def terminate(self, run_id: str) -> None:
        with contextlib.suppress(InvalidStateError, RunNotFoundError):
            await self._owner.get_run(run_id).terminate()

    def run(self, run_id: str) -> Run[Any]:
        return self._owner.get_run(run_id)


class Schedule:
    """A handle on a schedule (`engine.get_schedule(id)`, `engine.create_schedule(...)`).

    Every method raises `ScheduleNotFoundError` if the schedule does not exist.
    """

    __slots__ = ("_schedules", "id")

    def __init__(self, schedules: EngineSchedules, schedule_id: str) -> None:
        self._schedules = schedules
        self.id = schedule_id

    async def info(self) -> ScheduleInfo:
        """A snapshot of the schedule."""
        return to_info(self._schedules.row(self.id))

    async def exists(self) -> bool:
        """Whether the schedule exists."""
        try:
            self._schedules.row(self.id)
        except ScheduleNotFoundError:
            return False
        return True

    async def pause(self) -> None:
        """Stop firing (no-op if paused); ticks that fall while paused are not run."""
        await self._schedules.set_paused(self.id, True)

    async def resume(self) -> None:
        """Fire again from the next tick (no-op if not paused)."""
        await self._schedules.set_paused(self.id, False)

    async def delete(self) -> None:
        """Delete the schedule; its unfinished runs go on. A declared schedule raises
        `ScheduleError` (remove it from the code instead)."""
        await self._schedules.delete_schedule(self.id)

    async def trigger(self) -> Run[Any]:
        """Start one run now, outside the cron and whatever the overlap policy."""
        schedules = self._schedules
        (run_id,) = await schedules.start_ticks(self.id, [schedules.scheduler.clock()])
        return schedules.run(run_id)

    async def backfill(self, start: datetime, end: datetime) -> list[Run[Any]]:
        """Start the runs of the ticks in `[start, end)` (aware datetimes), as if they had
        fired; a tick whose run exists already returns that run. At most 1000 ticks."""
        schedules = self._schedules
        return [schedules.run(run_id) for run_id in await schedules.backfill(self.id, start, end)]

    def __repr__(self) -> str:
        return f"<Schedule {self.id!r}>"


def _declared(schedule_id: str) -> str:
    return (
        f"schedule {schedule_id!r} is declared with @af.workflow(schedules=...); "
        "change it in the code"
    )
