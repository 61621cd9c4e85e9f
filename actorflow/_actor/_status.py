"""StatusKeeper: keeps a run's status, concurrency slot and wake-up timer in line with
what its workflow is doing.

After every turn the actor calls `settle()`, which derives the status from
the run's pending operations (steps in flight or held, effects, the
workflow's own state), gives back a slot no step needs, moves the run's timer
to its next deadline, and records the run's row when any of that changed.
"""

from __future__ import annotations

import time
from typing import Final

from .._models import RunStatus
from ._state import RunState

# Read on every turn: an enum member read through its class is a type lookup, a
# module constant of a compiled build a C static (0.9 % of a 3-step workflow).
_now: Final = time.time
_RUNNING: Final = RunStatus.RUNNING
_QUEUED: Final = RunStatus.QUEUED
_WAITING: Final = RunStatus.WAITING
_PAUSING: Final = RunStatus.PAUSING
_PAUSED: Final = RunStatus.PAUSED


class StatusKeeper(RunState):
    """The status, slot and timer part of `RunActor`."""

    __slots__ = ()

    def may_start_steps(self) -> bool:
        """Whether a step may start now; asks for a slot if one is needed."""
        if self.paused or self.finished:
            return False
        if self.has_slot or not self.limited:
            return True
        self.has_slot = self.host.limiter.acquire(self.run_id, self.row.workflow)
        return self.has_slot

    def settle(self) -> None:
        """Recompute status, slot and wake-up time; record the row if they changed."""
        if self.finished or self.workflow is None:
            return
        # One pass over the steps: is one in flight, and when is the earliest retry due.
        running = False
        due: float | None = None
        for op in self.steps.values():
            if op.pending or op.task is not None:
                running = True
            elif op.retry_at is not None and (due is None or op.retry_at < due):
                due = op.retry_at
        if self.paused:
            status = _PAUSING if running else _PAUSED
            due = None  # a paused run retries nothing
        elif self.steps or self._effects:
            # With effects pending, the workflow is fed an input once this commit is
            # durable: it is not waiting. Recorded as `waiting` (no timer), a process death
            # right after the commit would leave the input unconsumed and the run parked.
            status = _RUNNING if self.has_slot or not self.limited else _QUEUED
        elif self.root is not None and not self.root.done():
            status = _WAITING
        else:
            status = _RUNNING
        if self.has_slot and not running and (self.paused or not self.steps):
            self.host.limiter.release(self.run_id)
            self.has_slot = False
        row = self.row
        deadline = row.deadline_at
        if deadline is not None and (due is None or deadline < due):
            due = deadline
        if self.sleeps or self.waits:
            due = self._timers_due(due)
        timer = self._timer
        if due is not None and (timer is None or timer.when != due):
            if timer is not None:
                timer.cancel()
            self._timer = self.host.timers.schedule(due, self.run_id)
        elif due is None and timer is not None:
            timer.cancel()
            self._timer = None
        if status != self.status or due != row.wake_at:
            batch = self.batch()
            self.status = status
            row.status, row.wake_at = status._value_, due  # `.value` is two Python calls
            if status != _QUEUED and row.started_at is None:
                row.started_at = _now()
            batch.update_run(row)
            self._wrote = True

    def _timers_due(self, due: float | None) -> float | None:
        """The earlier of `due` and the first sleep or event timeout still to fire."""
        for sleep in self.sleeps.values():
            if not sleep.fired and (due is None or sleep.fire_at < due):
                due = sleep.fire_at
        for wait in self.waits.values():
            at = wait.timeout_at
            if at is not None and not wait.timing_out and (due is None or at < due):
                due = at
        return due
