"""Public value types: statuses and the read-only records a caller gets back."""

from __future__ import annotations

import enum
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import attrs


class RunStatus(enum.StrEnum):
    """Where a run is in its life. `completed`, `failed` and `terminated` are final.

    `queued`: recorded, not started yet. Every run starts `queued`: without a
    concurrency cap only until its actor's first turn (so `status()` right after
    `start()` may well say `queued`); under a cap, until a slot is free.
    `running`: its workflow or a step is running. `waiting`: only a timer, an
    event, a hook or a child can move it on (it holds no concurrency slot).
    """

    QUEUED = "queued"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"

    @property
    def is_final(self) -> bool:
        """True for `completed`, `failed` and `terminated`."""
        return self in FINAL_STATUSES


# The one definition of which statuses are final; the stored texts of both kinds follow
# from it (in a fixed order: stores bind them as SQL parameters).
FINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TERMINATED})
FINAL: tuple[str, ...] = tuple(s.value for s in RunStatus if s in FINAL_STATUSES)
UNFINISHED: tuple[str, ...] = tuple(s.value for s in RunStatus if s not in FINAL_STATUSES)

# A stored status text to its member: a dict lookup, where `RunStatus(text)` is two
# Python-level calls (rows are loaded and actors created on hot paths).
STATUS_OF: dict[str, RunStatus] = {status._value_: status for status in RunStatus}


def status_texts(status: RunStatus | str | Iterable[RunStatus | str] | None) -> list[str] | None:
    """The stored texts of a status filter (one status or several; None: any); raises
    `ValueError` naming the valid statuses for one that is none of them."""
    if status is None:
        return None
    found = []
    for one in [status] if isinstance(status, str) else status:
        known = STATUS_OF.get(one) if isinstance(one, str) else None
        if known is None:
            valid = ", ".join(s.value for s in RunStatus)
            raise ValueError(f"unknown run status {one!r}; valid: {valid}")
        found.append(known.value)
    return found


@attrs.frozen
class ErrorInfo:
    """A recorded exception: its type name, message and formatted traceback."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Describe `exc`, traceback included; each cut to `MAX_ERROR_TEXT` characters
        (an error quoting a whole response body would otherwise be stored per attempt)."""
        tb = "".join(traceback.format_exception(exc))
        try:
            message = str(exc)
        except Exception as inner:  # an error is recorded whatever its __str__ does
            message = f"<str() of the {type(exc).__name__} raised {type(inner).__name__}>"
        return cls(type=type(exc).__name__, message=_cut(message), traceback=_cut(tb))

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in the event log."""
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErrorInfo:
        """Inverse of `to_json`."""
        return cls(type=data["type"], message=data["message"], traceback=data.get("traceback"))


MAX_ERROR_TEXT = 64 * 1024


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return f"{text[:MAX_ERROR_TEXT]}... [{len(text) - MAX_ERROR_TEXT:,} more characters cut]"


@attrs.frozen
class StepRecord:
    """One step of a run, folded from its events.

    `status` is `running`, `retrying`, `completed` or `failed`; `attempts` counts
    the attempts started so far.
    """

    seq: int
    name: str
    status: str
    attempts: int
    result: Any
    error: ErrorInfo | None
    started_at: datetime | None
    completed_at: datetime | None


@attrs.frozen
class RunInfo:
    """A snapshot of a run. `steps` and `streams` (the namespaces of its streams) are
    filled by `Run.info()` and empty in `list_runs()`; `steps_done` (how many steps of
    its current execution completed) is in both."""

    id: str
    workflow: str
    status: RunStatus
    args: list[Any]
    result: Any
    error: ErrorInfo | None
    metadata: Any
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    steps: tuple[StepRecord, ...] = ()
    parent_id: str | None = None
    generation: int = 0
    deadline_at: datetime | None = None
    steps_done: int = 0
    streams: tuple[str, ...] = ()


@attrs.frozen
class StepInfo:
    """What `af.step_info()` returns inside a step. `step_id` is stable across retries."""

    run_id: str
    step_id: str
    name: str
    seq: int
    attempt: int


@attrs.frozen
class ScheduleTick:
    """The tick that started a run: `af.workflow_info().schedule` inside it.

    `scheduled_time` is the tick (an aware UTC datetime), not when the run began.
    """

    schedule_id: str
    cron: str
    scheduled_time: datetime


@attrs.frozen
class WorkflowInfo:
    """What `af.workflow_info()` returns inside a workflow."""

    run_id: str
    workflow: str
    started_at: datetime
    schedule: ScheduleTick | None = None
    generation: int = 0
    parent_id: str | None = None


@attrs.frozen
class RunEvent:
    """One committed entry of a run's event log, as `Run.events()` yields it.

    `generation` counts restarts (0 for the first execution); `seq` is the
    position of the step, sleep, wait or child the entry belongs to.
    """

    index: int
    kind: str
    at: datetime
    generation: int
    seq: int | None
    name: str | None
    data: Any


@attrs.frozen
class StreamChunk:
    """A stream chunk with its bookkeeping, as `Run.stream(..., with_info=True)` yields it.

    `seq`/`attempt` name the step attempt that wrote it (`attempt` is 0 for a
    write from the workflow body).
    """

    index: int
    value: Any
    seq: int | None
    attempt: int
    at: datetime


def to_datetime(ts: float | None) -> datetime | None:
    """A stored epoch timestamp as an aware UTC datetime."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)
