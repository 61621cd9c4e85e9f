"""Scheduler: every schedule's one wake-up on the engine's timer service, and its ticks.

Each schedule that is not paused holds one timer entry, for its next tick (no
polling). When it comes due, the scheduler's one task starts the tick's run,
whose id is derived from the schedule id and the tick time (so a tick fired
twice, by a restart or by two engines, starts one run), and writes the
schedule's row in the same batch as that run's creation. It learns that a run
it started has finished from the engine (`run_finished`), which starts a
buffered tick if one waits. On open it brings declared schedules in line with
the code and acts on the ticks missed while no engine ran (`catchup`).

A tick's write (and so its runs) is made only if the schedule is unchanged since
this engine read it, and a run of it is unfinished or not as this engine thought
when it applied the overlap policy (`_store/_schedule_rows`): otherwise (another
engine sharing the database changed the schedule, or started or finished a run of
it, meanwhile) the tick is not fired, the schedule is read again, with the runs
other engines started, and its due tick fired anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import attrs

from ._asyncio_helpers import shielded
from ._cron import CronExpression
from ._errors import ScheduleError
from ._ids import tick_run_id
from ._models import FINAL, ScheduleTick
from ._schedule_declared import reconcile_declared
from ._schedule_host import SchedulerHost
from ._schedule_policy import due_ticks, missed_ticks, overlap_decision
from ._schedule_types import MAX_RECENT, utc
from ._store import RunRow, ScheduleRow, WriteBatch
from ._store._schedule_rows import new_version
from ._timers import TimerEntry, TimerService

log = logging.getLogger("actorflow.schedules")

# Timer keys of schedules: "\x00" cannot start a run id (run ids are printable).
SCHEDULE_KEY = "\x00schedule:"


@attrs.define(slots=True)
class NextTick:
    """A schedule's next tick, prepared when its timer is armed rather than when it fires:
    its time, the tick after it, its run's id and the `ScheduleTick` the run gets, for
    the expression `expr` (another one, after an update, prepares it again)."""

    at: float
    following: float | None
    run_id: str
    info: ScheduleTick
    expr: CronExpression


# A run recorded in a firing pass, whose actor starts once every due tick is recorded.
Spawn = tuple[RunRow, WriteBatch, ScheduleTick]


@attrs.define
class FireStats:
    """What firing has cost: timers handled, and the loop's CPU time spent firing them
    (their runs' creation included; the benchmarks read it)."""

    fired: int = 0
    fire_cpu_seconds: float = 0.0


class Scheduler:
    """Owns the schedules of one engine while it is open (see the module docstring)."""

    def __init__(
        self, host: SchedulerHost, timers: TimerService, clock: Callable[[], float] = time.time
    ) -> None:
        self.host = host
        self.timers = timers
        self.clock = clock  # injectable: tests move it across DST and long downtimes
        self.rows: dict[str, ScheduleRow] = {}
        self.exprs: dict[str, CronExpression] = {}
        self.lock = asyncio.Lock()  # one writer of the schedules at a time
        self._entries: dict[str, TimerEntry] = {}
        self._owner: dict[str, str] = {}  # unfinished run id -> its schedule
        self._due: dict[str, None] = {}  # schedules whose timer fired (an ordered set)
        self._touched: dict[str, None] = {}  # schedules a run of which has finished
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Creations to confirm once committed: their id may have been taken.
        self._started: list[tuple[WriteBatch, str]] = []
        self._taken: list[str] = []  # ids a live run held already
        self._commits: list[tuple[WriteBatch, asyncio.Future[None]]] = []
        self._stale: set[str] = set()  # schedules whose ticks' writes were refused
        self._written = False  # rows written in the open batch since the last commit
        self._unwritten: dict[str, ScheduleRow] = {}  # fired in this pass, not yet written
        self._unknown: set[str] = set()  # schedules whose workflow this engine lacks
        self._next: dict[str, NextTick] = {}
        self.stats = FireStats()

    # -- life ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the schedules, reconcile the declared ones, act on missed ticks, arm timers."""
        store = self.host.store
        rows = {row.id: row for row in await store.load_schedules()}
        async with self.lock:
            now = self.clock()
            declared = [(wf.name, cron) for wf in self.host.scheduled_workflows()
                        for cron in wf.schedules]  # fmt: skip
            gone, changed = reconcile_declared(rows, declared, now)
            for schedule_id in gone:
                self.write(schedule_id)
            for row in rows.values():
                expr = self._expression(row)
                if expr is not None:
                    self.rows[row.id] = row
                    self.exprs[row.id] = expr
                    self._owner.update(dict.fromkeys(row.running, row.id))
            # Owners first, then the read: a recovered run that finishes meanwhile is
            # heard of through `run_finished` or seen final here.
            running = list(self._owner)
            found = await store.get_runs(running) if running else {}
            for run_id in running:
                if run_id not in found or found[run_id].status in FINAL:
                    self.run_finished(run_id)
            for row in self.rows.values():
                expr = self.exprs[row.id]
                if not row.paused:
                    # Each missed tick gets its run, whatever the overlap policy: the
                    # runs had not overlapped had they started on time.
                    for tick in missed_ticks(expr, row.watermark, now, row.catchup):
                        self._start_recorded(row, tick)
                    row.watermark = max(row.watermark, now)
                    row.next_time = expr.next_after(row.watermark)
                self._drain(row)
                self.write(row, change=row.id in changed)
            await self.settle()
        self._task = asyncio.create_task(self._work(), name="actorflow-scheduler")

    async def refresh(self) -> None:
        """Take the schedules other engines sharing the store created, changed or deleted
        since this one read them: their settings (and the watermark, next tick, pause
        and recent ticks stored with the change) replace this engine's, and timers are
        re-armed. This engine keeps its own view of the runs it started (`running`,
        `buffered`), but for the schedules whose ticks' writes were refused: those are
        taken whole, with the unfinished runs of both views."""
        async with self.lock:
            if self._task is None:  # not open (or closing): `open` reads them all
                return
            stored = {row.id: row for row in await self.host.store.load_schedules()}
            for gone in [key for key in self.rows if key not in stored]:
                del self.rows[gone], self.exprs[gone]
                self._disarm(gone)
            learned: list[str] = []
            stale, self._stale = self._stale, set()
            for row in stored.values():
                mine = self.rows.get(row.id)
                if mine is not None and mine.version == row.version and row.id not in stale:
                    continue
                expr = self._expression(row)
                if expr is None:
                    continue
                if mine is None or row.id in stale:
                    if mine is not None:
                        row.running = list(dict.fromkeys([*mine.running, *row.running]))
                    mine = self.rows[row.id] = row
                    learned += row.running
                    self._owner.update(dict.fromkeys(row.running, row.id))
                for name, value in attrs.asdict(row, recurse=False).items():
                    if name not in ("buffered", "running"):
                        setattr(mine, name, value)
                self.exprs[row.id] = expr
                self._arm(mine)
            if learned:  # as at open: runs of it that finished are forgotten
                found = await self.host.store.get_runs(learned)
                for run_id in learned:
                    if run_id not in found or found[run_id].status in FINAL:
                        self.run_finished(run_id)

    async def close(self) -> None:
        """Stop firing: the task ends, the timer entries go (ticks due meanwhile are
        caught up at the next open)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for entry in self._entries.values():
            entry.cancel()
        self._entries.clear()

    def _expression(self, row: ScheduleRow) -> CronExpression | None:
        try:
            return CronExpression(row.cron, row.timezone)
        except ScheduleError as exc:
            log.error("schedule %r is left as it is: %s", row.id, exc)
            return None

    # -- firing ----------------------------------------------------------------------------

    def wake(self, key: str) -> None:
        """The timer of schedule `key` (a `SCHEDULE_KEY` key) came due."""
        self._entries.pop(key[len(SCHEDULE_KEY) :], None)
        self._due[key[len(SCHEDULE_KEY) :]] = None
        self._kick.set()

    def run_finished(self, run_id: str) -> None:
        """A run has finished: if a schedule started it, a buffered tick may start now."""
        schedule_id = self._owner.pop(run_id, None)
        row = None if schedule_id is None else self.rows.get(schedule_id)
        if row is not None and run_id in row.running:
            row.running.remove(run_id)
            self._touched[row.id] = None
            self._kick.set()

    async def _work(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                if self._stale:
                    await self.refresh()
                async with self.lock:
                    await self._fire()
            except Exception:
                # A failed commit (the store logged it): the ticks whose rows were lost
                # fire again at the next open, under the same run ids.
                log.exception("schedules: firing failed")

    async def _fire(self) -> None:
        """Fire the due schedules. Those with one due tick, prepared in advance, go first
        and together: their runs are recorded (each run's `created_at` is when), then
        their actors start, then their rows are written and their next ticks prepared;
        the others (several ticks due after a stall, `terminate_other`) follow."""
        due, self._due = self._due, {}
        touched, self._touched = self._touched, {}
        now = self.clock()
        began = time.thread_time()
        fired: list[ScheduleRow] = []
        later: list[ScheduleRow] = []
        spawns: list[Spawn] = []
        for schedule_id in due:
            row = self.rows.get(schedule_id)
            if row is not None and not row.paused:
                (fired if self._fire_prepared(row, now, spawns) else later).append(row)
        for run, batch, info in spawns:
            self.host.spawn_tick(run, batch, info)
        for row in fired:
            self.write(row)
        for row in later:
            await self._fire_due(row, now)
        self._flush()
        self.stats.fire_cpu_seconds += time.thread_time() - began
        self.stats.fired += len(due)
        for schedule_id in touched:
            row = self.rows.get(schedule_id)
            # `running` is not written for itself: the next open checks it in the store.
            if row is not None and row.buffered and not row.running:
                self._drain(row)
                self.write(row)
        await self.settle()

    def _fire_prepared(self, row: ScheduleRow, now: float, spawns: list[Spawn]) -> bool:
        """Act on the schedule's due tick if it is the only one and was prepared, and its
        overlap policy does not terminate a run; False, with nothing done, otherwise."""
        ready = self._next.get(row.id)
        if (
            ready is None
            or ready.at != row.next_time
            or ready.expr is not self.exprs[row.id]
            or ready.at > now
            or (ready.following is not None and ready.following <= now)
        ):
            return False
        decision = overlap_decision(row.overlap, bool(row.running), len(row.buffered))
        if decision == "terminate":
            return False
        self._decide(row, ready.at, decision, spawns)
        row.watermark, row.next_time = ready.at, ready.following
        return True

    async def _fire_due(self, row: ScheduleRow, now: float) -> None:
        expr = self.exprs[row.id]
        ticks, following = due_ticks(expr, row.next_time, row.watermark, now)
        for tick in ticks:
            await self._tick(row, tick)
        if ticks:
            row.watermark = ticks[-1]
        row.next_time = following
        # Written once every due schedule's runs are recorded: the last tick's run of a
        # pass is recorded sooner (the rows still ride in the batch of their runs).
        self._unwritten[row.id] = row

    def _flush(self) -> None:
        """Write the rows of the schedules fired in this pass so far."""
        for row in self._unwritten.values():
            self.write(row)
        self._unwritten.clear()

    async def _tick(self, row: ScheduleRow, tick: float) -> None:
        """Act on one tick as the schedule's overlap policy says. The caller writes the row
        before it awaits anything: in the batch of the run the tick started, if it did."""
        decision = overlap_decision(row.overlap, bool(row.running), len(row.buffered))
        if decision == "terminate":
            # The runs started so far are in the open batch: their rows go with them,
            # before an await lets anyone else commit it.
            self._unwritten[row.id] = row
            self._flush()
            self._commit()
            for other in list(row.running):
                await self.host.terminate(other)
            decision = "start"
        self._decide(row, tick, decision)

    def _decide(
        self, row: ScheduleRow, tick: float, decision: str, spawns: list[Spawn] | None = None
    ) -> None:
        """Start, buffer or skip the tick (`decision`, not "terminate")."""
        self._premise(row, decision != "start")
        if decision == "start":
            self._start_recorded(row, tick, spawns)
        elif decision == "buffer":
            row.buffered.append(tick)
            record(row, tick, None, "buffered")
        else:
            record(row, tick, None, "skipped")

    def _start_recorded(
        self, row: ScheduleRow, tick: float, spawns: list[Spawn] | None = None
    ) -> None:
        run_id = self.start(row, tick, spawns)
        record(row, tick, run_id, "started" if run_id is not None else "skipped")

    def _premise(self, row: ScheduleRow, busy: bool) -> None:
        """The overlap policy acts on a tick believing a run of the schedule unfinished
        (`busy`) or not, or (`terminate_other`) having terminated those it knows of: its
        write is made only if that is still so (the first belief of the batch: its later
        ticks see the runs it starts)."""
        if row.overlap == "allow":
            return
        write = self.host.store.batch().tick_write(row)
        if write is None:
            return
        if row.overlap == "terminate_other":
            write.known = list(row.running) if write.known is None else write.known
        elif write.busy is None:
            write.busy = busy

    def _drain(self, row: ScheduleRow) -> None:
        """Start the oldest buffered tick once no run of the schedule is unfinished."""
        while row.buffered and not row.running:
            self._premise(row, False)
            tick = row.buffered.pop(0)
            run_id = self.start(row, tick)
            for i, (at, _, outcome) in enumerate(row.recent):
                if at == tick and outcome == "buffered":
                    row.recent[i] = (tick, run_id, "started" if run_id else "skipped")

    def start(
        self, row: ScheduleRow, tick: float, spawns: list[Spawn] | None = None, fired: bool = True
    ) -> str | None:
        """Add the run of `tick` to the open batch (the caller writes the row with it next,
        without awaiting in between); None if this engine does not run the workflow. Its
        actor starts now, or, given `spawns`, is added there for the caller to start. A
        `fired` tick's run is created only if the schedule is unchanged (see the module
        docstring); others (`trigger`, `backfill`) whatever it is."""
        wf = self.host.workflow(row.workflow)
        if wf is None:
            if row.id not in self._unknown:  # once, not at every tick
                self._unknown.add(row.id)
                log.warning(
                    "schedule %r: workflow %r is not registered in this engine; its ticks "
                    "are skipped",
                    row.id,
                    row.workflow,
                )
            return None
        ready = self._next.get(row.id)
        if ready is None or ready.at != tick or ready.info.cron != row.cron:
            at = utc(tick)
            run_id, info = tick_run_id(row.id, at), ScheduleTick(row.id, row.cron, at)
        else:
            run_id, info = ready.run_id, ready.info
        batch = self.host.store.batch()
        run = self.host.record_tick(batch, wf, run_id, row.args, row.metadata, info)
        if run is None:
            self._taken.append(run_id)
        else:
            write = batch.tick_write(row) if fired else None
            if write is not None:
                write.runs.append(run_id)
            if spawns is None:
                self.host.spawn_tick(run, batch, info)
            else:
                spawns.append((run, batch, info))
        self._started.append((batch, run_id))
        self._written = True
        if run_id not in row.running:
            row.running.append(run_id)
        self._owner[run_id] = row.id
        return run_id

    def write(self, row: ScheduleRow | str, change: bool = False) -> None:
        """Write the row in the open batch (a tick's write unless `change`, which gives it
        a new version), or delete schedule `row` (an id), and re-arm its timer; `settle()`
        commits."""
        batch = self.host.store.batch()
        if isinstance(row, str):
            batch.delete_schedule(row)
            self._disarm(row)
        else:
            if change:
                row.version = new_version()
            batch.write_schedule(row, tick=not change)
            self._arm(row)
        self._written = True

    def _commit(self) -> None:
        """Ask for the open batch (rows and runs written since the last call) to commit:
        once per pass, not once per schedule."""
        if self._written:
            batch = self.host.store.batch()
            self._commits.append((batch, self.host.store.commit()))
            self._written = False

    async def settle(self) -> None:
        """Commit what was written, wait for it, then forget runs that did not start
        because their tick had started them already and they have finished, or because
        the schedule had changed elsewhere (then the schedules are read again)."""
        self._commit()
        commits, self._commits = self._commits, []
        started, self._started = self._started, []
        taken, self._taken = self._taken, []
        for commit in {id(c): c for _, c in commits}.values():
            await shielded(commit)
        for batch, _ in commits:
            self._stale |= batch.stale_schedules
        if self._stale:
            self._kick.set()
            for batch, run_id in started:
                if run_id in batch.refused:
                    self.run_finished(run_id)
        taken += [run_id for batch, run_id in started if run_id in batch.conflicts]
        if taken:
            for run_id, found in (await self.host.store.get_runs(taken)).items():
                if found.status in FINAL:
                    self.run_finished(run_id)

    def _arm(self, row: ScheduleRow) -> None:
        """Keep the schedule's one timer entry on its next tick, and that tick prepared."""
        entry = self._entries.get(row.id)
        if entry is not None and (row.paused or entry.when != row.next_time):
            entry.cancel()
            entry = None
            del self._entries[row.id]
        if row.paused or row.next_time is None:
            return
        if entry is None:
            self._entries[row.id] = self.timers.schedule(row.next_time, SCHEDULE_KEY + row.id)
        ready, expr = self._next.get(row.id), self.exprs.get(row.id)
        if expr is not None and (
            ready is None or ready.at != row.next_time or ready.expr is not expr
        ):
            at = utc(row.next_time)
            self._next[row.id] = NextTick(
                row.next_time, expr.next_after(row.next_time), tick_run_id(row.id, at),
                ScheduleTick(row.id, row.cron, at), expr,
            )  # fmt: skip

    def _disarm(self, schedule_id: str) -> None:
        self._next.pop(schedule_id, None)
        entry = self._entries.pop(schedule_id, None)
        if entry is not None:
            entry.cancel()


def record(row: ScheduleRow, tick: float, run_id: str | None, outcome: str) -> None:
    """Add a tick to the schedule's `recent`, keeping the last `MAX_RECENT`."""
    row.recent.append((tick, run_id, outcome))
    del row.recent[:-MAX_RECENT]
