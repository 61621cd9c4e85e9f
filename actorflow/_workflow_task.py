"""WorkflowTask: the task that runs a workflow's own coroutine on its sandbox loop.

It steps the coroutine as `asyncio.Task` does: in the run's context, as
`asyncio.current_task()` while it runs (so `TaskGroup` and `asyncio.timeout`
work in workflow code), waking when the future it awaits is done, cancellable
with `cancel()`. Every run has one; the tasks workflow code creates itself
(`create_task`, `gather` of coroutines, `TaskGroup`) stay `asyncio.Task`s.

Why not an `asyncio.Task`: this is the last task every run paid for. Measured
on its own (a workflow of 3 awaits on the sandbox loop): 7.4 µs with an
`asyncio.Task` against 1.6 µs driving the coroutine by hand. The task's
construction and its registration in asyncio's `WeakSet` of all tasks are two
Python-level calls; each await adds a done-callback (a method object), and its
result schedules the wake-up through the loop's `call_soon` (a Python-level call
with a keyword argument).

What it adds: the future of a step that the workflow awaits at once (`await
my_step(x)`, the most frequent await there is) gets no done-callback. The run's
actor, which alone settles step futures, tells the task first (`settling`) and
the task queues its own wake-up, where the callback would have been queued: the
order in which the workflow's tasks run, which the journal's order depends on, is
the same as with an `asyncio.Task`. (Workflow code that cancels such a future
itself is the exception: nobody tells the task, which wakes at the end of that
turn, `wake_if_settled`.)

It steps its coroutine through a generator (`_driven`) that hands back the value the
coroutine returns without the `StopIteration` that `send()` would raise with it.

Not there: `get_stack()` and `print_stack()`, and `asyncio.all_tasks()` does not
list it (its `WeakSet` is what is saved).
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Final

# The C functions `asyncio.Task` uses to be `current_task()` while it runs; they take
# any object as the task.
_enter_task: Final[Callable[[asyncio.AbstractEventLoop, Any], None]] = asyncio.tasks._enter_task
_leave_task: Final[Callable[[asyncio.AbstractEventLoop, Any], None]] = asyncio.tasks._leave_task
_Future: Final = asyncio.Future
_future_exception: Final = asyncio.Future.exception
_future_done: Final = asyncio.Future.done
_CancelledError: Final = asyncio.CancelledError
_next: Final = next

_PENDING: Final = 0
_CANCELLED: Final = 1
_FINISHED: Final = 2


class WorkflowTask:
    """The root task of a run's workflow (see the module's docstring).

    `ready` is the sandbox loop's ready queue, where its wake-ups go as
    `[callback, args, context, cancelled]` entries (see `WorkflowLoop`).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ready: list[list[Any]],
        coro: Coroutine[Any, Any, Any],
        name: str,
        context: contextvars.Context,
    ) -> None:
        self._loop = loop
        self._ready = ready
        self._coro = coro
        self._driver = _driven(coro)
        self._name = name
        self._context = context
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._cancelled_exc: BaseException | None = None
        self._cancel_message: Any = None
        self._must_cancel = False
        self._num_cancels_requested = 0
        # The future the coroutine waits on; `_direct` when it has no callback of ours
        # (a step's future: the actor calls `settling` before it settles it).
        self._waiter: Any = None
        self._direct = False
        # The ready-queue entry of a direct wake-up, made once (see `settling`).
        self._wake_entry: list[Any] | None = None
        # The future of the step the workflow called last (`Operations.call_step`): the
        # one an `await my_step(x)` yields next.
        self.expected: Any = None
        self._callbacks: list[tuple[Callable[[Any], object], contextvars.Context]] | None = None
        self._step_soon(None)

    # -- stepping --------------------------------------------------------------------------

    def settling(self, future: asyncio.Future[Any]) -> None:
        """`future` is about to be settled by the run's actor: if this task awaits it
        without a callback, queue the wake-up the callback would have queued."""
        if self._direct and self._waiter is future:
            self._queue_direct_wakeup()

    def wake_if_settled(self) -> bool:
        """Queue the wake-up of a callback-less wait whose future was settled by someone
        other than the actor (workflow code that cancels a step's future); True if so."""
        if self._direct and _future_done(self._waiter):  # a direct wait's is a step future
            self._queue_direct_wakeup()
            return True
        return False

    def _queue_direct_wakeup(self) -> None:
        self._direct = False
        entry = self._wake_entry
        if entry is None:
            # Kept for the next wait: it refers to this task, a cycle `_finish` undoes.
            entry = self._wake_entry = [self._wake_direct, (), self._context, False]
        self._ready.append(entry)

    def _wake_direct(self) -> None:
        self._wakeup(self._waiter)

    def _wakeup(self, future: Any) -> None:
        # The future's exception taken, not raised: raised here, its traceback would hold
        # this frame (in the pure-Python build), and the frame the future that holds it.
        try:
            error = _future_exception(future) if type(future) is _Future else future.exception()
        except BaseException as cancelled:  # the future was cancelled
            self._step(cancelled)
            return
        self._step(error)

    def _step(self, exc: BaseException | None) -> None:
        if self._state != _PENDING:
            raise asyncio.InvalidStateError(f"_step(): already done: {self!r}, {exc!r}")
        if self._must_cancel:
            if not isinstance(exc, _CancelledError):
                exc = self._make_cancelled_error()
            self._must_cancel = False
        self._waiter = None
        loop = self._loop
        _enter_task(loop, self)
        try:
            # An exception goes into the coroutine itself: the driver would pass it on
            # with throw()'s deprecated three arguments (compiled, mypyc's `yield from`
            # does). The driver, if started, waits on the coroutine still and goes on.
            result = _next(self._driver) if exc is None else self._coro.throw(exc)
        except StopIteration as stop:  # it returned when `exc` was thrown in
            self._returned(stop.value)
        except _CancelledError as cancelled:
            self._cancelled_exc = cancelled
            self._cancel_self(None)
        except (KeyboardInterrupt, SystemExit) as fatal:
            self._exception = _without_this_frame(fatal)
            self._finish(_FINISHED)
            raise
        except BaseException as error:
            self._exception = _without_this_frame(error)
            self._finish(_FINISHED)
        else:
            if type(result) is _Returned:
                self._returned(result.value)
            else:
                self._wait_on(result)
        finally:
            _leave_task(loop, self)
            # A traceback through this frame (the pure-Python build's) must not keep the
            # exception it holds: exception, traceback and frame would form a cycle.
            exc = None

    def _returned(self, value: Any) -> None:
        if self._must_cancel:  # cancelled while it returned: cancelled it is
            self._must_cancel = False
            self._cancel_self(self._cancel_message)
        else:
            self._result = value
            self._finish(_FINISHED)

    def _wait_on(self, result: Any) -> None:
        """What the coroutine yielded: a future to wait on, or None (a bare `yield`, as in
        `asyncio.sleep(0)`: step again at the back of the queue)."""
        expected, self.expected = self.expected, None
        if result is None:
            self._step_soon(None)
            return
        if result is expected and result._asyncio_future_blocking:
            # The future of the step the workflow just called, from the actor on this
            # loop: no checks. Without a callback unless someone else waits already (ours
            # must then queue after theirs).
            direct = result._callbacks is None
        else:
            error = self._bad_yield(result)
            if error is not None:
                self._step_soon(error)
                return
            direct = False
        result._asyncio_future_blocking = False
        self._waiter = result
        if direct:
            self._direct = True
        else:
            result.add_done_callback(self._wakeup, context=self._context)
        if self._must_cancel and self._cancel_waiter(self._cancel_message):
            self._must_cancel = False

    def _bad_yield(self, result: Any) -> RuntimeError | None:
        """What is wrong with awaiting `result`, as `asyncio.Task` words it; None if nothing."""
        blocking = getattr(result, "_asyncio_future_blocking", None)
        if blocking is None:
            return RuntimeError(f"Task got bad yield: {result!r}")
        if result.get_loop() is not self._loop:
            return RuntimeError(f"Task {self!r} got Future {result!r} attached to a different loop")
        if not blocking:
            return RuntimeError(
                f"yield was used instead of yield from in task {self!r} with {result!r}"
            )
        if result is self:
            return RuntimeError(f"Task cannot await on itself: {self!r}")
        return None

    def _step_soon(self, exc: BaseException | None) -> None:
        """Step again (with `exc` thrown in) at the back of the ready queue."""
        self._ready.append([self._step, (exc,), self._context, False])

    # -- cancellation ----------------------------------------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        """Request that the workflow's coroutine be cancelled (as `asyncio.Task.cancel`)."""
        if self._state != _PENDING:
            return False
        self._num_cancels_requested += 1
        if self._waiter is not None and self._cancel_waiter(msg):
            return True
        self._must_cancel = True
        self._cancel_message = msg
        return True

    def _cancel_waiter(self, msg: Any) -> bool:
        waiter = self._waiter
        if self._direct:  # our wake-up first, where our callback would be, then theirs
            self._queue_direct_wakeup()
        return bool(waiter.cancel(msg))

    def cancelling(self) -> int:
        """How many cancellations are pending (`uncancel()` takes one back)."""
        return self._num_cancels_requested

    def uncancel(self) -> int:
        """Take back one cancellation request; the number left."""
        if self._num_cancels_requested > 0:
            self._num_cancels_requested -= 1
            if self._num_cancels_requested == 0:
                self._must_cancel = False
        return self._num_cancels_requested

    def _make_cancelled_error(self) -> BaseException:
        exc = self._cancelled_exc
        if exc is not None:
            self._cancelled_exc = None
            return exc
        if self._cancel_message is None:
            return _CancelledError()
        return _CancelledError(self._cancel_message)

    def _cancel_self(self, msg: Any) -> None:
        if msg is not None:
            self._cancel_message = msg
        self._finish(_CANCELLED)

    # -- the future's side ------------------------------------------------------------------

    def _finish(self, state: int) -> None:
        self._state = state
        self._wake_entry = None
        callbacks, self._callbacks = self._callbacks, None
        for callback, context in callbacks or ():
            self._ready.append([callback, (self,), context, False])

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> Any:
        """The coroutine's return value; raises its exception, `CancelledError`, or
        `InvalidStateError` while it runs."""
        if self._state == _CANCELLED:
            raise self._make_cancelled_error()
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("Result is not set.")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        """The coroutine's exception, or None; raises `CancelledError` or
        `InvalidStateError` as `result()` does."""
        if self._state == _CANCELLED:
            raise self._make_cancelled_error()
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("Exception is not set.")
        return self._exception

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        """Call `fn(task)` on the sandbox loop once the task is done."""
        if context is None:
            context = contextvars.copy_context()
        if self._state != _PENDING:
            self._ready.append([fn, (self,), context, False])
        elif self._callbacks is None:
            self._callbacks = [(fn, context)]
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        """Forget every registration of `fn`; how many there were."""
        callbacks = self._callbacks or []
        kept = [(f, c) for f, c in callbacks if f != fn]
        self._callbacks = kept or None
        return len(callbacks) - len(kept)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def get_coro(self) -> Coroutine[Any, Any, Any]:
        return self._coro

    def get_context(self) -> contextvars.Context:
        return self._context

    def get_name(self) -> str:
        return self._name

    def set_name(self, value: object) -> None:
        self._name = str(value)

    def __del__(self) -> None:
        # What `asyncio.Task` reports: a run's actor that drops its workflow without
        # stopping it (the test suite fails on it).
        if self._state == _PENDING:
            self._loop.call_exception_handler(
                {"message": "Task was destroyed but it is pending!", "task": self}
            )

    def __repr__(self) -> str:
        state = ("pending", "cancelled", "finished")[self._state]
        return f"<WorkflowTask {state} name={self._name!r}>"


class _Returned:
    """What `_driven` yields last: the value its coroutine returned."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _driven(coro: Coroutine[Any, Any, Any]) -> Generator[Any, None, None]:
    """Yields what `coro` yields, then what it returned, as a `_Returned` (and is never
    resumed after that).

    A coroutine that returns raises `StopIteration` into what sent to it; caught in
    compiled code, that cost 6,100 instructions per run (the exception made, a
    traceback and a frame object for it, the exception state saved and restored).
    Sent to by `yield from` (in a compiled build, `PyIter_Send`), it hands its value
    back without an exception object. Exceptions are thrown into the coroutine
    itself (`WorkflowTask._step`), never into this."""
    value = yield from coro.__await__()
    yield _Returned(value)


def _without_this_frame(error: BaseException) -> BaseException:
    """`error` as the workflow raised it: its traceback starts at `WorkflowTask._step`,
    where it was caught, then passes through `_driven` (unless it was raised where an
    exception was thrown in); the run's recorded traceback shows the workflow's frames
    only, as with an `asyncio.Task`."""
    tb = error.__traceback__
    while tb is not None and _is_ours(tb.tb_frame.f_code):
        tb = tb.tb_next
    error.__traceback__ = tb
    return error


def _is_ours(code: types.CodeType) -> bool:
    return code.co_name in ("_step", "_driven") and code.co_filename.endswith(_THIS_FILE)


# The name compiled frames give their file (a path as the build saw it) ends the same.
_THIS_FILE: Final = "_workflow_task.py"
