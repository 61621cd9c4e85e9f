"""Operations: what a workflow can wait on, and how log entries resolve it.

This is the run actor's half that faces the workflow. It implements
`WorkflowHost` (every journaled call lands here, inside the sandbox) and
`apply()`, which feeds one input entry of the log to the workflow. Live, the
actor calls `apply()` in the turn that appends the entry (step attempts wait
for the commit, see `launch`); on replay, `begin` calls it for each recorded
entry in order. The same code path for both is what makes
replay exact.

Calls whose seq has a recorded command are restored from the log instead of
being acted on again; a recorded command of another kind or name is a
non-determinism. Calls with no record are acted on at once, even mid-replay:
nothing later in the log can refer to them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .. import _log as L
from .. import _observe
from .._errors import (
    EventTimeoutError,
    HookConflictError,
    NonDeterminismError,
    RunAlreadyExistsError,
    StepFailedError,
    ValidationError,
)
from .._ids import child_run_id
from .._messages import ChildDone, Control
from .._models import FINAL, ErrorInfo, WorkflowInfo, to_datetime
from .._run import Run
from .._sandbox import run_until_quiescent
from .._serde import dumps, encode, loads
from .._store import ChunkRow, EventRow, HookRow, RunRow
from .._streams import StreamLedger
from ._children import Children
from ._ops import SleepOp, StepOp, WaitOp
from ._steps import StepScheduler

# Called as functions on every step's result: a compiled module calls a method of an
# object it does not know (an asyncio future, the sandbox loop) by looking its name up.
_Future: Final = asyncio.Future
_set_result: Final = asyncio.Future.set_result
_done: Final = asyncio.Future.done

if TYPE_CHECKING:
    from .._step_call import StepCall


class Operations(StepScheduler):
    """Pending operations of one run's workflow: the layer of `RunActor` above `StepScheduler`."""

    __slots__ = ()

    def workflow_info(self) -> WorkflowInfo:
        row = self.row
        started = to_datetime(row.started_at or row.created_at)
        assert started is not None
        return WorkflowInfo(
            run_id=self.run_id,
            workflow=row.workflow,
            started_at=started,
            generation=row.generation,
            parent_id=row.parent_id,
            schedule=self.schedule,
        )

    def non_deterministic(self, seq: int, expected: str, found: EventRow | None) -> None:
        """Record that the workflow's call at `seq` differs from its log; the run will fail."""
        if self.nondeterminism is None:
            recorded = "nothing" if found is None else f"{found.kind} {found.name!r}"
            self.nondeterminism = NonDeterminismError(
                f"run {self.run_id!r} at position {seq}: the workflow now calls {expected}, "
                f"but its event log recorded {recorded}; workflow code changed incompatibly "
                "while runs were in flight"
            )

    def close_workflow(self) -> None:
        """Cancel the workflow's tasks and drop its loop; later journaled calls unwind."""
        loop = self.loop
        if loop is None:
            return
        self.closed = True
        pending = loop.pending_tasks()
        for task in pending:
            task.cancel()
        # Futures no task waits on any longer (a step's, left by a `gather` that failed)
        # are cancelled too: their callbacks would hold them in a cycle.
        futures = self._operation_futures()
        waiting = [f for f in futures if not f.done()] if futures else futures
        for future in waiting:
            future.cancel()
        if pending or waiting:  # a run that returned usually has neither
            loop.run_until_quiescent()
        loop.release_tasks()
        loop.close()
        # The root task's context reaches this actor through its WorkflowContext:
        # dropping both ends lets reference counting free a finished run at once.
        self.loop = None
        self.root = None

    def _operation_futures(self) -> list[asyncio.Future[Any]]:
        """The futures of the workflow's pending operations."""
        if not (self.steps or self.sleeps or self.waits or self.acks or self.children):
            return []  # a run that returned, usually
        futures = [op.future for op in self.steps.values() if op.future is not None]
        futures += [sleep.future for sleep in self.sleeps.values()]
        futures += [wait.future for wait in self.waits.values()]
        futures += self.acks.values()
        if self.children is not None:
            futures += [f for waiters in self.children.waiters.values() for f in waiters]
        return futures

    def _future(self) -> asyncio.Future[Any]:
        assert self.loop is not None
        return self.loop.create_future()

    def _recorded(self, seq: int, call: str, name: str | None) -> EventRow | None:
        """The command recorded at `seq` (checked against this call), or None."""
        if not self.recorded:
            return None
        row = self.recorded.get(seq)
        if row is not None and (
            row.kind != L.CALL_KINDS[call] or (name is not None and row.name != name)
        ):
            self.non_deterministic(seq, f"{call} {name!r}", row)
        return row

    # -- WorkflowHost ----------------------------------------------------------------------

    def call_step(
        self, seq: int, step: StepCall, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        # The sandbox's `create_future`, inlined: every step call's path.
        future: asyncio.Future[Any] = _Future(loop=self.loop)
        root = self.root
        if root is not None:
            root.expected = future
        recorded = self._recorded(seq, "step", step.name) if self.recorded else None
        if self.nondeterminism is not None:
            return future
        op = self.steps[seq] = StepOp(seq, step, args, kwargs, future)
        if recorded is None:
            self.launch(op)
        return future

    def sleep(self, seq: int, seconds: float | None, until: float | None) -> asyncio.Future[None]:
        future = self._future()
        recorded = self._recorded(seq, "sleep", "sleep")
        if self.nondeterminism is not None:
            return future
        if recorded is not None:
            fire_at = float(loads(recorded.data or b"{}")["fire_at"])
        else:
            fire_at = until if until is not None else time.time() + (seconds or 0.0)
            self.append(L.SLEEP_STARTED, seq, "sleep", dumps({"fire_at": fire_at}))
        self.sleeps[seq] = SleepOp(seq, fire_at, future)
        return future

    def cancel_sleep(self, seq: int) -> None:
        """Keep the sleep at `seq` from firing. Not journaled: replay reaches the same
        cancel at the same point. A `sleep_fired` already logged for it still applies,
        to a future no one awaits."""
        sleep = self.sleeps.get(seq)
        if sleep is not None:
            sleep.fired = True  # what `fire_due` and the wake-up time skip

    def event_decoder(self, event_type: str) -> Callable[[Any], Any] | None:
        """The decoder of the type the workflow declares for `event_type`, if any."""
        return None if self.workflow is None else self.workflow.event_decoder(event_type)

    def check_event(self, key: str, data: bytes) -> None:
        """Raise `ValidationError` if an event's payload does not fit the type expected
        for it: the one the workflow declares, else that of the wait the run is in."""
        decode = self.event_decoder(key)
        if decode is None:
            decode = next((w.decode for w in self.waits.values() if w.key == key), None)
        if decode is not None:
            decode(loads(data))

    def wait_event(
        self, seq: int, key: str, timeout: float | None, decode: Callable[[Any], Any] | None
    ) -> asyncio.Future[Any]:
        future = self._future()
        recorded = self._recorded(seq, "wait", key)
        if self.nondeterminism is not None:
            return future
        if recorded is not None:
            timeout_at = loads(recorded.data or b"{}")["timeout_at"]
        else:
            timeout_at = None if timeout is None else time.time() + timeout
            self.append(L.WAIT_STARTED, seq, key, dumps({"timeout_at": timeout_at}))
        buffered = self.inbox.get(key)
        if buffered:
            future.set_result(loads(buffered.popleft()))
            if not buffered:
                del self.inbox[key]
        else:
            self.waits[seq] = WaitOp(seq, key, timeout_at, future, decode)
        return future

    def start_child(
        self, seq: int, workflow: Any, args: tuple[Any, ...], child_id: str | None, metadata: Any
    ) -> asyncio.Future[Run[Any]]:
        future = self._future()
        wf = self.host.resolve_workflow(workflow)
        recorded = self._recorded(seq, "child", wf.name)
        if self.nondeterminism is not None:
            return future
        if recorded is not None:
            self.acks[seq] = future
            data = loads(recorded.data or b"{}")
            if "error" not in data:
                self._family().started(data["run_id"], seq)
            return future
        wf.check_args(args, "child run: ")
        limit = self.host.max_payload_bytes
        args_data = encode(list(args), f"arguments of child workflow {wf.name!r}", limit, wf)
        meta = None if metadata is None else encode(metadata, "metadata", limit)
        if child_id is None:
            child_id = child_run_id(self.run_id, self.row.generation, seq)
        now = time.time()
        deadlines = [
            d
            for d in (self.row.deadline_at, None if wf.deadline is None else now + wf.deadline)
            if d is not None
        ]
        child = RunRow.queued(
            child_id, wf.name, args_data, now, meta, self.run_id, min(deadlines, default=None)
        )
        started = self.append(
            L.CHILD_STARTED, seq, wf.name, dumps({"run_id": child_id}), to_batch=False
        )
        observer = _observe.current
        carrier = None if observer is None else observer.run_creating(child, None)
        data = L.creation_data({}, carrier)
        created = EventRow(child_id, 0, 0, L.RUN_CREATED, None, wf.name, data, now)
        batch = self.batch()
        batch.create_run(child, [created, started])
        self.host.spawn(child, batch)
        children = self._family()
        children.started(child_id, seq)
        self.acks[seq] = future

        def after_commit() -> None:
            if child.id in batch.conflicts:
                children.dropped(child.id)
                error = {"run_id": child.id, "error": "a run with this id already exists"}
                self.input(self.append(L.CHILD_STARTED, seq, wf.name, dumps(error)))
            else:
                self.apply(started)

        self.effect(after_commit)
        return future

    def await_child(self, seq: int, child_id: str) -> asyncio.Future[Any]:
        return self._family().wait(child_id, self._future())

    def create_hook(self, seq: int, token: str | None) -> str:
        recorded = self._recorded(seq, "hook", token)
        if self.nondeterminism is not None:
            return token or ""
        if recorded is not None:
            assert recorded.name is not None
            data = loads(recorded.data) if recorded.data else None
            if data is not None:
                raise HookConflictError(data["error"])
            if self.host.hooks.get(recorded.name) != self.run_id:
                self._claim_hook(recorded.name, seq)
            # Still ours after eviction or a reopen: release it when the run finishes.
            self.owns_hooks = True
            return recorded.name
        token = token or secrets.token_urlsafe(16)
        holder = self.host.hook_holder(self.run_id, token)
        if holder is not None and holder != self.run_id:
            message = f"hook token {token!r} is already held by run {holder!r}"
            self.append(L.HOOK_CREATED, seq, token, dumps({"error": message}))
            raise HookConflictError(message)
        self._claim_hook(token, seq)
        self.append(L.HOOK_CREATED, seq, token, None)
        return token

    def _claim_hook(self, token: str, seq: int) -> None:
        self.host.hooks[token] = self.run_id
        self.batch().hooks.append(HookRow(token, self.run_id, seq))
        self.owns_hooks = True

    def write_chunk(
        self, seq: int, namespace: str, kind: int, data: bytes | None
    ) -> asyncio.Future[int]:
        future = self._future()
        recorded = self._recorded(seq, "write", namespace)
        if self.nondeterminism is not None:
            return future
        if recorded is None:
            index = self.add_chunk(namespace, seq, 0, kind, data)
            self.input(self.append(L.STREAM_WRITTEN, seq, namespace, dumps({"index": index})))
        self.acks[seq] = future
        return future

    # -- inputs ----------------------------------------------------------------------------

    def apply(self, row: EventRow) -> None:
        """Resolve what `row` answers, then run the workflow until it waits again."""
        if self.closed or self.loop is None:
            return
        # Resolved in a frame of its own, over before the workflow runs: a workflow frame
        # that ends while an exception's traceback holds it keeps the frames below it as
        # `f_back` (Python 3.12+), and a local here holding the failed future would
        # close a reference cycle through that traceback.
        if self._resolve(row):
            run_until_quiescent(self.loop, self.host.loop)
            self.after_workflow_ran()

    def _resolve(self, row: EventRow) -> bool:
        """Settle the future `row` answers; False if it answers none (nothing to run)."""
        kind, seq = row.kind, row.seq
        if kind == L.STEP_COMPLETED or kind == L.STEP_FAILED:  # the most frequent, first
            # `get` and `del`: mypyc calls `pop` with a default by name (a type lookup).
            if seq is None or (op := self.steps.get(seq)) is None:
                return self._stray(row)
            del self.steps[seq]
            future, op.future = op.future, None  # see `apply`: the op lives on in frames
            assert future is not None
            root = self.root
            if root is not None:
                root.settling(future)
            if _done(future):  # cancelled by the workflow's own code: nothing to settle
                return True
            if kind == L.STEP_COMPLETED:
                if op.decode is None:
                    _set_result(future, loads(row.data or b"null"))
                else:
                    _decoded(future, op.decode, row.data or b"null")
            else:
                error = ErrorInfo.from_json(loads(row.data or b"{}")["error"])
                future.set_exception(StepFailedError(op.name, error))
        elif kind == L.EVENT_RECEIVED:
            self._receive(row)
        elif kind == L.CHILD_FINISHED:
            assert row.name is not None and row.data is not None
            self._family().finished(row.name, loads(row.data))
        elif kind == L.SLEEP_FIRED:
            sleep = self.sleeps.pop(seq, None) if seq is not None else None
            if sleep is None:
                return self._stray(row)
            sleep.future.set_result(None)
        elif kind == L.WAIT_TIMED_OUT:
            wait = self.waits.pop(seq, None) if seq is not None else None
            if wait is None:
                return False  # an event reached it first
            wait.future.set_exception(EventTimeoutError(f"no {wait.key!r} event arrived in time"))
        elif kind in (L.CHILD_STARTED, L.STREAM_WRITTEN):
            ack = self.acks.pop(seq, None) if seq is not None else None
            if ack is None:
                return self._stray(row)
            data = loads(row.data or b"{}")
            if kind == L.STREAM_WRITTEN:
                ack.set_result(data["index"])
            elif "error" in data:
                ack.set_exception(
                    RunAlreadyExistsError(f"a run with id {data['run_id']!r} already exists")
                )
            else:
                child = self.host.workflow(row.name or "")
                decode = None if child is None else child.decode_result
                ack.set_result(Run(self.host.client, data["run_id"], decode))
        return True

    def _receive(self, row: EventRow) -> None:
        assert row.name is not None and row.data is not None
        for seq, wait in self.waits.items():
            if wait.key == row.name:
                del self.waits[seq]
                wait.future.set_result(loads(row.data))
                return
        self.inbox.setdefault(row.name, deque()).append(row.data)

    def _stray(self, row: EventRow) -> bool:
        """An input for a call the workflow has not made: harmless live, fatal on replay.
        False: there is nothing to run."""
        if self.replaying:
            self.non_deterministic(row.seq or 0, "nothing", row)
        return False

    # -- timers ----------------------------------------------------------------------------

    def fire_due(self, now: float) -> None:
        """Record every sleep and event timeout that is due; restart due retries."""
        for sleep in sorted(self.sleeps.values(), key=lambda s: (s.fire_at, s.seq)):
            if not sleep.fired and sleep.fire_at <= now:
                sleep.fired = True
                self.input(self.append(L.SLEEP_FIRED, sleep.seq, "sleep", None))
        for wait in list(self.waits.values()):
            if wait.timeout_at is not None and wait.timeout_at <= now and not wait.timing_out:
                wait.timing_out = True
                self.input(self.append(L.WAIT_TIMED_OUT, wait.seq, wait.key, None))
        if not self.paused:
            self.launch_due_retries(now)

    # -- children --------------------------------------------------------------------------

    def child_done(self, message: ChildDone) -> None:
        entry = None if self.children is None else self.children.record(message)
        if entry is not None:
            seq, data = entry
            self.input(self.append(L.CHILD_FINISHED, seq, message.child_id, data))

    async def check_children(self) -> None:
        """After rehydration: pick up children that finished while nobody listened."""
        unknown = self.children.unknown_outcomes() if self.children else []
        if not unknown:
            return
        rows = await self.store.get_runs(unknown)
        for child_id in unknown:  # in the order they were started
            row = rows.get(child_id)
            if row is not None and row.status in FINAL:
                self.child_done(ChildDone(child_id, row.status, row.result, row.error))

    def terminate_children(self, which: Callable[[int], bool]) -> None:
        """Ask every unfinished child whose start seq satisfies `which` to terminate."""
        if self.children is None:
            return
        for child_id in list(self.children.unfinished(which)):
            self.host.deliver(child_id, Control("terminate", None))

    def _family(self) -> Children:
        """The run's children, created with the first."""
        if self.children is None:
            self.children = Children()
        return self.children

    # -- streams ---------------------------------------------------------------------------

    def add_chunk(
        self, namespace: str, seq: int | None, attempt: int, kind: int, data: bytes | None
    ) -> int:
        """Append a chunk to the open batch and return its index (the caller commits)."""
        size = 0 if data is None else len(data)
        if self.streams is None:
            self.streams = StreamLedger()
        index = self.streams.claim(self.run_id, namespace, kind, size, self.host.max_stream_bytes)
        row = ChunkRow(self.run_id, namespace, index, seq, attempt, kind, data, time.time())
        self.batch().chunks.append(row)
        return index


def _decoded(future: asyncio.Future[Any], decode: Callable[[Any], Any], data: bytes) -> None:
    """Settle `future` with the recorded JSON `data` decoded into its annotated type, or
    with the `ValidationError` saying it no longer fits (the annotation changed)."""
    try:
        future.set_result(decode(data))
    except ValidationError as exc:
        future.set_exception(exc)
