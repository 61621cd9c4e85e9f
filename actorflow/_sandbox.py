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

Only the loop methods that pure coordination needs exist. Every other method of
`asyncio.AbstractEventLoop` (timers, sockets, DNS, subprocesses, pipes, signals,
executors, running or stopping the loop) raises `WorkflowSandboxError` naming the
call and what to use instead, so `asyncio.sleep`, `asyncio.open_connection` or
`asyncio.create_subprocess_exec` in workflow code fail the run with advice. What
Python does without asyncio (`open()`, `time.sleep`, `socket`, `subprocess.run`,
`threading`) cannot be intercepted here: it runs, blocking the engine's loop.
"""

from __future__ import annotations

import asyncio
import asyncio.events  # the base class of WorkflowLoop, named: mypyc looks it up there
import contextlib
import contextvars
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Final, Generic, NoReturn, TypeVar, TypeVarTuple, Unpack, cast

from mypy_extensions import mypyc_attr

from ._errors import WorkflowSandboxError
from ._workflow_task import WorkflowTask

T = TypeVar("T")
# What the owner keeps on its loop for its workflow code to find (the run's
# `WorkflowContext`); the sandbox never looks inside it.
W = TypeVar("W")
Ts = TypeVarTuple("Ts")
log = logging.getLogger("actorflow.workflow")
# Called on every turn of a workflow: module constants of a compiled build are C
# statics, where `asyncio._get_running_loop` is a global and an attribute looked up.
_get_running_loop: Final = asyncio._get_running_loop
_set_running_loop: Final = asyncio._set_running_loop
# Called as a function with the callback's one argument spelled out: `context.run(cb,
# *args)` is a method looked up by name and a tuple built per callback.
_context_run: Final = contextvars.Context.run
# One entry per workflow turn running now, in any thread (a list's appends and pops are
# atomic, so its length is exact when threads run turns at once). While it is empty no
# thread's running loop is a `WorkflowLoop`, and `running_workflow_loop` need not ask
# which loop runs: on Python 3.11 asking is a getpid() system call (~150 ns), and the
# public API asks on every call.
_TURNS: Final[list[None]] = []

_ADVICE = (
    "workflow code must be deterministic: do I/O in an @af.step, wait with af.sleep() or "
    "af.wait_for_event(timeout=...)"
)


@mypyc_attr(native_class=False)
class WorkflowLoop(asyncio.AbstractEventLoop, Generic[W]):
    """A ready queue and nothing else, run on demand by the owning actor."""

    def __init__(self, run_id: str, workflow: W) -> None:
        self.run_id = run_id
        # The run's `WorkflowContext`: what `af.current_workflow()` finds (see `_context`).
        self.workflow: W | None = workflow
        # A list read front to back, not a deque: a deque keeps a block of 64 slots (about
        # 700 bytes) even when empty, the largest object of a run in flight.
        self._ready: list[list[Any]] = []  # of `ReadyCallback`s
        # The workflow's root task (`start`), and the list of any other only once there
        # is one (most workflows have none): one object less per run.
        self._root: WorkflowTask | None = None
        self._tasks: list[asyncio.Task[Any]] | None = None
        self._closed = False

    def run_until_quiescent(self) -> None:
        """Run ready callbacks until every workflow task waits on the actor."""
        run_until_quiescent(self, _get_running_loop())

    def start(
        self, coro: Coroutine[Any, Any, Any], name: str, context: contextvars.Context
    ) -> WorkflowTask:
        """Make the workflow's root task, which runs `coro` in `context` from the next
        `run_until_quiescent()` on."""
        assert self._root is None and self._tasks is None, "the workflow has started"
        root = self._root = WorkflowTask(self, self._ready, coro, name, context)
        return root

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
        eager_start: bool | None = None,
    ) -> asyncio.Task[T]:
        # `eager_start` (typeshed's signature from 3.13) is ignored: a workflow's tasks
        # run only when the actor runs the sandbox. `coro` is typed as each version's
        # stubs type it (mypyc checks against the interpreter that builds it).
        task = asyncio.Task(cast(Any, coro), loop=self, name=name, context=context)
        tasks = self._tasks
        if tasks is None:
            self._tasks = [task]
        else:
            if len(tasks) >= 64:
                tasks[:] = [t for t in tasks if not t.done()]
            tasks.append(task)
        return task

    def pending_tasks(self) -> list[asyncio.Task[Any] | WorkflowTask]:
        """The workflow's unfinished tasks (`asyncio.all_tasks` scans every task of the process)."""
        root, tasks = self._root, self._tasks
        if tasks is None:  # the root task alone, as in most workflows
            return [] if root is None or root.done() else [root]
        pending: list[asyncio.Task[Any] | WorkflowTask] = [t for t in tasks if not t.done()]
        if root is not None and not root.done():
            pending.insert(0, root)
        return pending

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

    def get_exception_handler(self) -> None:
        return None

    def get_task_factory(self) -> None:
        return None


def run_until_quiescent(loop: WorkflowLoop[Any], outer: asyncio.AbstractEventLoop | None) -> None:
    """Run `loop`'s ready callbacks until every workflow task waits on the actor, then
    make `outer` (the caller's running loop) the running loop again.

    A function as well as the method: the actor calls it on every turn, and compiled
    code calls a compiled function directly, where a method of `WorkflowLoop` (not a
    native class) is a Python-level call. The actor passes its engine's loop, which it
    runs on: on Python 3.11, asking for the running loop is a `getpid()` system call."""
    _TURNS.append(None)
    _set_running_loop(loop)
    ready = loop._ready
    taken = 0
    try:
        # Callbacks scheduled by these join the end of the same list, in order.
        while taken < len(ready):
            # Unpacked as a list (which it is): a compiled build reads its items
            # directly, where a `ReadyCallback` would be iterated.
            callback, args, context, cancelled = ready[taken]
            taken += 1
            if cancelled:
                continue
            try:
                if len(args) == 1:  # a task's step or wakeup: nearly every callback
                    _context_run(context, callback, args[0])
                else:
                    _context_run(context, callback, *args)
            except (SystemExit, KeyboardInterrupt):
                # Raised by workflow code: its task has recorded it (asyncio re-raises it
                # only to stop the loop it runs on); the run fails with it. It must not
                # reach the engine's loop, which it would stop half-closed.
                pass
            except BaseException as exc:  # as asyncio.Handle does: report, go on
                loop.call_exception_handler(
                    {"message": f"exception in callback {callback!r}", "exception": exc}
                )
        # A workflow frame that ended in an exception keeps this frame as its `f_back`
        # (Python 3.12+), and the exception stays with the task: this frame must not
        # keep the task's step callback, or task, traceback and frames form a cycle.
        callback = args = context = None
    finally:
        del ready[:taken]
        _set_running_loop(outer)
        _TURNS.pop()


def running_workflow_loop() -> WorkflowLoop[Any] | None:
    """The running loop if it is a workflow's (workflow code is running), else None."""
    if not _TURNS:
        return None
    loop = _get_running_loop()
    return loop if type(loop) is WorkflowLoop else None


_IO = "do I/O in an @af.step"
_TIMERS = "wait with af.sleep(), or af.wait_for_event(timeout=...)"
# Every method of asyncio.AbstractEventLoop that WorkflowLoop does not define:
# (what it is for, what to do instead).
_REFUSED = {
    "time": ("the clock", "a step can read it, or af.workflow_info().started_at"),
    "call_later": ("asyncio timers: asyncio.sleep, wait_for, timeout", _TIMERS),
    "call_at": ("asyncio timers: asyncio.sleep, wait_for, timeout", _TIMERS),
    "run_in_executor": ("threads: asyncio.to_thread, run_in_executor", _IO),
    "call_soon_threadsafe": ("callbacks from other threads", _IO),
    "add_reader": ("file descriptor watching", _IO),
    "add_writer": ("file descriptor watching", _IO),
    "remove_reader": ("file descriptor watching", _IO),
    "remove_writer": ("file descriptor watching", _IO),
    "connect_accepted_socket": ("sockets", _IO),
    "connect_read_pipe": ("pipes", _IO),
    "connect_write_pipe": ("pipes", _IO),
    "create_connection": ("network connections (asyncio.open_connection)", _IO),
    "create_datagram_endpoint": ("network connections", _IO),
    "create_server": ("servers (asyncio.start_server)", "serve outside workflows"),
    "create_unix_connection": ("network connections (asyncio.open_unix_connection)", _IO),
    "create_unix_server": ("servers (asyncio.start_unix_server)", "serve outside workflows"),
    "getaddrinfo": ("DNS lookups", _IO),
    "getnameinfo": ("DNS lookups", _IO),
    "sendfile": ("sockets", _IO),
    "sock_accept": ("sockets", _IO),
    "sock_connect": ("sockets", _IO),
    "sock_recv": ("sockets", _IO),
    "sock_recv_into": ("sockets", _IO),
    "sock_recvfrom": ("sockets", _IO),
    "sock_recvfrom_into": ("sockets", _IO),
    "sock_sendall": ("sockets", _IO),
    "sock_sendfile": ("sockets", _IO),
    "sock_sendto": ("sockets", _IO),
    "start_tls": ("TLS", _IO),
    "subprocess_exec": ("subprocesses (asyncio.create_subprocess_exec)", _IO),
    "subprocess_shell": ("subprocesses (asyncio.create_subprocess_shell)", _IO),
    "add_signal_handler": ("signal handlers", "install them on the service's own loop"),
    "remove_signal_handler": ("signal handlers", "install them on the service's own loop"),
    "set_default_executor": ("executors", _IO),
    "shutdown_default_executor": ("executors", _IO),
    "set_exception_handler": ("loop settings", "configure the service's own loop"),
    "set_task_factory": ("loop settings", "configure the service's own loop"),
    "set_debug": ("loop settings", "configure the service's own loop"),
    "run_forever": ("running the loop", "the run's actor drives the workflow's loop"),
    "run_until_complete": ("running the loop", "the run's actor drives the workflow's loop"),
    "stop": ("stopping the loop", "the run's actor drives the workflow's loop"),
    "shutdown_asyncgens": ("loop shutdown", "the run's actor drives the workflow's loop"),
}


def _refuser(name: str, what: str, advice: str) -> Callable[..., NoReturn]:
    def refuse(self: WorkflowLoop[Any], *args: Any, **kwargs: Any) -> NoReturn:
        raise WorkflowSandboxError(
            f"loop.{name}() ({what}) cannot be used in workflow code: {advice}; {_ADVICE}"
        )

    refuse.__name__ = name
    return refuse


for _name, (_what, _advice) in _REFUSED.items():
    setattr(WorkflowLoop, _name, _refuser(_name, _what, _advice))


@mypyc_attr(native_class=False)
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


def release_task(task: asyncio.Task[Any] | WorkflowTask) -> None:
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
