"""Run: the handle callers hold for a run. Cheap to create; every method asks its
`RunClient` (see `_client`), the engine that holds the run, local or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._durations import Duration, to_seconds
from ._errors import RunNotFoundError, WorkflowSandboxError
from ._models import RunEvent, RunInfo, RunStatus
from ._sandbox import running_workflow_loop

if TYPE_CHECKING:
    from ._client import RunClient
    from ._workflow_context import WorkflowContext

R = TypeVar("R")


class Run(Generic[R]):
    """A handle on one run (`engine.start`, `engine.get_run`, `af.start`).

    Every method raises `EngineClosedError` once the engine is closed,
    `RunNotFoundError` if no run has this id (except `exists`), and, inside
    workflow code, `WorkflowSandboxError` (except `result`, which is journaled there).
    A handle made from the workflow function (`engine.start(wf, ...)`,
    `af.start(wf, ...)`, `engine.get_run(id, workflow=wf)`) returns its result
    decoded into the workflow's return annotation.
    """

    __slots__ = ("_client", "_decode", "id")

    def __init__(
        self, client: RunClient, run_id: str, decode: Callable[[Any], Any] | None = None
    ) -> None:
        self._client = client
        self.id = run_id
        self._decode = decode

    def __repr__(self) -> str:
        return f"<Run {self.id!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _outside_workflow(self, method: str) -> RunClient:
        loop = running_workflow_loop()
        if loop is not None and loop.workflow is not None:
            raise WorkflowSandboxError(
                f"Run.{method}() cannot be used in workflow code; call it from a step"
            )
        return self._client

    async def status(self) -> RunStatus:
        """The run's current status: for a run in this engine's memory, its live status,
        which can be one group commit ahead of the store (a step's outcome moves the run
        on in the turn that records it; a listing, or a reader of the store, sees the
        change once that turn commits). Raises `RunNotFoundError`."""
        return await self._outside_workflow("status").status(self.id)

    async def result(self, timeout: Duration | None = None) -> R:
        """Wait for the run to finish and return its result.

        Raises `RunFailedError` (with `.error`) or `RunTerminatedError`, and
        `TimeoutError` after `timeout` (seconds, or a duration such as `"30s"`), and
        `ValidationError` if the stored result does not fit the workflow's return
        annotation (when the handle knows its workflow).
        Inside a workflow, awaiting a child's result is journaled and suspends the
        parent until the child ends; there `timeout` is a durable timer
        (`af.sleep`), raced against the child: whichever the log records first
        wins, live and on replay.
        """
        seconds = None if timeout is None else to_seconds(timeout, "result timeout")
        loop = running_workflow_loop()  # `current_workflow()`, inlined: every result's path
        ctx: WorkflowContext | None = None if loop is None else loop.workflow
        if ctx is None:
            value: R = await self._client.result(self.id, seconds)
            return value if self._decode is None else self._decoded(value)
        outcome = ctx.host.await_child(ctx.next_seq(), self.id)
        if seconds is None:
            result: R = await outcome
            return result if self._decode is None else self._decoded(result)
        timer_seq = ctx.next_seq()
        timer = ctx.host.sleep(timer_seq, seconds, None)
        if await _first_settled(outcome, timer) is timer:
            outcome.add_done_callback(_unheard)
            raise TimeoutError(f"child run {self.id!r} did not finish within {seconds} s")
        ctx.host.cancel_sleep(timer_seq)  # or it would wake the run for nothing
        result = outcome.result()
        return result if self._decode is None else self._decoded(result)

    def _decoded(self, value: Any) -> R:
        assert self._decode is not None
        decoded: R = self._decode(value)
        return decoded

    async def info(self) -> RunInfo:
        """A snapshot: status, arguments, result or error, timestamps and steps. The
        status is the live one (see `status()`); the rest is what is committed. Raises
        `RunNotFoundError`."""
        return await self._outside_workflow("info").info(self.id)

    async def exists(self) -> bool:
        """Whether a run with this id exists."""
        try:
            await self._outside_workflow("exists").status(self.id)
        except RunNotFoundError:
            return False
        return True

    def events(self, *, after: int = -1, follow: bool = True) -> AsyncGenerator[RunEvent, None]:
        """Every committed event from the start, then live ones, until the run ends.

        `after` skips the events up to that index (a reader resuming where it
        stopped); `follow=False` ends after the events committed so far. Raises
        `RunNotFoundError` for an unknown run, `ValueError` for `after` < -1.
        """
        if not isinstance(after, int) or isinstance(after, bool) or after < -1:
            raise ValueError(f"after must be an int >= -1, got {after!r}")
        return self._outside_workflow("events").events(self.id, after, follow)

    def stream(
        self, namespace: str = "default", start: int = 0, *, with_info: bool = False
    ) -> AsyncGenerator[Any, None]:
        """Recorded chunks from `start` (negative counts from the end), then live ones.

        Ends when the writer closes the namespace or the run reaches a final
        status. With `with_info=True`, yields `StreamChunk`s (index, step, attempt).
        Raises `ValueError` for a bad namespace, `TypeError` for a non-int `start`.
        """
        client = self._outside_workflow("stream")
        return client.stream(self.id, namespace, start, with_info)

    async def pause(self) -> None:
        """Stop starting steps; status is `pausing` until running steps end, then `paused`.

        A paused run does not finish: if an event or timer lets its workflow
        return meanwhile, the outcome is recorded when the run is resumed.

        Raises `InvalidStateError` if the run is final, `WorkflowNotRegisteredError`
        if this engine does not run its workflow."""
        await self._outside_workflow("pause").control(self.id, "pause")

    async def resume(self) -> None:
        """Continue a paused run; a no-op for a run that is not paused (a terminated run
        stays terminated: `restart()` starts it again)."""
        await self._outside_workflow("resume").control(self.id, "resume")

    async def terminate(self) -> None:
        """Cancel the running steps and end the run as `terminated`; its children too.

        Final for this execution: nothing resumes it, but `restart()` starts a new
        one. Raises `InvalidStateError` if the run is final already."""
        await self._outside_workflow("terminate").control(self.id, "terminate")

    async def restart(self, from_step: str | None = None) -> None:
        """Run again from the start, or from the first step named `from_step`: any run,
        finished (terminated included) or not.

        Results of steps before `from_step` are kept; the previous execution's
        events stay in the log under their generation. The new execution is handed
        every event the run received before, consumed or not, in order (a wait it
        re-runs gets the same event again), then the ones sent after. Raises
        `InvalidStateError` if the run has no step named `from_step`,
        `WorkflowNotRegisteredError` if this engine does not run its workflow.
        """
        await self._outside_workflow("restart").control(self.id, "restart", from_step)

    async def send_event(self, type: str, payload: Any = None) -> None:
        """Durably deliver an event; a workflow receives it with `af.wait_for_event(type)`.

        Raises `InvalidStateError` if the run is final, `ValueError` for an empty or
        reserved type, `SerializationError` for a payload that is not JSON."""
        await self._outside_workflow("send_event").send_event(self.id, type, payload)


def _first_settled(*futures: asyncio.Future[Any]) -> asyncio.Future[asyncio.Future[Any]]:
    """A future of whichever of `futures` settles first.

    Not `asyncio.wait`: when several are settled by the time it looks, its `done`
    set does not say which came first. Done callbacks run in settling order, which
    is the log's order. (A function of its own: the closure's cell would otherwise
    be made on every `result()` call.)
    """
    first: asyncio.Future[asyncio.Future[Any]] = asyncio.get_running_loop().create_future()

    def settled(future: asyncio.Future[Any]) -> None:
        if not first.done():
            first.set_result(future)

    for future in futures:
        future.add_done_callback(settled)
    return first


def _unheard(future: asyncio.Future[Any]) -> None:
    """Mark an outcome no one awaits any more as seen (a failure would be logged as lost)."""
    if not future.cancelled():
        future.exception()
