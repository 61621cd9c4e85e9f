"""RunState: everything a run actor holds, declared once, and its journal.

The bottom layer of `RunActor` (see the package docstring for the layers).
Every attribute of the actor is declared and initialised here, and nowhere
else; the layers above add behaviour only. The journal primitives every layer
uses live here too: `append` (a log entry into the store's open batch),
`input` (an entry the workflow is fed before the turn commits), `effect` (run
once the turn is committed) and `reply_later`.

Three methods belong to upper layers but are called from lower ones (a step's
task hands its outcome to the turn loop; an applied input lets the driver see
whether the workflow returned; a finished run tells the turn loop its final
commit is done). They are declared here, once, as the only upward calls.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._messages import reply_to
from .._models import STATUS_OF, ScheduleTick
from .._store import EventRow, RunRow, WriteBatch
from .._workflow_task import WorkflowTask
from ._mailbox import Mailbox

if TYPE_CHECKING:
    from .._definitions import WorkflowFunction
    from .._errors import NonDeterminismError
    from .._models import ErrorInfo
    from .._sandbox import WorkflowLoop
    from .._streams import StreamLedger
    from .._timers import TimerEntry
    from .._workflow_context import WorkflowContext
    from ._children import Children
    from ._host import RunHost
    from ._ops import SleepOp, StepOp, WaitOp

# A commit to wait for, and the effects to run once it is done.
Held = tuple[asyncio.Future[None], list[Callable[[], None]]]

# `EventRow(...)` goes through a Python-level `__new__`; this builds the same tuple in C.
# Module constants, read by a compiled build from C statics, not looked up by name.
_new_tuple: Final = tuple.__new__
_EVENT_ROW: Final = EventRow
_now: Final = time.time


class RunState(abc.ABC):
    """The state of one run in memory, and the journal that records its changes."""

    # Thousands are alive at once: no per-instance dict (memory, and one object less
    # for the cyclic collector to scan per run).
    __slots__ = (  # noqa: SIM905 - 42 names in 5 lines, not 44
        "_creation _effects _evicted _exited _held _inputs _replies _timer "
        "_unique _wrote acks batch children closed finished has_slot host inbox limited "
        "loaded loop mailbox next_idx nondeterminism notified owns_hooks paused recorded "
        "replaying root row run_id schedule sleeps status steps store streams superseded task "
        "waits workflow"
    ).split()

    def __init__(
        self,
        host: RunHost,
        run_id: str,
        row: RunRow | None = None,
        creation: WriteBatch | None = None,
        unique: bool = False,
        schedule: ScheduleTick | None = None,
    ) -> None:
        """A fresh run passes its `row` and the `creation` batch that inserts it
        (`unique`: its id cannot conflict, see `RunHost.spawn`; `schedule`: the tick that
        started it); without them the actor rehydrates the run from the store."""
        self.host = host
        self.store = host.store
        # The store's `batch` (a method of its writer): called about four times per step,
        # where `store.batch()` looked the name up on the store each time.
        self.batch: Callable[[], WriteBatch] = host.store.batch
        self.run_id = run_id
        self.row: RunRow = row if row is not None else RunRow(run_id, "", "queued", b"[]", 0.0)
        self._creation = creation
        self._unique = unique
        self.schedule = schedule  # read from the log's first entry on rehydration
        # -- the run, as the turn loop sees it
        self.loaded = creation is not None
        self.superseded = False
        self.status = STATUS_OF[self.row.status]
        # Created with the actor's first message or task (`messages()`): a fresh run whose
        # steps all end in turns taken in their own tasks never needs one.
        self.mailbox: Mailbox | None = None
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self.notified = False
        self.next_idx = 1
        self.streams: StreamLedger | None = None  # created with the first chunk
        self.workflow: WorkflowFunction[Any, Any] | None = None
        self.paused = False
        # Whether the run holds a concurrency slot, and whether a limit applies to its
        # workflow (set once it is resolved).
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
        # Left by a turn run in the task that ran a step, for the actor's task (see `step_ended`).
        self._held: Held | None = None
        self._exited = False
        # -- the workflow and its pending calls
        self.loop: WorkflowLoop[WorkflowContext] | None = None
        self.owns_hooks = False
        self.reset_operations()

    def reset_operations(self) -> None:
        """Forget the workflow's pending calls (a fresh start, or a restart)."""
        self.closed = False
        self.root: WorkflowTask | None = None
        self.recorded: dict[int, EventRow] = {}
        self.replaying = False
        self.nondeterminism: NonDeterminismError | None = None
        self.steps: dict[int, StepOp] = {}
        self.sleeps: dict[int, SleepOp] = {}
        self.waits: dict[int, WaitOp] = {}
        self.inbox: dict[str, deque[bytes]] = {}
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.children: Children | None = None  # created with the first child

    def messages(self) -> Mailbox:
        """The mailbox, created on first use."""
        mailbox = self.mailbox
        if mailbox is None:
            mailbox = self.mailbox = Mailbox()
        return mailbox

    # -- the journal -----------------------------------------------------------------------

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
            _EVENT_ROW,
            (
                self.run_id,
                self.next_idx,
                self.row.generation,
                kind,
                seq,
                name,
                data,
                _now() if at is None else at,
            ),
        )
        self.next_idx += 1
        if to_batch:
            self.batch().events.append(row)
        self._wrote = True
        return row

    def effect(self, fn: Callable[[], None]) -> None:
        """Run `fn` once everything appended so far is committed."""
        if self._effects is None:
            self._effects = [fn]
        else:
            self._effects.append(fn)

    def input(self, row: EventRow) -> None:
        """Feed `row` to the workflow before this turn commits (see `RunActor.flush`)."""
        if self._inputs is None:
            self._inputs = [row]
        else:
            self._inputs.append(row)

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

    def fail_replies(self, error: BaseException) -> None:
        """Answer every caller still waiting on this run's writes with `error`."""
        for reply in self._replies or ():
            if not reply.done():
                reply.set_exception(error)

    # -- the upward calls (see the module docstring) ----------------------------------------

    @abc.abstractmethod
    def step_ended(
        self,
        op: StepOp,
        attempt: int,
        data: bytes | None,
        error: ErrorInfo | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Take a step attempt's outcome, `StepFinished`'s fields (the turn loop, `RunActor`)."""

    @abc.abstractmethod
    def after_workflow_ran(self) -> None:
        """See how the workflow stands after it ran (the driver, `WorkflowDriver`)."""

    @abc.abstractmethod
    def final_committed(self) -> None:
        """The run's final status is committed (the turn loop, `RunActor`)."""
