"""The exception hierarchy.

`ActorflowError` is the base of everything the runtime raises. `FatalError` and
`RetryableError` are raised by *user* step code to steer retries, so they derive
from `Exception` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import ErrorInfo


class ActorflowError(Exception):
    """Base class of every error raised by actorflow."""


class SerializationError(ActorflowError, TypeError):
    """A value cannot be serialized to JSON; the message names its path (e.g. `args[1]['when']`)."""


class NonDeterminismError(ActorflowError):
    """On replay the workflow called something other than what its event log recorded."""


class RunNotFoundError(ActorflowError, LookupError):
    """No run with this id exists."""


class RunAlreadyExistsError(ActorflowError):
    """`start(..., id=..., if_exists="error")` found a run with that id, or (whatever
    `if_exists` says) a run of another workflow holds that id."""


class InvalidNameError(ActorflowError, ValueError):
    """A run id, event type, hook token or stream namespace is empty, longer than 255
    characters, not printable, or (a new run's id) holds the reserved `~`."""


class WorkflowNotRegisteredError(ActorflowError, LookupError):
    """The engine knows no workflow of that name."""


class InvalidStateError(ActorflowError):
    """The operation does not apply to the run's status (e.g. terminating a finished run)."""


class RunFailedError(ActorflowError):
    """The run failed; `.error` describes why."""

    def __init__(self, run_id: str, error: ErrorInfo) -> None:
        super().__init__(f"run {run_id!r} failed: {error.type}: {error.message}")
        self.run_id = run_id
        self.error = error


class RunTerminatedError(ActorflowError):
    """The run was terminated before it finished."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} was terminated")
        self.run_id = run_id


class StepFailedError(ActorflowError):
    """Raised inside a workflow when a step failed for good (retries exhausted or fatal).

    `.error` is the step's last error; catching this lets the workflow compensate.
    """

    def __init__(self, step: str, error: ErrorInfo) -> None:
        super().__init__(f"step {step!r} failed: {error.type}: {error.message}")
        self.step = step
        self.error = error


class StepTimeoutError(ActorflowError, TimeoutError):
    """A step attempt ran longer than its `timeout=`; it is retried like any other failure."""


class EventTimeoutError(ActorflowError, TimeoutError):
    """`wait_for_event(..., timeout=)` expired before a matching event arrived."""


class DeadlineExceededError(ActorflowError, TimeoutError):
    """The run (or an ancestor) passed its deadline."""


class HookNotFoundError(ActorflowError, LookupError):
    """No live run holds a hook with this token."""


class HookConflictError(ActorflowError):
    """Another run already holds a hook with this token."""


class StreamLimitError(ActorflowError):
    """A write would take the run's streams past the engine's `max_stream_bytes`."""


class StreamClosedError(ActorflowError):
    """A write to a stream namespace that was already closed."""


class WorkflowSandboxError(ActorflowError):
    """Workflow code did something that cannot be replayed (I/O or a timer outside a step)."""


class StoreWriteError(ActorflowError):
    """A commit failed (disk full, I/O error): what was being written is not durable.

    The runs it touched are rehydrated from the store, with a backoff while
    commits keep failing; a run whose creation failed does not exist.
    """


class ScheduleError(ActorflowError, ValueError):
    """A schedule cannot be created as given (bad expression, zone, policy, workflow or
    arguments); the message names what is wrong, and nothing was stored."""


class ScheduleNotFoundError(ActorflowError, LookupError):
    """No schedule with this id exists."""


class StoreSchemaError(ActorflowError):
    """The database was written by a newer actorflow (its schema version is higher than
    this one knows), or holds another application's tables where actorflow's belong."""


class EngineClosedError(ActorflowError):
    """The engine is not open (never opened, or already closed)."""


class CallContextError(ActorflowError, RuntimeError):
    """A call made where it cannot work: `af.sleep()` outside a workflow, `af.step_info()`
    outside a step, `af.get_writable()` outside both. A `RuntimeError` too."""


class StoreLockedError(ActorflowError):
    """Another engine (process) has this database open."""


class StoreFileError(ActorflowError):
    """The store's file cannot be an actorflow database: not SQLite, another
    application's or another schema's, UTF-16 rather than UTF-8, read-only (or in a
    read-only directory), or `sqlite:///:memory:`. Raised before anything is written to
    it or next to it."""


class StoreReadError(ActorflowError):
    """A store cannot be read directly: no such file, not a SQLite database, or not
    actorflow's (the command line's `--db` reads)."""


class FatalError(Exception):
    """Raise from a step to fail it at once, without retries."""


class RetryableError(Exception):
    """Raise from a step to retry it; `retry_after` (seconds) overrides the policy's delay.

    Raises `ValueError` if `retry_after` is not a finite number >= 0.
    """

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        if retry_after is not None and not (
            isinstance(retry_after, int | float) and 0 <= retry_after < float("inf")
        ):
            raise ValueError(
                f"RetryableError.retry_after must be a finite number of seconds >= 0, "
                f"got {retry_after!r}"
            )
        super().__init__(message)
        self.retry_after = retry_after


class ValidationError(ActorflowError, ValueError):
    """A value does not fit its annotation: an argument where it enters (`start`,
    `start_many`, `af.start`, schedules), or a stored value read back into a changed type.

    `argument` names the argument (None for a result or an event payload), `path`
    the place inside it (e.g. `.items[0].qty`, "" for the whole value) and `reason`
    what was expected.
    """

    def __init__(self, message: str, *, argument: str | None, path: str, reason: str) -> None:
        super().__init__(message)
        self.argument = argument
        self.path = path
        self.reason = reason
