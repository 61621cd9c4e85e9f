"""Steps: the actor's step scheduler, and the attempts it starts.

`StepScheduler` is the run actor's part that owns step calls: it journals
each attempt (`step_started`), starts its task once that entry is committed,
and turns the attempt's outcome into the log entry the workflow is fed, a
retry, or a failure. Attempts not yet started are held while the run may not
start steps (paused, or waiting for a concurrency slot).

An attempt runs in a task on the service's loop, one of the engine's step
runners (`_runners`; a task of its own when the application installed a task
factory), and never touches the run's state itself: it encodes the result
(so an unserializable return fails the step right here, naming the bad
value) and hands its outcome to the actor (`step_ended`), which takes it in a
turn of its own. The outcome is
passed as arguments, not as an object: only an actor busy in its own task
queues it, as a `StepFinished` (a constructor call fewer per step, 0.9 % of
a 3-step workflow's instructions).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, Final

from .. import _log as L
from .._asyncio_helpers import engine_context, named_task
from .._context import _step
from .._errors import FatalError, RetryableError, SerializationError, StepTimeoutError
from .._models import ErrorInfo
from .._serde import dumps, dumps_value, encode, loads, oversize
from .._store import EventRow
from ._ops import StepOp
from ._status import StatusKeeper

# A first attempt's `step_started` data, the usual one: formatting it costs about 700
# instructions per step.
_FIRST_ATTEMPT: Final = b'{"attempt":1}'
# Read for every attempt: a compiled build reads module constants from C statics.
_Context: Final = contextvars.Context
_set_step: Final = _step.set
_run_in: Final = contextvars.Context.run


class StepScheduler(StatusKeeper):
    """The step calls of one run, from journaled start to outcome (above `StatusKeeper`)."""

    __slots__ = ()

    def restore_attempt(self, row: EventRow) -> None:
        """On replay, bring a step's attempt count (and retry time) up to its log."""
        op = self.steps.get(row.seq) if row.seq is not None else None
        if op is None:
            return
        data = loads(row.data or b"{}")
        op.attempt = data["attempt"]
        op.retry_at = data.get("retry_at")

    def launch(self, op: StepOp) -> None:
        """Start the next attempt of `op` now, or hold it until it may start."""
        if self.closed or (op.retry_at is not None and op.retry_at > time.time()):
            return
        # The common case (not paused, no limit) without a call to `may_start_steps`.
        if (self.paused or self.finished or self.limited) and not self.may_start_steps():
            op.held = True
            return
        op.held, op.retry_at = False, None
        op.attempt += 1
        op.pending = True
        attempt = op.attempt
        data = _FIRST_ATTEMPT if attempt == 1 else b'{"attempt":%d}' % attempt
        self.append(L.STEP_STARTED, op.seq, op.name, data)
        # The attempt's task starts once its `step_started` (and the result that led the
        # workflow here) is durable: nothing a step does can depend on an uncommitted input.
        self.batch().callbacks.append(_AttemptStart(self, op, attempt))

    def _start_attempt(self, start: _AttemptStart) -> None:
        if not start.is_current():
            return  # torn down meanwhile (terminated, restarted, failed, abandoned)
        if self.host.loop.get_task_factory() is None:
            self.host.step_runners.submit(start)
        else:
            # A task factory the application installed sees each attempt's coroutine in
            # a task of its own (an instrumentation may count on it).
            self._start_alone(start.op, start.attempt)

    def _start_alone(self, op: StepOp, attempt: int) -> None:
        """Start the attempt in a task of its own."""
        op.pending = False
        host = self.host
        context = _attempt_context(self, op, attempt)
        attempt_coro = _run_attempt(op, attempt, self)
        try:
            op.task = named_task(host.loop, attempt_coro, op.name, context)
        except Exception as exc:
            # A task factory that refused: the attempt fails for good (a retry would meet
            # the same factory) rather than never ending.
            attempt_coro.close()
            error = ErrorInfo.from_exception(exc)
            host.loop.call_soon(self.step_ended, op, attempt, None, error, context=engine_context())

    def launch_held(self) -> None:
        for op in list(self.steps.values()):
            if op.held:
                self.launch(op)

    def launch_due_retries(self, now: float) -> None:
        for op in list(self.steps.values()):
            if not op.in_flight and op.retry_at is not None and op.retry_at <= now:
                self.launch(op)

    def resume_operations(self) -> None:
        """After replay: start every step whose outcome the log does not hold."""
        for op in list(self.steps.values()):
            if not op.in_flight:
                self.launch(op)

    def step_finished(
        self,
        op: StepOp,
        attempt: int,
        data: bytes | None,
        error: ErrorInfo | None,
        retryable: bool,
        retry_after: float | None,
    ) -> None:
        """Journal attempt `attempt` of `op`'s outcome (see `StepFinished`)."""
        if self.steps.get(op.seq) is not op or op.attempt != attempt:
            return
        op.task = None
        if error is None:  # `input(append(...))`, inlined: every step's path
            row = self.append(L.STEP_COMPLETED, op.seq, op.name, data)
            if self._inputs is None:
                self._inputs = [row]
            else:
                self._inputs.append(row)
            return
        retry = op.step.retry
        if retryable and op.attempt <= retry.limit:
            delay = retry_after
            delay = retry.delay_before(op.attempt) if delay is None else max(0.0, delay)
            op.retry_at = time.time() + delay
            self.append(
                L.STEP_RETRYING,
                op.seq,
                op.name,
                dumps({"attempt": op.attempt, "error": error.to_json(), "retry_at": op.retry_at}),
            )
            if delay == 0:
                op.retry_at = None
                self.launch(op)
            return
        data = dumps({"attempt": op.attempt, "error": error.to_json()})
        self.input(self.append(L.STEP_FAILED, op.seq, op.name, data))


class _AttemptStart:
    """Starts an attempt once its `step_started` is committed (a callback of the batch),
    then stands for it in the engine's step runners (`Attempt`): one object per attempt
    where a bound method, a `partial` and its tuple were three."""

    __slots__ = ("attempt", "op", "scheduler")

    def __init__(self, scheduler: StepScheduler, op: StepOp, attempt: int) -> None:
        self.scheduler = scheduler
        self.op = op
        self.attempt = attempt

    def __call__(self) -> None:
        self.scheduler._start_attempt(self)

    def is_current(self) -> bool:
        """Whether the attempt is still to start (not torn down, nor superseded)."""
        return self.op.pending and self.op.attempt == self.attempt

    def start_alone(self) -> None:
        if self.is_current():  # else torn down while queued
            self.scheduler._start_alone(self.op, self.attempt)

    def begin(
        self, task: asyncio.Task[None]
    ) -> tuple[Coroutine[Any, Any, None], contextvars.Context, str] | None:
        if not self.is_current():
            return None  # torn down while queued
        op, attempt = self.op, self.attempt
        op.pending = False
        op.task = task
        scheduler = self.scheduler
        return (
            _run_attempt(op, attempt, scheduler, task),
            _attempt_context(scheduler, op, attempt),
            op.name,
        )


def _attempt_context(scheduler: StepScheduler, op: StepOp, attempt: int) -> contextvars.Context:
    """A fresh context for an attempt, in which `af.step_info()` finds it."""
    context = _Context()
    _run_in(context, _set_step, [scheduler, op, attempt, None])
    return context


async def _run_attempt(
    op: StepOp, attempt: int, scheduler: StepScheduler, runner: asyncio.Task[None] | None = None
) -> None:
    """Attempt `attempt` of `op`, in a task of its own or in `runner`, which it lets go of
    once it ends; hands its outcome to `scheduler` (after the `try`: the turn it takes
    must not run inside an exception handler)."""
    step = op.step
    data: bytes | None = None
    error: ErrorInfo | None = None
    retryable = False
    retry_after: float | None = None
    try:
        if step.timeout is None:
            value = await (step.fn(*op.args, **op.kwargs) if step.is_async else _call(op))
        else:
            try:
                async with asyncio.timeout(step.timeout):
                    value = await _call(op)
            except TimeoutError as exc:
                raise StepTimeoutError(
                    f"step {step.name!r} timed out after {step.timeout} s"
                ) from exc
        try:
            data = dumps_value(value)
        except (TypeError, ValueError):  # `encode` finds the bad part and raises
            data = encode(value, f"step {step.name!r} result", None, step.result_codec())
        limit = scheduler.host.max_payload_bytes
        if len(data) > limit:
            raise oversize(data, f"step {step.name!r} result", limit)
    except asyncio.CancelledError as exc:
        if _torn_down(op):  # terminate, teardown, close
            raise
        # The step's own cancellation (it raised CancelledError, or awaited something
        # cancelled): a failure like any other, retried by its policy.
        error, retryable = ErrorInfo.from_exception(exc), True
    except (FatalError, SerializationError) as exc:
        error = ErrorInfo.from_exception(exc)
    except RetryableError as exc:
        error, retryable, retry_after = ErrorInfo.from_exception(exc), True, exc.retry_after
    except BaseException as exc:
        # Exception, and also GeneratorExit, SystemExit and KeyboardInterrupt raised by
        # the step's code: its attempt fails, retried by the policy; nothing escapes to
        # the engine's loop (a SystemExit there would leave the process half-closed).
        error, retryable = ErrorInfo.from_exception(exc), True
    if runner is not None and op.task is runner:
        # The runner goes on to other attempts: cancelling this op must not reach them.
        op.task = None
    scheduler.step_ended(op, attempt, data, error, retryable, retry_after)


def _torn_down(op: StepOp) -> bool:
    """Whether the engine cancelled the running attempt (terminate, teardown, close): it
    lets go of the op's task as it cancels it. A cancellation from anywhere else (the
    step's own code, or code that kept a step runner from an earlier attempt) leaves it,
    and fails the attempt like any error. A function of its own: a local holding the
    task in the step's frame would tie the task, its exception and the frame into a
    cycle."""
    return op.task is not asyncio.current_task()


def _call(op: StepOp) -> Awaitable[Any]:
    """The step's awaitable (a coroutine of the step itself, or a thread's future)."""
    if op.step.is_async:
        coroutine: Awaitable[Any] = op.step.fn(*op.args, **op.kwargs)
        return coroutine
    return asyncio.to_thread(op.step.fn, *op.args, **op.kwargs)
