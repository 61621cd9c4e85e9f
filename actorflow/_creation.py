"""Creating a run: its row and first event added to a write batch, and its actor.

Every `Engine.start` (through `record_run`), `start_many` and schedule tick goes
through `create_run`. Compiled with the hot path, where the engine's public
methods stay interpreted: what a start does besides waiting for its commit is here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from . import _observe
from ._definitions import WorkflowFunction
from ._directory import RunDirectory
from ._durations import Duration, to_seconds
from ._ids import check_new_run_id, new_run_id
from ._log import RUN_CREATED, creation_data
from ._models import ScheduleTick
from ._observe import check_trace_context
from ._schedule_types import tick_fields
from ._serde import encode
from ._store import RunRow, WriteBatch
from ._store._base import as_event

_now: Final = time.time  # a C static in a compiled build, where `time.time` is looked up


def record_run(
    runs: RunDirectory,
    wf: WorkflowFunction[Any, Any],
    args: tuple[Any, ...],
    chosen_id: str | None,
    metadata: Any,
    deadline: Duration | None,
    trace_context: Mapping[str, str] | None,
) -> tuple[str, WriteBatch | None]:
    """`Engine.start` up to its commit: check and encode what it was given and add the
    run to the store's open batch. The run's id, and that batch (None, with nothing
    added, when an actor holds a run with this id already). Raises what `Engine.start`
    documents for bad arguments, id, metadata, deadline or trace context."""
    wf.check_args(args)
    run_id = new_run_id() if chosen_id is None else check_new_run_id(chosen_id)
    limit = runs.max_payload_bytes
    args_data = encode(list(args), "args", limit, wf)
    meta = None if metadata is None else encode(metadata, "metadata", limit)
    seconds = wf.deadline if deadline is None else to_seconds(deadline, "deadline")
    given = None if trace_context is None else check_trace_context(trace_context)
    batch = runs.store.batch()
    row = create_run(
        runs, batch, wf, run_id, args_data, meta, seconds, chosen_id is None, None, given
    )
    return run_id, None if row is None else batch


def create_run(
    runs: RunDirectory,
    batch: WriteBatch,
    wf: WorkflowFunction[Any, Any],
    run_id: str,
    args_data: bytes,
    meta: bytes | None,
    deadline: float | None,
    unique: bool,
    schedule: ScheduleTick | None = None,
    trace_context: Mapping[str, str] | None = None,
    spawn: bool = True,
) -> RunRow | None:
    """Add a new run's row and first event to `batch` and start its actor (unless not
    `spawn`: the scheduler records an instant's runs first, then starts them); the row,
    or None, with nothing added, when an actor holds a run with this id already. A
    run started by a `schedule` tick keeps it in its first event, and so does the
    `trace_context` the run joins (given, or the observer's)."""
    if runs.holds(run_id):
        return None
    now = _now()
    deadline_at = None if deadline is None else now + deadline
    row = RunRow.queued(run_id, wf.name, args_data, now, meta, None, deadline_at)
    observer = _observe.current
    if observer is not None:
        trace_context = observer.run_creating(row, trace_context)
    data = None  # most runs: no call here (this is on every start's path)
    if schedule is not None or trace_context:
        fields = {} if schedule is None else tick_fields(schedule)
        data = creation_data(fields, trace_context)
    created = as_event((run_id, 0, 0, RUN_CREATED, None, wf.name, data, now))
    batch.create_run(row, [created], unique=unique)
    if spawn:
        runs.spawn(row, batch, unique=unique, schedule=schedule)
    return row
