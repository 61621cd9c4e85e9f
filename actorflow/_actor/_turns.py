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
none: its step results are taken in the task that ran the step (`step_ended`), in a
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
from functools import partial
from typing import Any, Final

from .. import _log as L
from .. import _observe
from .._asyncio_helpers import engine_context, named_task, shielded
from .._errors import DeadlineExceededError, InvalidStateError, ValidationError
from .._messages import ChildDone, Control, Deliver, SlotGranted, Wake, reply_to
from .._models import ErrorInfo, RunStatus, to_datetime
from .._store import WriteBatch
from ._control import handle_control
from ._driver import WorkflowDriver
from ._ops import StepFinished, StepOp
from ._state import Held

log = logging.getLogger("actorflow.actor")


class _Resume:
    """Mailbox message: wakes the actor's task for work a turn outside it left (`_held`),
    or to see that the run's final status is committed."""


_RESUME: Final = _Resume()

_EVICTABLE: Final = (RunStatus.WAITING, RunStatus.PAUSED)


class RunActor(WorkflowDriver):
    """Owns one run while it is in memory (see the module docstring)."""

    __slots__ = ()

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin: a fresh run with a generated id takes its first turn on the next loop
        iteration without a task; any other run starts its task to open."""
        creation = self._creation
        if creation is not None and self._unique:
            self.host.loop.call_soon(self._first_turn, context=engine_context())
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
        self.messages().put(message)
        if self.task is None and not self._exited:
            self._start_task()

    def stop(self) -> None:
        """Leave without a turn (the engine closes): the run continues on the next open."""
        if self.task is not None:
            self.task.cancel()
        else:
            self._exit()

    def _start_task(self) -> None:
        self.messages()  # what the task serves
        context = engine_context()
        task = self.task = named_task(self.host.loop, self._main(), f"actor {self.run_id}", context)
        task.add_done_callback(self._task_done, context=context)

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
            self._crashed_inline(exc)

    async def _main(self) -> None:
        idle = False
        try:
            while True:
                try:
                    idle = await self._serve()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not self._crashed(exc):
                        break
                    # Recorded as failed: serve on as a finished run, which answers
                    # result(), terminate() and the rest as any failed run does.
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
        mailbox = queued = self.messages()
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
                if not await mailbox.wait(self.host.idle_timeout):
                    if self._evictable() and not queued:
                        self._evicted = True
                        observer = _observe.current
                        if observer is not None:
                            observer.run_evicted(self.run_id)
                        return False
                    continue
            taken = mailbox.take_all()
            handled = 0
            try:
                for message in taken:
                    if type(message) is StepFinished:  # most messages: first, and inline
                        if not self.finished:
                            m = message
                            self.step_finished(
                                m.op, m.attempt, m.data, m.error, m.retryable, m.retry_after
                            )
                    elif isinstance(message, Control):
                        await handle_control(self, message)
                        self.took(message)
                    elif type(message) is not _Resume:  # a wake-up: flush() does the rest
                        self._handle(message)
                        self.took(message)
                    handled += 1
            except Exception as exc:
                # A bug on a message's path: its caller gets the error rather than waiting
                # for ever, and the messages after it are served once the crash is dealt
                # with (by this actor, as a failed run, or by the run's next actor).
                reply_to(getattr(taken[handled], "reply", None), error=exc)
                mailbox.extendleft(reversed(taken[handled + 1 :]))
                raise
            await self.flush()

    def _crashed(self, exc: Exception) -> bool:
        """A turn raised: answer the callers waiting on its writes, and fail the run with
        the error. True if the failure is recorded (the actor then serves on as the
        actor of a failed run); False if not (it leaves; the run is rehydrated)."""
        log.error("actor of run %s crashed", self.run_id, exc_info=exc)
        self.fail_replies(exc)
        return self.fail_after_crash(exc)

    def _crashed_inline(self, exc: Exception) -> None:
        """`_crashed`, for a turn taken outside the actor's task."""
        if not self._crashed(exc):
            self.stop()
        elif self.task is None:
            self._start_task()
        else:
            self.messages().put(_RESUME)

    def _exit(self) -> None:
        """Stop the run's work and leave the engine's directory (once)."""
        if self._exited:
            return
        self._exited = True
        self.teardown(keep_timer=self._evicted)
        self.host.actor_exited(self)

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
        self.fail_replies(error)
        self._replies = self._effects = None
        self._inputs = None
        if self.task is not None:
            self.task.cancel()
            self.host.reap(self.task, f"the actor of run {self.run_id!r}")

    def _evictable(self) -> bool:
        wake_at = self.row.wake_at
        return (
            self.host.idle_timeout is not None
            and not self.finished
            and self.status in _EVICTABLE
            and not self._effects
            and not any(op.in_flight for op in self.steps.values())
            and (wake_at is None or wake_at - time.time() > self.host.wake_ahead)
        )

    # -- journal and commit cycle ----------------------------------------------------------

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

    def _turn(self) -> Held | None:
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

    def step_ended(
        self,
        op: StepOp,
        attempt: int,
        data: bytes | None,
        error: ErrorInfo | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Take a step's outcome; called in the task that ran the step, as its last act.

        An idle actor (no task, or its task waiting for messages) takes it here,
        in a turn that waits for nothing: `step_finished`, then `_turn`. Only
        what must wait (effects after a commit) needs the actor's task, and only
        then is the outcome made a message (`StepFinished`).
        """
        if self._exited or not (self.task is None or self.messages().owner_waiting()):
            self.messages().put(StepFinished(op, attempt, data, error, retryable, retry_after))
            return
        try:
            if not self.finished:
                self.step_finished(op, attempt, data, error, retryable, retry_after)
            held = self._turn()
        except Exception as exc:
            self._crashed_inline(exc)
            return
        self._after_inline_turn(held)

    def _after_inline_turn(self, held: Held | None) -> None:
        """Hand what a turn run outside the actor's task left to wait for to that task."""
        if held is not None and not held[1] and self.finished:
            held = None  # nothing to run after the final commit: its callback (`finish`)
        if held is not None:
            self._held = held
            if self.task is None:
                self._start_task()
            else:
                self.messages().put(_RESUME)
        elif self.task is None and self.status in _EVICTABLE and self._evictable():
            self._start_task()  # to evict the run once it has idled long enough

    def final_committed(self) -> None:
        """The run's final status is committed: leave the directory now, not before (a
        new actor for the run must find it final in the store)."""
        if self.task is None:
            self._exit()
        elif self.messages().owner_waiting():
            self.messages().put(_RESUME)

    # -- messages --------------------------------------------------------------------------

    def took(self, message: Any) -> None:
        """A message from the inbox of a shared database: its row is deleted in the commit
        that journals it (or with the turn's writes, when it changed nothing). Once: the
        message forgets its row."""
        taken = getattr(message, "inbox", None)
        if taken is not None:
            message.inbox = None
            self.batch().inbox_taken.append(taken)
            self._wrote = True

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
        if message.reply is not None:  # one from the inbox was checked by its sender
            try:
                self.check_event(message.key, message.data)
            except ValidationError as exc:
                reply_to(message.reply, error=exc)
                return
        row = self.append(L.EVENT_RECEIVED, None, message.key, message.data)
        self.input(row)
        self.reply_later(message.reply)

    def _slot_granted(self) -> None:
        if self.finished or self.workflow is None:
            self.host.limiter.release(self.run_id)
            return
        self.has_slot = True
        self.launch_held()
