"""The event log's vocabulary, and how a log folds into what callers read.

A run's log interleaves three sorts of entries:

- *commands*, which the workflow issued (a step started, a sleep begun, ...).
  On replay each call the workflow makes is matched against the command
  recorded at its `seq`; a different name is a `NonDeterminismError`.
- *inputs*, which the outside world fed the workflow (a step's result, a fired
  timer, an event). Replay feeds them again, in log order.
- *state* entries (pause, resume, restart, the final outcome, retry bookkeeping).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ._models import STATUS_OF, ErrorInfo, RunEvent, RunInfo, StepRecord, to_datetime
from ._observe import TRACE_CONTEXT_KEY
from ._serde import dumps, loads
from ._store import EventRow, RunRow

# `Final`: the compiled hot path reads these as string literals, not as attributes of
# this module (1.1 % of a 3-step workflow's instructions).
RUN_CREATED: Final = "run_created"
RUN_PAUSED: Final = "run_paused"
RUN_RESUMED: Final = "run_resumed"
RUN_RESTARTED: Final = "run_restarted"
RUN_COMPLETED: Final = "run_completed"
RUN_FAILED: Final = "run_failed"
RUN_TERMINATED: Final = "run_terminated"

STEP_STARTED: Final = "step_started"
STEP_RETRYING: Final = "step_retrying"
STEP_COMPLETED: Final = "step_completed"
STEP_FAILED: Final = "step_failed"
SLEEP_STARTED: Final = "sleep_started"
SLEEP_FIRED: Final = "sleep_fired"
WAIT_STARTED: Final = "wait_started"
WAIT_TIMED_OUT: Final = "wait_timed_out"
EVENT_RECEIVED: Final = "event_received"
CHILD_STARTED: Final = "child_started"
CHILD_FINISHED: Final = "child_finished"
HOOK_CREATED: Final = "hook_created"
STREAM_WRITTEN: Final = "stream_written"

COMMANDS = frozenset(
    {STEP_STARTED, SLEEP_STARTED, WAIT_STARTED, CHILD_STARTED, HOOK_CREATED, STREAM_WRITTEN}
)
INPUTS = frozenset(
    {STEP_COMPLETED, STEP_FAILED, SLEEP_FIRED, WAIT_TIMED_OUT, EVENT_RECEIVED, CHILD_FINISHED}
)
FINAL_KINDS = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_TERMINATED})

# The command kind each workflow call records, for the non-determinism check.
CALL_KINDS = {
    "step": STEP_STARTED,
    "sleep": SLEEP_STARTED,
    "wait": WAIT_STARTED,
    "child": CHILD_STARTED,
    "hook": HOOK_CREATED,
    "write": STREAM_WRITTEN,
}


def creation_data(fields: dict[str, Any], trace_context: Mapping[str, str] | None) -> bytes | None:
    """The data of a `run_created` entry: `fields` (a schedule tick) and the trace context
    the run joins; None if there is neither."""
    if trace_context:
        fields = {**fields, TRACE_CONTEXT_KEY: dict(trace_context)}
    return dumps(fields) if fields else None


def decode_data(row: EventRow) -> Any:
    """The JSON value of an entry's `data` (None if empty)."""
    return None if row.data is None else loads(row.data)


def to_run_event(row: EventRow) -> RunEvent:
    """The public form of a log entry."""
    at = to_datetime(row.at)
    assert at is not None
    return RunEvent(
        index=row.idx,
        kind=row.kind,
        at=at,
        generation=row.generation,
        seq=row.seq,
        name=row.name,
        data=decode_data(row),
    )


def restart_cut(events: list[EventRow], from_step: str | None) -> int | None:
    """The seq a restart re-runs from: 0 for the beginning, else the first step named
    `from_step`; None if there is no such step."""
    if from_step is None:
        return 0
    seqs = [e.seq for e in events if e.kind == STEP_STARTED and e.name == from_step]
    return min((s for s in seqs if s is not None), default=None)


def kept_by_restart(events: list[EventRow], cut: int) -> list[EventRow]:
    """What a new generation inherits: every entry of a call before `cut`, and every
    event received (events stay buffered for the new execution)."""
    return [e for e in events if e.kind == EVENT_RECEIVED or (e.seq is not None and e.seq < cut)]


def restart_record(
    events: list[EventRow], generation: int, from_step: str | None
) -> tuple[int, bytes, list[EventRow]] | None:
    """What restarting a run from `from_step` (None: the beginning) writes, given the log
    of its current generation `generation`: the seq it re-runs from, the data of its
    `run_restarted` entry, and the entries the new generation inherits; None if it has
    no step named `from_step`."""
    cut = restart_cut(events, from_step)
    if cut is None:
        return None
    restarted = {"from_step": from_step, "from_seq": cut, "previous": generation}
    return cut, dumps(restarted), kept_by_restart(events, cut)


def to_run_info(
    row: RunRow,
    steps: tuple[StepRecord, ...],
    steps_done: int | None = None,
    streams: Iterable[str] = (),
) -> RunInfo:
    """The public snapshot of a run's summary row (and its folded steps, of which
    `steps_done` completed: counted from `steps` if not given)."""
    created = to_datetime(row.created_at)
    assert created is not None
    return RunInfo(
        id=row.id,
        workflow=row.workflow,
        status=STATUS_OF[row.status],
        args=loads(row.args),
        result=None if row.result is None else loads(row.result),
        error=None if row.error is None else ErrorInfo.from_json(loads(row.error)),
        metadata=None if row.metadata is None else loads(row.metadata),
        created_at=created,
        started_at=to_datetime(row.started_at),
        completed_at=to_datetime(row.completed_at),
        steps=steps,
        parent_id=row.parent_id,
        generation=row.generation,
        deadline_at=to_datetime(row.deadline_at),
        steps_done=(
            sum(step.status == "completed" for step in steps) if steps_done is None else steps_done
        ),
        streams=tuple(streams),
    )


def fold_steps(events: list[EventRow], generation: int) -> tuple[StepRecord, ...]:
    """The steps of one generation of a run, in `seq` order."""
    steps: dict[int, dict[str, Any]] = {}
    for row in events:
        if row.generation != generation or row.seq is None:
            continue
        if row.kind == STEP_STARTED:
            data = decode_data(row)
            step = steps.setdefault(
                row.seq,
                {
                    "name": row.name,
                    "result": None,
                    "error": None,
                    "started_at": row.at,
                    "completed_at": None,
                },
            )
            step.update(status="running", attempts=data["attempt"])
        elif row.kind in (STEP_RETRYING, STEP_FAILED) and row.seq in steps:
            data = decode_data(row)
            steps[row.seq].update(
                status="retrying" if row.kind == STEP_RETRYING else "failed",
                error=ErrorInfo.from_json(data["error"]),
                completed_at=row.at if row.kind == STEP_FAILED else None,
            )
        elif row.kind == STEP_COMPLETED and row.seq in steps:
            steps[row.seq].update(status="completed", result=decode_data(row), completed_at=row.at)
    return tuple(
        StepRecord(
            seq=seq,
            name=s["name"],
            status=s["status"],
            attempts=s["attempts"],
            result=s["result"],
            error=s["error"],
            started_at=to_datetime(s["started_at"]),
            completed_at=to_datetime(s["completed_at"]),
        )
        for seq, s in sorted(steps.items())
    )
