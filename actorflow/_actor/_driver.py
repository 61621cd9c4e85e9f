"""WorkflowDriver: runs a workflow coroutine from its start (or the replay of its log) to
the run's final status: the layer of `RunActor` above `Operations`.

`_open()` finds what to run: a fresh run once its creation is committed, or
one rehydrated from the store. `replay()` starts the workflow in a fresh
sandbox and feeds it the inputs of its log in order, so it reaches the state
it had; calls the log already holds are restored, not acted on again (see
`Operations`). After every turn of the workflow, `after_workflow_ran()`
checks how it stands and, once it has returned or raised, `finish()`
records the outcome.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any, Final

from .. import _log as L
from .. import _observe
from .._asyncio_helpers import shielded
from .._errors import RunNotFoundError, SerializationError, StepFailedError, WorkflowSandboxError
from .._messages import reply_to
from .._models import STATUS_OF, ErrorInfo, RunStatus
from .._sandbox import WorkflowLoop, explain_foreign_await, run_until_quiescent
from .._schedule_types import schedule_of
from .._serde import dumps, encode, loads
from .._store import EventRow, RunRow
from .._streams import StreamLedger
from .._workflow_context import WorkflowContext
from ._operations import Operations

# Read on every run's end: module constants of a compiled build are C statics, where
# `time.time` and `RunStatus.COMPLETED` are attributes looked up by name.
_now: Final = time.time
_COMPLETED: Final = RunStatus.COMPLETED
_TERMINATED: Final = RunStatus.TERMINATED

log = logging.getLogger("actorflow.actor")


class WorkflowDriver(Operations):
    """Starting, replaying and finishing the run's workflow."""

    __slots__ = ()

    def _open_fresh(self) -> None:
        """Start a run created with a generated (so unique) id, at once: its step attempts
        start from commit callbacks, so after the creation; if that fails, the engine
        abandons this actor (`abandon`)."""
        self._creation = None  # not kept alive: it holds the rows of every run it created
        if self._resolve_workflow():
            self.replay([])

    async def _open(self) -> bool:
        """Start a run created with a chosen id once its creation is committed (the id may
        have been taken), or rehydrate one from the store. False if there is no run to serve."""
        log_rows: list[EventRow] = []
        fresh = False
        if self._creation is not None:
            creation, self._creation = self._creation, None
            await shielded(creation.future)
            fresh = self.loaded = self.run_id not in creation.conflicts
        if not fresh:
            loaded = await self.host.loader.load(self.run_id)
            if self.superseded:
                self.finished = True
                return False
            if loaded is None:
                for message in self.messages().take_all():
                    reply_to(
                        getattr(message, "reply", None),
                        error=RunNotFoundError(f"no run with id {self.run_id!r}"),
                    )
                self.finished = True
                return False
            row, events, streams = loaded
            self.row, self.status, self.loaded = row, STATUS_OF[row.status], True
            self.next_idx = events[-1].idx + 1 if events else 0
            if self.status.is_final:
                self.finished = self.notified = True
                # `result()` callers may have registered while this actor held a fresh
                # creation (loaded, not final) that turned out to be a taken id.
                self.host.outcome_loaded(row)
                return True
            self.streams = StreamLedger(streams)
            self.schedule = schedule_of(events)
            log_rows = [e for e in events if e.generation == row.generation]
            observer = _observe.current
            if observer is not None:
                observer.run_loaded(row, events, False)
            self.host.unpark(self.run_id)
        if self._resolve_workflow():
            await self.begin(log_rows)
        return True

    def _resolve_workflow(self) -> bool:
        self.workflow = self.host.workflow(self.row.workflow)
        if self.workflow is None:
            log.error(
                "run %s: workflow %r is not registered in this engine; leaving it as it is",
                self.run_id,
                self.row.workflow,
            )
            return False
        self.limited = self.host.limiter.is_limited(self.row.workflow)
        return True

    async def begin(self, log_rows: list[EventRow]) -> None:
        """`replay(log_rows)`, then pick up children that finished while the run was not
        in memory."""
        self.replay(log_rows)
        if not self.finished and self.children:
            await self.check_children()

    def replay(self, log_rows: list[EventRow]) -> None:
        """Start the workflow coroutine, replay `log_rows`, then continue live.

        Operation state must be fresh (as constructed, or `reset_operations()`)."""
        assert self.workflow is not None
        row = self.row
        # mypy sees AbstractEventLoop's unimplemented methods as abstract; the sandbox
        # deliberately implements only what coordination needs (see _sandbox).
        self.loop = WorkflowLoop(self.run_id, WorkflowContext(self))  # type: ignore[abstract]
        if log_rows:  # a fresh run has none: `recorded` is empty already
            self.recorded = {
                e.seq: e for e in log_rows if e.kind in L.COMMANDS and e.seq is not None
            }
        self.replaying = True
        self.root = self.loop.start(
            self.workflow.run_coroutine(loads(row.args)), self.run_id, contextvars.Context()
        )
        run_until_quiescent(self.loop, self.host.loop)
        for entry in log_rows:
            if self.nondeterminism is not None or self.root.done():
                break
            if entry.kind in L.INPUTS or entry.kind in (L.CHILD_STARTED, L.STREAM_WRITTEN):
                self.apply(entry)
            elif entry.kind in (L.STEP_STARTED, L.STEP_RETRYING):
                self.restore_attempt(entry)
            elif entry.kind in (L.RUN_PAUSED, L.RUN_RESUMED):
                self.paused = entry.kind == L.RUN_PAUSED
        self.replaying = False
        if log_rows:
            self.recorded = {}
        self.after_workflow_ran()
        if not self.finished and log_rows:  # with no log, every call was acted on live
            self.resume_operations()

    def after_workflow_ran(self) -> None:
        """After the workflow ran to quiescence: fail on non-determinism, finish if it
        returned (once resumed, if paused)."""
        if self.finished or self.replaying:
            return
        if self.nondeterminism is not None:
            self.finish_failed(ErrorInfo.from_exception(self.nondeterminism))
            return
        root = self.root
        # A paused run keeps its outcome until it is resumed: paused means it does not
        # finish, even when an event or a timer lets its workflow return.
        if root is None or self.paused:
            return
        if not root.done():
            loop = self.loop
            if loop is not None and root.wake_if_settled():
                run_until_quiescent(loop, self.host.loop)
                self.after_workflow_ran()
                return
            # A step in `steps` holds a future its workflow waits on: the usual case,
            # told without listing every pending future.
            if not self.steps and not self._operation_futures():
                # Quiescent, and waiting on nothing the run can deliver: an asyncio.Event,
                # Queue, Lock or Future of its own, which nothing will ever set.
                self.finish_failed(
                    ErrorInfo.from_exception(
                        WorkflowSandboxError(
                            "the workflow waits on something that is not journaled (an asyncio "
                            "Event, Queue, Lock or Future of its own, say), which nothing can set; "
                            "wait with af.wait_for_event, af.sleep, a step or a child's result"
                        )
                    )
                )
            return
        if root.cancelled():
            self.finish_failed(ErrorInfo("CancelledError", "the workflow was cancelled"))
            return
        exc = root.exception()
        if exc is not None:
            exc = explain_foreign_await(exc)
            if isinstance(exc, StepFailedError):
                self.finish_failed(exc.error)
            else:
                self.finish_failed(ErrorInfo.from_exception(exc))
            return
        try:
            data = encode(root.result(), "workflow result", self.host.max_payload_bytes, self)
        except SerializationError as error:
            self.finish_failed(ErrorInfo.from_exception(error))
            return
        self.finish(_COMPLETED, L.RUN_COMPLETED, data, result=data)

    def with_text_keys(self, result: Any) -> Any:
        """The workflow's `result` with the keys of the dicts its return annotation types
        as strings, or None (see `encode`): asked only when orjson refuses it."""
        workflow = self.workflow
        return None if workflow is None else workflow.signature.result.with_text_keys(result)

    def teardown(self, keep_timer: bool) -> None:
        """Stop the workflow, its steps and its slot; park or cancel the timer."""
        if (
            self.loop is None
            and not self.steps
            and not self.has_slot
            and not self.limited
            and self._timer is None
        ):
            return  # torn down already (a finished run leaving the directory)
        self.close_workflow()
        for op in self.steps.values():
            op.pending = False
            if op.task is not None:
                op.task.cancel()
                self.host.reap(op.task, f"step {op.name!r} of run {self.run_id!r}")
                op.task = None
        # A limited run may hold a slot it has not heard of yet (granted after it queued).
        if self.has_slot or (self.limited and self.workflow is not None and not self.superseded):
            self.host.limiter.release(self.run_id)
            self.has_slot = False
        if self._timer is not None:
            self._timer.cancel()
            if keep_timer:
                self.host.park(self.run_id, self._timer.when)
            self._timer = None

    # -- finishing -------------------------------------------------------------------------

    def finish(
        self,
        status: RunStatus,
        kind: str,
        data: bytes | None,
        *,
        result: bytes | None = None,
        error: bytes | None = None,
    ) -> None:
        ran = self.root is not None and self.root.done()  # the workflow returned or raised
        self.finished = True
        self.teardown(keep_timer=False)
        if status == _TERMINATED:
            self.terminate_children(lambda seq: True)
        self.append(kind, None, None, data)
        row = self.row
        row.status, row.result, row.error = status._value_, result, error
        row.completed_at, row.wake_at = _now(), None
        if row.started_at is None and ran:
            row.started_at = row.completed_at
        self.status = status
        batch = self.batch()
        batch.update_run(row)
        if self.owns_hooks:
            self.host.drop_hooks(self.run_id)
            self.owns_hooks = False

        # At once on commit, not on this actor's next turn: result() callers wake sooner.
        batch.callbacks.append(_FinalCommitted(self, row))

    def final_status_committed(self, row: RunRow) -> None:
        """The final status `finish` wrote is committed: answer callers."""
        if self.superseded:  # abandoned: the final status is not what was committed
            return
        self.notified = True
        self.host.run_finished(row)
        if self.finished:  # not restarted meanwhile
            self.final_committed()

    def fail_after_crash(self, exc: BaseException) -> bool:
        """Record the run as failed with `exc`, which a turn of its actor raised: whatever
        kills a turn fails the run rather than leaving its callers waiting (and its
        replay crashing again on every reopen). False if it cannot be recorded."""
        if not self.loaded or self.finished:
            return False
        try:
            info = ErrorInfo.from_exception(exc)
            crashed = f"the run's actor crashed: {info.message}"
            self.finish_failed(ErrorInfo(info.type, crashed, info.traceback))
            self.store.commit()
        except Exception:
            log.exception("run %s could not be recorded as failed", self.run_id)
            return False
        return True

    def finish_failed(self, error: ErrorInfo) -> None:
        data = dumps(error.to_json())
        self.finish(RunStatus.FAILED, L.RUN_FAILED, data, error=data)


class _FinalCommitted:
    """`finish`'s batch callback: one compiled object where a closure and its
    environment were two."""

    __slots__ = ("driver", "row")

    def __init__(self, driver: WorkflowDriver, row: RunRow) -> None:
        self.driver = driver
        self.row = row

    def __call__(self) -> None:
        self.driver.final_status_committed(self.row)
