"""WorkflowLoop: the private, deterministic event loop a workflow coroutine runs in.

A workflow's code is not an ordinary task on the service's loop. Its run actor
drives it: after feeding it one input (a step result, a fired timer, an event)
the actor calls `run_until_quiescent()`, which runs every ready callback of the
workflow's tasks until all of them wait for something only the actor can
provide. Because nothing else can interleave, the order of the workflow's
calls (and so each call's `seq`) depends only on the order of its inputs, which
the event log records. Replaying the inputs in log order therefore reproduces
the run exactly, even with `asyncio.gather`, `TaskGroup` or `create_task`
inside the workflow.

It also guarantees that workflow code never runs concurrently with the actor
that owns the run's state, so that state needs no locks.

Only the loop methods that pure coordination needs exist. Timers and I/O raise
`WorkflowSandboxError`, which points the author at steps and `af.sleep`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
from asyncio import events
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, TypeVarTuple, Unpack

from ._errors import WorkflowSandboxError

if TYPE_CHECKING:
    from ._context import WorkflowContext

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
log = logging.getLogger("actorflow.workflow")

_ADVICE = (
    "workflow code must be deterministic: do I/O in an @af.step, wait with af.sleep() or "
    "af.wait_for_event(timeout=...)"
)


class WorkflowLoop(asyncio.AbstractEventLoop):
    """A ready queue and nothing else, run on demand by the owning actor."""

    def __init__(self, run_id: str, workflow: WorkflowContext) -> None:
        self.run_id = run_id
        # The run's `WorkflowContext`: what `af.current_workflow()` finds (see `_context`).
        self.workflow: WorkflowContext | None = workflow
        self._ready: collections.deque[ReadyCallback] = collections.deque()
        # The workflow's root task, and the list of any other only once there is one
        # (most workflows have none): one object less per run.
        self._root: asyncio.Task[Any] | None = None
        self._tasks: list[asyncio.Task[Any]] | None = None
        self._closed = False

    def run_until_quiescent(self) -> None:
        """Run ready callbacks until every workflow task waits on the actor."""
        outer = events._get_running_loop()
        events._set_running_loop(self)
        try:
            ready = self._ready
            while ready:
                callback, args, context, cancelled = ready.popleft()
                if cancelled:
                    continue
                try:
                    context.run(callback, *args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:  # as asyncio.Handle does: report, go on
                    self.call_exception_handler(
                        {"message": f"exception in callback {callback!r}", "exception": exc}
                    )
            # A workflow frame that ended in an exception keeps this frame as its `f_back`
            # (Python 3.12+), and the exception stays with the task: this frame must not
            # keep the task's step callback, or task, traceback and frames form a cycle.
            callback = args = context = None
        finally:
            events._set_running_loop(outer)

    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if context is None:
            context = contextvars.copy_context()
        entry = ReadyCallback((callback, args, context, False))
        self._ready.append(entry)
        return entry  # type: ignore[return-value]

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        tasks = self._tasks
        if self._root is None:
            self._root = task
        elif tasks is None:
            self._tasks = [task]
        else:
            if len(tasks) >= 64:
                tasks[:] = [t for t in tasks if not t.done()]
            tasks.append(task)
        return task

    def pending_tasks(self) -> list[asyncio.Task[Any]]:
        """The workflow's unfinished tasks (`asyncio.all_tasks` scans every task of the process)."""
        return [t for t in (self._root, *(self._tasks or ())) if t is not None and not t.done()]

    def release_tasks(self) -> None:
        """Let reference counting free the finished tasks (see `release_task`)."""
        if self._root is not None:
            release_task(self._root)
        for task in self._tasks or ():
            release_task(task)

    # Every future and task asks its loop this on creation: a builtin answers (False)
    # without a Python-level call.
    get_debug = staticmethod(bool)

    def is_running(self) -> bool:
        return not self._closed

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        # Futures the actor still holds (a parked sleep's) point here: without this
        # link back to the actor they form no reference cycle with it.
        self.workflow = None
        self._ready.clear()
        self._root = self._tasks = None

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._closed:
            return
        exc = context.get("exception")
        log.error("run %s: %s", self.run_id, context.get("message"), exc_info=exc)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    def time(self) -> float:
        self._refuse("loop.time()")

    def call_later(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        self._refuse("asyncio timers (asyncio.sleep, wait_for, timeout)")

    def call_at(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        self._refuse("asyncio timers (asyncio.sleep, wait_for, timeout)")

    def run_in_executor(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        self._refuse("run_in_executor / to_thread")

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        self._refuse("call_soon_threadsafe")

    def _refuse(self, what: str) -> NoReturn:
        raise WorkflowSandboxError(f"{what} cannot be used in workflow code; {_ADVICE}")


class ReadyCallback(list[Any]):
    """A scheduled callback: `[callback, args, context, cancelled]`.

    What `call_soon` returns in place of an `asyncio.Handle` (whose Python-level
    constructor and `_run` cost two calls per wake-up of a workflow task): it
    has the `cancel()` and `cancelled()` that code holding a handle uses.
    """

    __slots__ = ()

    def cancel(self) -> None:
        self[3] = True

    def cancelled(self) -> bool:
        return bool(self[3])


def explain_foreign_await(exc: BaseException) -> BaseException:
    """Turn asyncio's 'attached to a different loop' into advice on what to do instead."""
    if isinstance(exc, RuntimeError) and "attached to a different loop" in str(exc):
        error = WorkflowSandboxError(
            f"workflow code awaited something that is not journaled; {_ADVICE}"
        )
        error.__cause__ = exc
        return error
    return exc


def release_task(task: asyncio.Task[Any]) -> None:
    """Let reference counting free a finished task of a closed workflow.

    From Python 3.12 a task keeps its CancelledError, or the exception it
    raised, with a traceback whose frames lead back to the task or to the
    future that raised it (through their `f_back`): a reference cycle per
    closed run, freed only by the cyclic GC. Taking the CancelledError clears
    it; an exception loses its tracebacks (already recorded in the run's error).
    """
    if not task.done():
        return
    if task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            task.result()  # the cancellation `close_workflow` asked for
        return
    exc = task.exception()
    if exc is not None:
        _drop_tracebacks(exc)


def _drop_tracebacks(exc: BaseException) -> None:
    """Clear the tracebacks of `exc` and of every exception chained to or grouped in it."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        exc_ = pending.pop()
        if exc_ is None or id(exc_) in seen:
            continue
        seen.add(id(exc_))
        exc_.__traceback__ = None
        pending += [exc_.__cause__, exc_.__context__]
        if isinstance(exc_, BaseExceptionGroup):
            pending += exc_.exceptions
