"""Step attempts: each runs in its own task on the service's loop and reports to its actor.

The attempt never touches the run's state: it encodes the result (so an
unserializable return fails the step right here, naming the bad value) and
posts a `StepFinished` to the actor's mailbox. The actor decides what the
outcome means: commit, retry, or fail.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ._context import StepContext, _step
from ._errors import FatalError, RetryableError, SerializationError, StepTimeoutError
from ._models import ErrorInfo
from ._serde import encode

if TYPE_CHECKING:
    from ._definitions import StepFunction
    from ._mailbox import Mailbox


class StepOp:
    """A step call of the workflow, from its first attempt until its outcome is applied."""

    __slots__ = (
        "args",
        "attempt",
        "future",
        "held",
        "kwargs",
        "pending",
        "retry_at",
        "seq",
        "step",
        "task",
    )

    def __init__(
        self,
        seq: int,
        step: StepFunction[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: asyncio.Future[Any],
    ) -> None:
        self.seq = seq
        self.step = step
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.attempt = 0
        self.task: asyncio.Task[None] | None = None
        self.retry_at: float | None = None
        self.held = False
        # The attempt is in the log's open batch; its task starts once that is committed.
        self.pending = False

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def in_flight(self) -> bool:
        """An attempt is started (pending its commit) or running."""
        return self.pending or self.task is not None


class StepFinished:
    """Mailbox message: an attempt ended. `data` is the encoded result when `error` is None."""

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


def launch_attempt(
    op: StepOp, step_ctx: StepContext, mailbox: Mailbox, loop: asyncio.AbstractEventLoop
) -> asyncio.Task[None]:
    """Start attempt `step_ctx.attempt` of `op` in a task of its own on `loop`.

    `loop` is explicit because this is called from inside the workflow sandbox,
    where the running loop is the sandbox's.
    """
    context = contextvars.Context()
    context.run(_step.set, step_ctx)
    coro = _run_attempt(op, step_ctx.attempt, mailbox)
    return loop.create_task(coro, name=op.name, context=context)


async def _run_attempt(op: StepOp, attempt: int, mailbox: Mailbox) -> None:
    step = op.step
    try:
        if step.timeout is None:
            value = await _call(op)
        else:
            try:
                async with asyncio.timeout(step.timeout):
                    value = await _call(op)
            except TimeoutError as exc:
                raise StepTimeoutError(
                    f"step {step.name!r} timed out after {step.timeout} s"
                ) from exc
        data = encode(value, f"step {step.name!r} result")
    except (FatalError, SerializationError) as exc:
        message = StepFinished(op, attempt, None, ErrorInfo.from_exception(exc))
    except RetryableError as exc:
        message = StepFinished(
            op,
            attempt,
            None,
            ErrorInfo.from_exception(exc),
            retryable=True,
            retry_after=exc.retry_after,
        )
    except Exception as exc:
        message = StepFinished(op, attempt, None, ErrorInfo.from_exception(exc), retryable=True)
    else:
        message = StepFinished(op, attempt, data, None)
    mailbox.put(message)


def _call(op: StepOp) -> Awaitable[Any]:
    """The step's awaitable (not a coroutine of its own: one frame less per step)."""
    if op.step.is_async:
        return op.step.fn(*op.args, **op.kwargs)
    return asyncio.to_thread(op.step.fn, *op.args, **op.kwargs)
