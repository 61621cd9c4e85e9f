"""RunActor: the one owner of a live run, the only code that changes its state and log.

The actor owns its run's summary row, event log, workflow sandbox, step
tasks, timers and stream counters. Everything else talks to it through its
mailbox. One turn of the actor:

1. take every queued message and handle it; handling appends events to the
   store's open batch. An event that answers the workflow (a step result, a
   fired timer, a received event) is fed to it in the same turn, and the
   workflow runs until it waits again, appending what it calls next;
2. commit. Nothing the workflow did leaves the run before that commit: step
   attempts start from the commit's callbacks, and *effects* (replies to
   callers, a child start's outcome) wait for it. Effects may append more
   events, so repeat until nothing is left.

An actor has a task only while it has something to wait for: opening the
run from the store, a control request, a commit its effects wait for, an idle
timeout before eviction. A run waiting on its steps, the common case, has
none: its step results are taken in the step's own task (`step_ended`), in a
turn that waits for nothing, and a fresh run's first turn is a plain
callback. A message for an actor without a task starts one. A finished run
leaves the engine when its final status is committed (`finish`).

This is output commit: the workflow may see a result before it is durable,
but the world sees nothing that depends on it until it is. A crash before the
commit loses the result and everything the workflow did with it, together, and
replay redoes both. Feeding inputs at once saves the actor a second wake-up per
step. Writes nothing waits on (a status change) are not awaited at all: the
single writer commits in order, so a later awaited commit covers them.

Determinism rule (see `_sandbox`): every future the workflow waits on is
resolved either at once, in both live and replay runs, or by an input entry
of the log, applied right after it is appended live and at its position on
replay. So replaying the log in order reproduces what the workflow saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from . import _log as L
from ._control import handle_control
from ._driver import WorkflowDriver
from ._errors import (
    DeadlineExceededError,
    InvalidStateError,
)
from ._mailbox import Mailbox
from ._messages import ChildDone, Control, Deliver, SlotGranted, Wake, reply_to
from ._models import STATUS_OF, ErrorInfo, RunStatus, to_datetime
from ._status import StatusKeeper
from ._steps import StepFinished
from ._store import ENGINE_CONTEXT, EventRow, RunRow, WriteBatch, shielded
from ._streams import StreamLedger

if TYPE_CHECKING:
    from ._definitions import WorkflowFunction
    from ._engine import Engine
    from ._timers import TimerEntry

log = logging.getLogger("actorflow.actor")


class _Resume:
    """Mailbox message: wakes the actor's task for work a turn outside it left (`_held`),
    or to see that the run's final status is committed."""


_RESUME = _Resume()
# A commit to wait for, and the effects to run once it is done.
_Held = tuple[asyncio.Future[None], list[Callable[[], None]]]

_EVICTABLE = (RunStatus.WAITING, RunStatus.PAUSED)
# `EventRow(...)` goes through a Python-level `__new__`; this builds the same tuple in C.
_new_tuple = tuple.__new__


class RunActor(StatusKeeper, WorkflowDriver):
    """Owns one run while it is in memory (see the module docstring)."""

    # Thousands are alive at once: no per-instance dict (memory, and one object less
    # for the cyclic collector to scan per run).
    __slots__ = (  # noqa: SIM905 - 40 names in 5 lines, not 42
        "_creation _effects _evicted _exited _held _inputs _replies _timer "
        "_unique _wrote acks children closed engine finished has_slot inbox limited "
        "loaded loop mailbox next_idx nondeterminism notified owns_hooks paused recorded "
        "replaying root row run_id sleeps status steps store streams superseded task "
        "waits workflow"
    ).split()

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        row: RunRow | None = None,
        creation: WriteBatch | None = None,
        unique: bool = False,
    ) -> None:
        """A fresh run passes its `row` and the `creation` batch that inserts it
        (`unique`: its id cannot conflict, see `Engine._spawn`); without them the
        actor rehydrates the run from the store."""
        super().__init__()
        self.engine = engine
        self.store = engine.store
        self.run_id = run_id
        self.row: RunRow = row if row is not None else RunRow(run_id, "", "queued", b"[]", 0.0)
        self._creation = creation
        self._unique = unique
        self.loaded = creation is not None
        self.superseded = False
        self.status = STATUS_OF[self.row.status]
        self.mailbox = Mailbox()
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self.notified = False
        self.next_idx = 1
        self.streams: StreamLedger | None = None  # created with the first chunk
        self.workflow: WorkflowFunction[Any, Any] | None = None
        self.paused = False
        self.has_slot = False
        self.limited = False
        self._wrote = False
        # None until used (effects and replies are rare, inputs live only within a turn):
        # fewer objects per run.
        self._effects: list[Callable[[], None]] | None = None
        self._inputs: list[EventRow] | None = None
        self._replies: list[asyncio.Future[Any]] | None = None
        self._timer: TimerEntry | None = None
        self._evicted = False
        # Left by a turn run in a step's task for the actor's task (see `step_ended`).
        self._held: _Held | None = None
        self._exited = False

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin: a fresh run with a generated id takes its first turn on the next loop
        iteration without a task; any other run starts its task to open."""
        creation = self._creation
        if creation is not None and self._unique:
            self.engine.loop.call_soon(self._first_turn, context=ENGINE_CONTEXT)
            return
        if creation is not None:
            creation.callbacks.append(partial(self._creation_committed, creation))
        self._start_task()

    def _creation_committed(self, creation: WriteBatch) -> None:
        # Run before anyone waiting on the commit resumes: with the id taken, this actor
        # holds no run yet, and readers must go to the store until it has loaded it.
        if self.run_id in creation.conflicts:
            self.loaded = False

    def post(self, message: Any) -> None:
        """Queue `message`; the actor's task takes it, started if the actor has none."""
        self.mailbox.put(message)
        if self.task is None and not self._exited:
            self._start_task()

    def stop(self) -> None:
        """Leave without a turn (the engine closes): the run continues on the next open."""
        if self.task is not None:
            self.task.cancel()
        else:
            self._exit()

    def _start_task(self) -> None:
        task = self.task = self.engine.loop.create_task(
            self._main(), name=f"actor {self.run_id}", context=ENGINE_CONTEXT
        )
        task.add_done_callback(self._task_done, context=ENGINE_CONTEXT)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # A task cancelled before it first ran (the engine closed right after a message
        # started it) never entered `_main`, so its `finally` did not make the actor leave.
        if self.task is task:
            self._exit()

    def _first_turn(self) -> None:
        # Not if a message's task opened the run first, the engine closed, or the
        # creation failed.
        if self._creation is None or self._exited or self.superseded:
            return
        try:
            self._open_fresh()
            self._after_inline_turn(self._turn())
        except Exception as exc:
            self._crashed(exc)
            self.stop()

    async def _main(self) -> None:
        idle = False
        try:
            idle = await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._crashed(exc)
        finally:
            if idle:
                self.task = None
            else:
                self._exit()

    async def _serve(self) -> bool:
        """Open the run if needed, then take messages until there are none. Returns True
        when the actor goes idle (it keeps the run, without a task), False when it leaves."""
        opening = self._creation is not None or not self.loaded
        if opening and (not await self._open() or self.superseded):
            return False
        await self.flush()
        mailbox = queued = self.mailbox
        while True:
            if not queued:
                if self.finished:
                    if self.notified:
                        return False
                    await mailbox.wait()  # the final commit's callback (`finish`) wakes it
                    continue
                if self.workflow is None:
                    return False
                if not self._evictable():
                    return True
                if not await mailbox.wait(self.engine.idle_timeout):
                    if self._evictable() and not queued:
                        self._evicted = True
                        return False
                    continue
            for message in mailbox.take_all():
                if type(message) is StepFinished:  # most messages: first, and inline
                    if not self.finished:
                        self.step_finished(message)
                elif isinstance(message, Control):
                    await handle_control(self, message)
                elif type(message) is not _Resume:  # a wake-up only: flush() does the rest
                    self._handle(message)
            await self.flush()

    def _crashed(self, exc: Exception) -> None:
        log.error(
            "actor of run %s crashed; the run is rehydrated from its log on its next "
            "message or when the engine reopens",
            self.run_id,
            exc_info=exc,
        )
        self._fail_replies(exc)

    def _fail_replies(self, error: BaseException) -> None:
        """Answer every caller still waiting on this run's writes with `error`."""
        for reply in self._replies or ():
            if not reply.done():
                reply.set_exception(error)

    def _exit(self) -> None:
        """Stop the run's work and leave the engine's directory (once)."""
        if self._exited:
            return
        self._exited = True
        self.teardown(keep_timer=self._evicted)
        self.engine._actor_exited(self)

    def abandon(self, error: BaseException) -> None:
        """Stop at once, writing nothing more: a commit with rows of this run failed.

        The store now holds less than this actor did. Step attempts not yet started
        never start, running ones are cancelled, callers waiting on this run's
        writes get `error`, and queued messages go to the next actor of the run,
        which rehydrates it from what the store holds. The caller (the engine)
        has already removed this actor from the directory.
        """
        self.teardown(keep_timer=False)
        self.superseded = True
        self._fail_replies(error)
        self._replies = self._effects = None
        self._inputs = None
        if self.task is not None:
            self.task.cancel()
            self.engine._reap(self.task)

    def _evictable(self) -> bool:
        wake_at = self.row.wake_at
        return (
            self.engine.idle_timeout is not None
            and not self.finished
            and self.status in _EVICTABLE
            and not self._effects
            and not any(op.in_flight for op in self.steps.values())
            and (wake_at is None or wake_at - time.time() > self.engine.wake_ahead)
        )

    def teardown(self, keep_timer: bool) -> None:
        """Stop the workflow, its steps and its slot; park or cancel the timer."""
        self.close_workflow()
        for op in self.steps.values():
            op.pending = False
            if op.task is not None:
                op.task.cancel()
                self.engine._reap(op.task)
                op.task = None
        # A limited run may hold a slot it has not heard of yet (granted after it queued).
        if self.has_slot or (self.limited and self.workflow is not None and not self.superseded):
            self.engine.limiter.release(self.run_id)
            self.has_slot = False
        if self._timer is not None:
            self._timer.cancel()
            if keep_timer:
                self.engine._park(self.run_id, self._timer.when)
            self._timer = None

    # -- journal and commit cycle ----------------------------------------------------------

    def append(
        self,
        kind: str,
        seq: int | None,
        name: str | None,
        data: bytes | None,
        at: float | None = None,
        to_batch: bool = True,
    ) -> EventRow:
        """Add an entry to the log (to the store's open batch unless `to_batch` is False)."""
        row = _new_tuple(
            EventRow,
            (
                self.run_id,
                self.next_idx,
                self.row.generation,
                kind,
                seq,
                name,
                data,
                time.time() if at is None else at,
            ),
        )
        self.next_idx += 1
        if to_batch:
            self.store.batch().events.append(row)
        self._wrote = True
        return row

    def effect(self, fn: Callable[[], None]) -> None:
        """Run `fn` once everything appended so far is committed."""
        if self._effects is None:
            self._effects = [fn]
        else:
            self._effects.append(fn)

    def input(self, row: EventRow) -> None:
        """Feed `row` to the workflow before this turn commits (see `flush`)."""
        if self._inputs is None:
            self._inputs = [row]
        else:
            self._inputs.append(row)

    async def flush(self) -> None:
        """End the turn: feed inputs, settle, commit, and run effects once committed."""
        held, self._held = self._held, None
        if held is None:
            held = self._turn()
        while held is not None:
            commit, effects = held
            await shielded(commit)  # cancelling this task must not cancel the shared commit
            for fn in effects:
                fn()
            held = self._turn()

    def _turn(self) -> _Held | None:
        """The part of `flush` that does not wait. Returns the commit to wait for and the
        effects to run after it, when there is something to wait for."""
        # Applying one may feed another (a stream write's ack): it goes in a new list,
        # taken after this one, as a queue would.
        while (inputs := self._inputs) is not None:
            self._inputs = None
            for row in inputs:
                self.apply(row)
        self.settle()
        if not self._wrote and not self._effects:
            return None
        self._wrote = False
        commit = self.store.commit()
        # A finished run's actor waits for its final commit: once it has left the
        # directory, a new actor for the run must find it final in the store.
        if not self._effects and not self.finished:
            return None
        effects, self._effects = self._effects or [], None
        return commit, effects

    def step_ended(self, message: StepFinished) -> None:
        """Take a step's outcome; called in the step's task, as its last act.

        An idle actor (no task, or its task waiting for messages) takes it here,
        in a turn that waits for nothing: `step_finished`, then `_turn`. Only
        what must wait (effects after a commit) needs the actor's task.
        """
        mailbox = self.mailbox
        if self._exited or not (self.task is None or mailbox.owner_waiting()):
            mailbox.put(message)
            return
        try:
            if not self.finished:
                self.step_finished(message)
            held = self._turn()
        except Exception as exc:
            self._crashed(exc)
            self.stop()
            return
        self._after_inline_turn(held)

    def _after_inline_turn(self, held: _Held | None) -> None:
        """Hand what a turn run outside the actor's task left to wait for to that task."""
        if held is not None and not held[1] and self.finished:
            held = None  # nothing to run after the final commit: its callback (`finish`)
        if held is not None:
            self._held = held
            if self.task is None:
                self._start_task()
            else:
                self.mailbox.put(_RESUME)
        elif self.task is None and self.status in _EVICTABLE and self._evictable():
            self._start_task()  # to evict the run once it has idled long enough

    def final_committed(self) -> None:
        """The run's final status is committed: leave the directory now, not before (a
        new actor for the run must find it final in the store)."""
        if self.task is None:
            self._exit()
        elif self.mailbox.owner_waiting():
            self.mailbox.put(_RESUME)

    def reply_later(self, reply: asyncio.Future[Any] | None, value: Any = None) -> None:
        """Answer `reply` once this turn's writes are committed (or with the error, if the
        actor crashes first)."""
        if reply is None:
            return
        if self._replies is None:
            self._replies = [reply]
        else:
            self._replies.append(reply)

        def answer() -> None:
            if self._replies is not None:
                self._replies.remove(reply)
            reply_to(reply, value)

        self.effect(answer)

    # -- messages --------------------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        if isinstance(message, Wake):
            if not self.finished and self.workflow is not None:
                self._wake()
        elif isinstance(message, Deliver):
            self._deliver(message)
        elif isinstance(message, ChildDone):
            if not self.finished and self.workflow is not None:
                self.child_done(message)
        elif isinstance(message, SlotGranted):
            self._slot_granted()
        else:  # pragma: no cover - programming error
            raise TypeError(f"unknown message {message!r}")

    def _wake(self) -> None:
        now = time.time()
        deadline = self.row.deadline_at
        if deadline is not None and deadline <= now:
            self.finish_failed(
                ErrorInfo.from_exception(
                    DeadlineExceededError(
                        f"run {self.run_id!r} passed its deadline ({to_datetime(deadline)})"
                    )
                )
            )
            return
        self.fire_due(now)

    def _deliver(self, message: Deliver) -> None:
        if self.finished or self.workflow is None:
            reason = (
                f"run {self.run_id!r} is {self.status.value}"
                if self.finished
                else f"workflow {self.row.workflow!r} is not registered"
            )
            reply_to(message.reply, error=InvalidStateError(reason))
            return
        row = self.append(L.EVENT_RECEIVED, None, message.key, message.data)
        self.input(row)
        self.reply_later(message.reply)

    def _slot_granted(self) -> None:
        if self.finished or self.workflow is None:
            self.engine.limiter.release(self.run_id)
            return
        self.has_slot = True
        self.launch_held()
