"""The records of a workflow's pending calls: steps, sleeps and event waits.

Plain data the run actor's parts share (`RunState` holds them by seq); no behaviour.
`StepFinished` is a step attempt's outcome queued for an actor busy in its own task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._definitions import UNRESOLVED

if TYPE_CHECKING:
    from .._models import ErrorInfo
    from .._step_call import StepCall

_UNRESOLVED: Final = UNRESOLVED  # read for every step call: a C static when compiled


class StepOp:
    """A step call of the workflow, from its first attempt until its outcome is applied."""

    __slots__ = (
        "args",
        "attempt",
        "decode",
        "future",
        "held",
        "kwargs",
        "name",
        "pending",
        "retry_at",
        "seq",
        "step",
        "task",
    )

    def __init__(
        self,
        seq: int,
        step: StepCall,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: asyncio.Future[Any],
    ) -> None:
        self.seq = seq
        self.step = step
        self.name = step.name
        decode = step.decode_result
        if decode is _UNRESOLVED:  # resolved in the workflow's call: a failure raises there
            decode = step.resolve_decoder()
        self.decode: Callable[[Any], Any] | None = decode
        self.args = args
        self.kwargs = kwargs
        # Dropped once settled (see `Operations.apply`).
        self.future: asyncio.Future[Any] | None = future
        self.attempt = 0
        self.task: asyncio.Task[None] | None = None
        self.retry_at: float | None = None
        self.held = False
        # The attempt is in the log's open batch; its task starts once that is committed.
        self.pending = False

    @property
    def in_flight(self) -> bool:
        """An attempt is started (pending its commit) or running."""
        return self.pending or self.task is not None


class StepFinished:
    """Mailbox message: an attempt ended (`RunActor.step_ended`'s arguments, queued).
    `data` is the encoded result when `error` is None."""

    __slots__ = ("attempt", "data", "error", "op", "retry_after", "retryable")

    def __init__(
        self,
        op: StepOp,
        attempt: int,
        data: bytes | None,
        error: ErrorInfo | None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.op = op
        self.attempt = attempt
        self.data = data
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


class SleepOp:
    """A durable sleep of the workflow until it fires (or is cancelled)."""

    __slots__ = ("fire_at", "fired", "future", "seq")

    def __init__(self, seq: int, fire_at: float, future: asyncio.Future[None]) -> None:
        self.seq = seq
        self.fire_at = fire_at
        self.future = future
        self.fired = False


class WaitOp:
    """A wait for an event of type `key`, with its timeout."""

    __slots__ = ("decode", "future", "key", "seq", "timeout_at", "timing_out")

    def __init__(
        self,
        seq: int,
        key: str,
        timeout_at: float | None,
        future: asyncio.Future[Any],
        decode: Callable[[Any], Any] | None = None,
    ) -> None:
        self.seq = seq
        self.key = key
        self.timeout_at = timeout_at
        self.future = future
        self.decode = decode  # the type the workflow expects: a payload is checked at send
        self.timing_out = False
