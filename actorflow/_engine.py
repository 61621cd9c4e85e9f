"""Engine: the public entry point. Opens the store, creates runs, hands out run handles.

`start()` adds a run's row to the store's open batch and hands the run to the
`RunDirectory` (`_directory.py`), which starts its actor (`_actor/`); the actor
runs the workflow and journals into the same store. Run handles (`Run`) talk
to the engine through its `LocalRunClient`. The engine owns every task it
creates: actors (through the directory), the timer service and the store's
writer; `close()` cancels and awaits them all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar, overload

from ._asyncio_helpers import shielded
from ._cluster import check_cluster_options
from ._context import _engine
from ._creation import create_run, record_run
from ._definitions import WorkflowFunction, registered_workflows
from ._directory import RunDirectory
from ._durations import Duration, to_seconds
from ._engine_options import check_options
from ._errors import (
    EngineClosedError,
    RunAlreadyExistsError,
    WorkflowSandboxError,
)
from ._ids import check_new_run_id, check_run_id, new_run_id
from ._local_client import LocalRunClient
from ._log import to_run_info
from ._models import STATUS_OF, RunInfo, RunStatus, status_texts
from ._observe import check_trace_context
from ._retention import RetentionSweeper, purge, purge_filter
from ._run import Run
from ._sandbox import running_workflow_loop
from ._schedule_api import EngineSchedules, Schedule
from ._schedule_types import Catchup, Overlap, ScheduleInfo
from ._serde import encode
from ._store import CommitStats, SharedStore, Store, open_store

log = logging.getLogger("actorflow.engine")

R = TypeVar("R")
DEFAULT_URL = "sqlite:///actorflow.db"


class Engine:
    """Runs workflows durably; open it with `async with af.Engine(url) as engine:`.

    - `url`: `sqlite:///path.db` (default `sqlite:///actorflow.db`) or `memory://`.
    - `workflows`: the workflows this engine runs; None means every `@af.workflow`.
    - `max_concurrency`: cap on `running` runs across all workflows.
    - `idle_timeout`: seconds a `waiting`/`paused` run stays in memory before it
      is evicted (and later rehydrated from its log); None keeps runs in memory.
    - `wake_ahead`: seconds before its next timer that an evicted run is brought
      back (and within which a run is not evicted), so timers fire in live actors.
      Longer than a burst of timers lasts, the burst's rehydrations end before its
      first timer fires (see `_park`).
    - `max_stream_bytes`: cap on the total size of one run's stream chunks.
    - `max_payload_bytes`: cap on each stored value as JSON (arguments, metadata,
      results, event payloads); a larger one raises `SerializationError` where it
      enters, and a step's result fails the step.
    - `close_timeout`: the most `close()` waits for cancelled steps and actors to
      end; one that has not (it catches `CancelledError`) is abandoned with a
      warning naming its run and step.
    - `retention`: delete finished runs (with their events and streams) that long
      after they finished, in the background; a workflow's own `retention=`
      overrides it. None (the default) keeps them (see `purge`).
    - PostgreSQL, shared by many engines (README, "Scaling out"): `execute=False`
      makes a client (it runs nothing); `lease_timeout`: seconds after its last
      heartbeat an engine loses its runs; `max_runs`: cap on the unfinished runs
      it owns (the rest wait `queued`). Both raise `ValueError` on other stores.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        workflows: Iterable[WorkflowFunction[Any, Any]] | None = None,
        max_concurrency: int | None = None,
        idle_timeout: float | None = 60.0,
        wake_ahead: float = 2.0,
        max_stream_bytes: int = 64 * 1024 * 1024,
        max_payload_bytes: int = 64 * 1024 * 1024,
        retention: Duration | None = None,
        close_timeout: float = 5.0,
        execute: bool = True,
        lease_timeout: float = 5.0,
        max_runs: int | None = None,
    ) -> None:
        check_options(
            max_concurrency, idle_timeout, wake_ahead, max_stream_bytes, max_payload_bytes,
            close_timeout,
        )  # fmt: skip
        self.url = url
        self.store: Store = open_store(url)
        check_cluster_options(isinstance(self.store, SharedStore), execute, lease_timeout, max_runs)
        self.execute = execute
        self.lease_timeout = lease_timeout
        self.idle_timeout = idle_timeout
        self.wake_ahead = wake_ahead
        self.max_stream_bytes = max_stream_bytes
        self.max_payload_bytes = max_payload_bytes
        self.close_timeout = close_timeout
        self._workflows: dict[str, WorkflowFunction[Any, Any]] | None = None
        if workflows is not None:
            self._workflows = {}
            for wf in workflows:
                if not isinstance(wf, WorkflowFunction):
                    raise TypeError(f"workflows must be @af.workflow functions, got {wf!r}")
                self._workflows[wf.name] = wf
        self._runs: RunDirectory = RunDirectory(
            self,
            self.store,
            self._workflows,
            max_concurrency,
            idle_timeout,
            wake_ahead,
            max_stream_bytes,
            max_payload_bytes,
        )
        self._runs.max_runs = max_runs
        self._client = LocalRunClient(self._runs, self._check_open)
        self._runs.client = self._client
        self._schedules = EngineSchedules(self, self._runs)
        self.schedules = self._runs.scheduler = self._schedules.scheduler
        keep = None if retention is None else to_seconds(retention, "retention")
        self._retention = RetentionSweeper(self.store, keep, self.workflows, self._runs.purging)
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._context_token: Any = None

    # -- opening and closing ---------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and recover every unfinished run.

        Raises `EngineClosedError` if opened before, `StoreLockedError` if another
        engine has the SQLite file open, `StoreFileError` if it cannot be an
        actorflow database."""
        if self._state != "new":
            raise EngineClosedError("an Engine can be opened once")
        runs = self._runs
        runs.loop = asyncio.get_running_loop()
        await self.store.open()
        self._state = "open"
        runs.open()
        try:
            self.store.set_commit_listener(runs.on_commit)
            self.store.set_failure_listener(runs.write_failures.failed)
            runs.timers.start()
            self._retention.start()
            runs.hooks.update({h.token: h.run_id for h in await self.store.load_hooks()})
            if isinstance(self.store, SharedStore):
                runs.cluster = self.store.join_cluster(self.lease_timeout, self.execute)
            await runs.recover()
            await self.schedules.open()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop every run actor (runs resume on the next open), then close the store."""
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        await self.schedules.close()
        await self._runs.stop(self.close_timeout)
        await self._retention.stop()
        await self.store.close()
        if self._runs.cluster is not None:
            await self._runs.cluster.close()  # this engine's runs go to the others at once
        self._state = "closed"

    async def __aenter__(self) -> Engine:
        await self.open()
        self._context_token = _engine.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        _engine.reset(self._context_token)
        await self.close()

    def _check_open(self) -> None:
        """Every public call's first check: the engine is open, and the caller is not
        workflow code (whose calls must be journaled: what it did here would happen
        again on every replay)."""
        if self._state != "open":
            raise EngineClosedError(f"the engine is {self._state}; use `async with af.Engine()`")
        if running_workflow_loop() is not None:
            raise WorkflowSandboxError(
                "Engine methods cannot be called from workflow code: use af.start(), "
                "or call the engine from a step"
            )

    # -- retention -------------------------------------------------------------------------

    async def purge(
        self,
        before: datetime,
        *,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        workflow: WorkflowFunction[Any, Any] | str | None = None,
    ) -> int:
        """Delete finished runs that finished before `before` (an aware datetime), with
        their events, streams and hooks; how many runs were deleted.

        `status` limits it to some final statuses, `workflow` to one workflow. Runs
        still referenced are kept: a finished child of an unfinished parent, a finished
        parent of an unfinished child. Deletes in short batches, so commits go on.
        Raises `ValueError` for a status that is not final."""
        self._check_open()
        name = workflow.name if isinstance(workflow, WorkflowFunction) else workflow
        return await purge(self.store, purge_filter(before, status, name), self._runs.purging)

    # -- starting runs ---------------------------------------------------------------------

    async def start(
        self,
        workflow: WorkflowFunction[Any, R] | str,
        *args: Any,
        id: str | None = None,
        if_exists: Literal["return", "error"] = "return",
        metadata: Any = None,
        deadline: Duration | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> Run[R]:
        """Record a new run and return its handle once the record is durable.

        With an `id` that already exists, `if_exists="return"` returns the
        existing run and `"error"` raises `RunAlreadyExistsError`; so does an id
        of a run of another workflow, whatever `if_exists` says. `deadline`
        (a duration) overrides the workflow's own. A chosen `id` that is not a
        printable str of 1 to 255 characters, or that holds `~` (reserved for
        child runs), raises `InvalidNameError`. `trace_context` (a W3C carrier,
        `{"traceparent": ...}`) is the trace the run's spans join when
        `actorflow.otel` is instrumented (default: the caller's current span);
        `TypeError` if it is not a mapping of str to str.
        """
        self._check_open()
        wf = self._runs.resolve_workflow(workflow)
        if if_exists not in ("return", "error"):
            raise ValueError(f"if_exists must be 'return' or 'error', got {if_exists!r}")
        run_id, batch = record_run(self._runs, wf, args, id, metadata, deadline, trace_context)
        if batch is not None:
            await shielded(self.store.commit())
            if run_id not in batch.conflicts:
                return Run(self._client, run_id, wf.decode_result)
        await self._client.check_workflow_of([run_id], wf.name)
        if if_exists == "error":
            raise RunAlreadyExistsError(f"a run with id {run_id!r} already exists")
        return Run(self._client, run_id, wf.decode_result)

    async def start_many(
        self,
        workflow: WorkflowFunction[Any, R] | str,
        inputs: Iterable[tuple[Any, ...] | list[Any]],
        *,
        ids: Iterable[str] | None = None,
        metadata: Any = None,
        deadline: Duration | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> list[Run[R]]:
        """Record one new run per entry of `inputs` (each a tuple or list of the
        workflow's positional arguments); return their handles, in order, once
        all the records are durable.

        All or nothing: every input is checked before anything is recorded (a
        bad one raises naming its index), and the records commit in one
        transaction. `ids`, one per input, makes the call idempotent: a run
        whose id exists already is returned as it is (its input is not used),
        unless it is a run of another workflow (`RunAlreadyExistsError`, raised
        once the others are recorded).
        Cheaper than as many `start()` calls: one commit wait, no task per run.
        `trace_context` is as for `start()`.
        """
        self._check_open()
        wf = self._runs.resolve_workflow(workflow)
        encoded = []
        for i, args in enumerate(inputs):
            if not isinstance(args, (tuple, list)):
                raise TypeError(
                    f"start_many inputs must be tuples or lists of arguments, "
                    f"got {type(args).__name__} at index {i}"
                )
            wf.check_args(args, f"inputs[{i}]: ")
            encoded.append(encode(list(args), f"inputs[{i}]", self.max_payload_bytes, wf))
        meta = None if metadata is None else encode(metadata, "metadata", self.max_payload_bytes)
        seconds = wf.deadline if deadline is None else to_seconds(deadline, "deadline")
        chosen = None if ids is None else [check_new_run_id(run_id) for run_id in ids]
        given = None if trace_context is None else check_trace_context(trace_context)
        if chosen is not None:
            if len(chosen) != len(encoded):
                raise ValueError(f"start_many got {len(chosen)} ids for {len(encoded)} inputs")
            if len(set(chosen)) != len(chosen):
                raise ValueError("start_many ids must be distinct")
        batch = self.store.batch()
        runs: list[Run[R]] = []
        existing = []
        for i, args_data in enumerate(encoded):
            run_id = new_run_id() if chosen is None else chosen[i]
            unique = chosen is None
            if not create_run(
                self._runs, batch, wf, run_id, args_data, meta, seconds, unique, None, given
            ):
                existing.append(run_id)
            runs.append(Run(self._client, run_id, wf.decode_result))
        if runs:
            await shielded(self.store.commit())
        await self._client.check_workflow_of([*existing, *batch.conflicts], wf.name)
        return runs

    @overload
    def get_run(self, run_id: str) -> Run[Any]: ...
    @overload
    def get_run(self, run_id: str, workflow: WorkflowFunction[Any, R]) -> Run[R]: ...

    def get_run(self, run_id: str, workflow: WorkflowFunction[Any, Any] | None = None) -> Run[Any]:
        """A handle for `run_id`; nothing is checked until it is used (see `Run.exists`).

        With the run's `workflow`, `result()` decodes into its return annotation.
        Raises `ValueError` for an id that is empty, too long or not printable."""
        decode = None if workflow is None else workflow.decode_result
        return Run(self._client, check_run_id(run_id), decode)

    async def list_runs(
        self,
        *,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        workflow: WorkflowFunction[Any, Any] | str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        after: str | None = None,
    ) -> list[RunInfo]:
        """Runs matching every filter, newest first. `steps` and `streams` are empty (use
        `Run.info()`); `steps_done` is not.

        `after` (the id of the last run of the previous page) pages by keyset: the
        runs listed after that one, unaffected by runs started meanwhile; none if no
        run has that id. Raises `ValueError` for an unknown status or negative limit/offset."""
        self._check_open()
        statuses = status_texts(status)
        name = workflow.name if isinstance(workflow, WorkflowFunction) else workflow
        if not isinstance(limit, int) or limit < 0 or not isinstance(offset, int) or offset < 0:
            raise ValueError("limit and offset must be non-negative ints")
        rows = await self.store.list_runs(
            statuses=statuses,
            workflow=name,
            parent_id=parent_id,
            limit=limit,
            offset=offset,
            after=after,
        )
        done = await self.store.steps_done([row.id for row in rows])
        return [to_run_info(row, (), done.get(row.id, 0)) for row in rows]

    async def count_runs(self) -> dict[str, dict[RunStatus, int]]:
        """How many runs each workflow has in the store, by status (statuses with no
        run are left out). Raises `EngineClosedError`."""
        self._check_open()
        counts = await self.store.count_runs()
        return {
            workflow: {STATUS_OF[status]: n for status, n in by_status.items()}
            for workflow, by_status in counts.items()
        }

    def workflows(self) -> list[WorkflowFunction[Any, Any]]:
        """The workflows this engine can start, by name: those given as `workflows=`,
        else every `@af.workflow` decorated in this process so far."""
        registry = self._workflows if self._workflows is not None else registered_workflows()
        return [registry[name] for name in sorted(registry)]

    def live_actors(self) -> int:
        """How many runs are in memory now."""
        return len(self._runs.actors)

    def live_readers(self) -> int:
        """How many `Run.events()` and `Run.stream()` readers are subscribed now (a
        reader's subscription ends when its iterator ends or is closed)."""
        return len(self._runs.event_hub) + len(self._runs.chunk_hub)

    def store_stats(self) -> CommitStats:
        """The store's group-commit counters since it opened (batches, rows, busy time)."""
        return self.store.commit_stats()

    # -- schedules (the engine's `EngineSchedules`) ------------------------------------------

    async def create_schedule(
        self,
        id: str,
        workflow: WorkflowFunction[Any, Any] | str,
        cron: str,
        *,
        args: Sequence[Any] = (),
        timezone: str = "UTC",
        overlap: Overlap = "skip",
        catchup: Catchup = "latest",
        paused: bool = False,
        metadata: Any = None,
    ) -> Schedule:
        """Create a schedule, or update the one with this `id` in place (see
        `EngineSchedules.create_schedule`). Raises `ScheduleError`, nothing stored, for
        a bad id, expression, zone, policy, workflow or argument, or a declared id."""
        return await self._schedules.create_schedule(
            id, workflow, cron, args=args, timezone=timezone, overlap=overlap,
            catchup=catchup, paused=paused, metadata=metadata,
        )  # fmt: skip

    def get_schedule(self, id: str) -> Schedule:
        """A handle for schedule `id`; nothing is checked until it is used."""
        return self._schedules.get_schedule(id)

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule, by id."""
        return await self._schedules.list_schedules()

    # -- what run handles send ------------------------------------------------------------

    async def send_event(self, run_id: str, type: str, payload: Any = None) -> None:
        """Durably deliver an event to the run (buffered until it waits for that type).

        Raises `RunNotFoundError`, `InvalidStateError` (the run is final), `ValueError`
        (a bad type), `SerializationError` (a bad payload), `EngineClosedError`."""
        await self._client.send_event(run_id, type, payload)

    async def resume_hook(self, token: str, payload: Any = None) -> None:
        """Send `payload` to the run holding hook `token`; raises `HookNotFoundError` if none."""
        await self._client.resume_hook(token, payload)
