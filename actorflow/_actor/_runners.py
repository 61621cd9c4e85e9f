"""StepRunners: the engine's pool of tasks that run step attempts.

A step's code needs a task (`asyncio.current_task()`, `asyncio.timeout`,
`TaskGroup`), but a task per attempt is the largest part of what a step costs
the loop (its construction, asyncio's registry of tasks, a handle for its
first step, its deallocation: about 1.5 µs per attempt measured here, a tenth
of a trivial 3-step workflow). Most attempts end without waiting for
anything, so one runner task takes the attempts that are due in turn, each
driven in its own `contextvars.Context` as a task of its own would drive it,
and renamed after the step while it runs it.

An attempt that waits keeps its runner until it ends, as its own task would
be kept, and the attempts queued behind it start in tasks of their own (the
attempts of one commit tend to be alike: handing them to a new runner, which
starts on the next turn of the loop, cost a turn per attempt when they all
wait, measured twice as slow as a task each). The next attempts to come go to
an idle runner, or a new one. A runner that has nothing to do waits until it
is needed, `_MAX_IDLE` of them at most; the others end. Cancelling the runner of a
waiting attempt (what tearing the step down does) cancels that attempt, and
the runner then ends with it, so the engine's close waits for it as it did
for the attempt's own task (`RunHost.reap`).

The attempts are the step scheduler's (`Attempt`: it knows the run, the step
and what a stale attempt is); this module knows only tasks and coroutines.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any, Final, Protocol, cast

from .._asyncio_helpers import engine_context

# Enough for a few attempts that wait ending at once without each leaving a task
# behind; a burst of attempts that do not wait needs one.
_MAX_IDLE: Final = 4
_current_task: Final = asyncio.current_task
_Task: Final = asyncio.Task
# A runner's name between attempts (it takes each step's while it runs it).
_IDLE_NAME: Final = "step runner"
# What a `_Yield` holds once it has yielded its value.
_YIELDED: Final = object()
# What `next` returns for a coroutine that has returned.
_RETURNED: Final = object()
_next: Final = next
# Called as functions: by name, each call on a deque or a context is a type lookup.
_append: Final = deque.append
_popleft: Final = deque.popleft
_run_in: Final = contextvars.Context.run


class Attempt(Protocol):
    """A step attempt as its runner sees it."""

    def begin(
        self, task: asyncio.Task[None]
    ) -> tuple[Coroutine[Any, Any, None], contextvars.Context, str] | None:
        """The attempt's coroutine, context and name, now run by `task` (which the
        coroutine lets go of, as the attempt's, when it ends); None if it is stale."""

    def start_alone(self) -> None:
        """Start the attempt in a task of its own (unless it is stale)."""


class StepRunners:
    """The runner tasks of one engine's loop, and the attempts queued for them."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop  # the engine's, set when it opens
        self._queue: deque[Attempt] = deque()
        # The runners waiting for work, each with the future it waits on.
        self._idle: list[tuple[asyncio.Future[None], asyncio.Task[None]]] = []
        # A runner is woken, or running, to take the queue: nothing to wake.
        self._draining = False
        self._closed = False

    def submit(self, attempt: Attempt) -> None:
        """Run `attempt` in a runner task."""
        if self._closed:
            return  # the engine is closing: its run resumes the step on the next open
        _append(self._queue, attempt)
        if not self._draining:
            self._wake_a_runner()

    def close(self) -> list[asyncio.Task[None]]:
        """Take no more attempts; stop the idle runners and return them (to be awaited).

        A runner busy with an attempt is cancelled, and reaped, with its step when the
        run's actor stops (`RunHost.reap`); a woken one finds the queue empty and ends."""
        self._closed = True
        self._queue.clear()
        idle, self._idle = self._idle, []
        for waiter, _ in idle:
            waiter.cancel()
        return [task for _, task in idle]

    def _wake_a_runner(self) -> None:
        idle = self._idle
        while idle:
            waiter, _ = idle.pop()
            if not waiter.done():  # done: its runner was cancelled
                waiter.set_result(None)
                self._draining = True
                return
        # Not through the loop's task factory: runners are the engine's own tasks (an
        # application's factory sees each attempt in a task of its own, `_steps`).
        _Task(self._run(), loop=self.loop, name=_IDLE_NAME, context=engine_context())
        self._draining = True

    async def _run(self) -> None:
        task = _current_task()
        assert task is not None
        # Bound once: a method looked up on a task costs more than the call.
        set_name, cancelling = task.set_name, task.cancelling
        loop = self.loop
        queue = self._queue
        while True:
            while queue:
                started = _popleft(queue).begin(task)
                if started is None:
                    continue
                coro, context, name = started
                set_name(name)
                steps = coro.__await__()
                try:
                    # `next` with a default: a coroutine's return costs no StopIteration.
                    yielded = _run_in(context, _next, steps, _RETURNED)
                except BaseException as exc:
                    yielded = _RETURNED
                    self._report(exc, coro)
                if yielded is _RETURNED and not cancelling():
                    continue
                # The attempt waits, or cancelled its own task (which would reach the
                # next attempt that waits).
                self._start_queued_alone()
                if yielded is _RETURNED:
                    return
                try:
                    await _drive_on(steps, context, yielded)
                except BaseException as exc:
                    if not cancelling():
                        self._report(exc, coro)
                if cancelling():
                    return  # torn down: `reap` waits for this task's end
                break
            else:
                self._draining = False
            if self._closed or len(self._idle) >= _MAX_IDLE:
                return
            set_name(_IDLE_NAME)
            waiter = loop.create_future()
            self._idle.append((waiter, task))
            try:
                await waiter
            except asyncio.CancelledError:
                if not waiter.cancelled():
                    # Woken to take the queue, then cancelled (by code that kept this
                    # task from an attempt it ran).
                    self._start_queued_alone()
                return  # the engine closes, or the cancellation ends this runner

    def _start_queued_alone(self) -> None:
        """This runner takes no more of the queue: its attempts start in tasks of their
        own. Not in another runner: those of a batch tend to be alike, and a runner for
        them would start on the next turn of the loop, where it would likely wait too,
        handing on again: one turn of the loop per attempt."""
        self._draining = False
        queue = self._queue
        while queue:
            queue.popleft().start_alone()

    def _report(self, exc: BaseException, coro: Coroutine[Any, Any, None]) -> None:
        # What a task of its own would have logged ("exception was never retrieved").
        self.loop.call_exception_handler(
            {"message": f"step attempt {coro!r} raised", "exception": exc}
        )


async def _drive_on(
    steps: Generator[Any, None, None], context: contextvars.Context, yielded: Any
) -> None:
    """Drive an attempt that has waited as its own task would: what its coroutine yields
    goes to the runner's task, what the task throws in (a cancellation, any exception,
    GeneratorExit too) goes back into the coroutine, each step in the attempt's context."""
    while True:
        try:
            await _Yield(yielded)
        except BaseException as exc:
            try:
                yielded = context.run(steps.throw, exc)
            except StopIteration:
                return
        else:
            yielded = context.run(_next, steps, _RETURNED)
            if yielded is _RETURNED:
                return


class _Yield:
    """Awaited, yields `value` to the task once; what the task throws in is raised at
    the `await` (a sub-iterator of its own, so `await` treats GeneratorExit like any
    exception: a sub-generator would be closed and the exception raised after it)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, None]:
        return cast("Generator[Any, Any, None]", self)

    def __iter__(self) -> _Yield:
        return self

    def __next__(self) -> Any:
        value = self.value
        if value is _YIELDED:
            raise StopIteration
        self.value = _YIELDED
        return value

    def send(self, value: Any) -> Any:
        return self.__next__()

    def throw(self, kind: Any, value: Any = None, traceback: Any = None) -> Any:
        # Called as `throw(type, value, traceback)` (the delegation of `await`), or with
        # the exception alone.
        error: Any
        if isinstance(value, BaseException):
            error = value
        elif isinstance(kind, BaseException):
            error = kind
        else:
            error = kind() if value is None else kind(value)
        try:
            raise error
        finally:
            # The pure-Python build's frame stays in the exception's traceback: holding
            # the exception, it would make a cycle of them (freed only by the GC).
            error = kind = value = None
