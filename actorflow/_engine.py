"""Engine: the store, the workflow registry, the directory of live run actors, and routing.

Every message for a run goes through `deliver()`, which hands it to the run's
live actor or creates one that rehydrates the run from its log. The engine
owns every task it creates: actors (through the directory), the timer
service and the store's writer; `close()` cancels and awaits them all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from asyncio.events import _get_running_loop
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

from ._actor import RunActor
from ._channels import Hub
from ._context import HOOK_PREFIX, _engine, check_event_type
from ._definitions import WorkflowFunction, lookup_workflow
from ._durations import Duration, to_seconds
from ._errors import (
    EngineClosedError,
    HookNotFoundError,
    RunAlreadyExistsError,
    WorkflowNotRegisteredError,
    WorkflowSandboxError,
)
from ._ids import check_run_id, new_run_id
from ._limiter import ConcurrencyLimiter
from ._loader import RunLoader
from ._log import RUN_CREATED
from ._messages import SLOT_GRANTED, WAKE, ChildDone, Control, ControlAction, Deliver, reply_to
from ._models import RunStatus
from ._queries import RunQueries
from ._results import ResultWaiters
from ._run import Run
from ._sandbox import WorkflowLoop
from ._serde import encode
from ._store import ChunkRow, EventRow, RunRow, Store, WriteBatch, open_store, shielded
from ._timers import TimerEntry, TimerService
from ._write_failures import WriteFailures

log = logging.getLogger("actorflow.engine")

R = TypeVar("R")
DEFAULT_URL = "sqlite:///actorflow.db"
MAX_PAYLOAD = 512 * 1024 * 1024


class Engine(RunQueries):
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
    ) -> None:
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        if idle_timeout is not None and not (idle_timeout >= 0 and math.isfinite(idle_timeout)):
            raise ValueError(f"idle_timeout must be >= 0 seconds or None, got {idle_timeout!r}")
        if not (wake_ahead >= 0 and math.isfinite(wake_ahead)):
            raise ValueError(f"wake_ahead must be >= 0 seconds, got {wake_ahead!r}")
        if not isinstance(max_stream_bytes, int) or max_stream_bytes <= 0:
            raise ValueError(f"max_stream_bytes must be a positive int, got {max_stream_bytes!r}")
        if not isinstance(max_payload_bytes, int) or not 0 < max_payload_bytes <= MAX_PAYLOAD:
            raise ValueError(
                f"max_payload_bytes must be a positive int of at most {MAX_PAYLOAD:,} "
                f"(SQLite stores at most 1 GB per value), got {max_payload_bytes!r}"
            )
        self.url = url
        self.store: Store = open_store(url)
        self.idle_timeout = idle_timeout
        self.wake_ahead = wake_ahead
        self.max_stream_bytes = max_stream_bytes
        self.max_payload_bytes = max_payload_bytes
        self._workflows: dict[str, WorkflowFunction[Any, Any]] | None = None
        if workflows is not None:
            self._workflows = {}
            for wf in workflows:
                if not isinstance(wf, WorkflowFunction):
                    raise TypeError(f"workflows must be @af.workflow functions, got {wf!r}")
                self._workflows[wf.name] = wf
        self.limiter = ConcurrencyLimiter(max_concurrency, self._grant)
        self.timers = TimerService(self._wake)
        self.loader = RunLoader(self.store)
        self.event_hub: Hub[EventRow] = Hub()
        self.chunk_hub: Hub[ChunkRow] = Hub()
        self.hooks: dict[str, str] = {}
        self.loop: asyncio.AbstractEventLoop
        self._actors: dict[str, RunActor] = {}
        self._parked: dict[str, TimerEntry] = {}
        self._dying: set[asyncio.Task[Any]] = set()
        self._results = ResultWaiters()
        self._write_failures = WriteFailures(self.store, self._actors, self._rehydrate_at)
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._context_token: Any = None

    # -- opening and closing ---------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and recover every unfinished run."""
        if self._state != "new":
            raise EngineClosedError("an Engine can be opened once")
        self.loop = asyncio.get_running_loop()
        await self.store.open()
        self._state = "open"
        try:
            self.store.set_commit_listener(self._on_commit)
            self.store.set_failure_listener(self._write_failures.failed)
            self.timers.start()
            self.hooks = {h.token: h.run_id for h in await self.store.load_hooks()}
            await self._recover()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop every run actor (runs resume on the next open), then close the store."""
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        tasks = [a.task for a in self._actors.values() if a.task is not None]
        for actor in list(self._actors.values()):
            actor.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._dying, return_exceptions=True)
        await self.timers.stop()
        await self.loader.stop()
        closed = EngineClosedError("the engine was closed")
        self._results.fail_all(closed)
        self.event_hub.fail_all(closed)
        self.chunk_hub.fail_all(closed)
        await self.store.close()
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
        if type(_get_running_loop()) is WorkflowLoop:
            raise WorkflowSandboxError(
                "Engine methods cannot be called from workflow code: use af.start(), "
                "or call the engine from a step"
            )

    async def _recover(self) -> None:
        """Bring back every unfinished run: rehydrate what can make progress, park the rest."""
        for row in await self.store.unfinished_runs():
            if row.status in (RunStatus.PAUSED, RunStatus.WAITING):
                # Parked like an evicted run: its timer (sleep, timeout, deadline) wakes it.
                if row.wake_at is not None:
                    self._park(row.id, row.wake_at)
                continue
            self._ensure_actor(row.id)
        for child in await self.store.finished_children_of_unfinished_parents():
            assert child.parent_id is not None
            self._deliver(
                child.parent_id, ChildDone(child.id, child.status, child.result, child.error)
            )

    # -- workflows -------------------------------------------------------------------------

    def _workflow(self, name: str) -> WorkflowFunction[Any, Any] | None:
        """The workflow this engine runs under `name`, if any."""
        registry = self._workflows
        wf = registry.get(name) if registry is not None else lookup_workflow(name)
        if wf is not None and wf.concurrency is not None:
            self.limiter.set_limit(name, wf.concurrency)
        return wf

    def _resolve_workflow(self, workflow: Any) -> WorkflowFunction[Any, Any]:
        """The workflow meant by a decorated function or a name; raises if unknown."""
        if isinstance(workflow, WorkflowFunction):
            name = workflow.name
        elif isinstance(workflow, str):
            name = workflow
        else:
            raise TypeError(
                f"workflow must be an @af.workflow function or its name, got {workflow!r}"
            )
        wf = self._workflow(name)
        if wf is None:
            raise WorkflowNotRegisteredError(f"no workflow named {name!r} is registered")
        return wf

    # -- starting runs ---------------------------------------------------------------------

    async def start(
        self,
        workflow: WorkflowFunction[Any, R] | str,
        *args: Any,
        id: str | None = None,
        if_exists: Literal["return", "error"] = "return",
        metadata: Any = None,
        deadline: Duration | None = None,
    ) -> Run[R]:
        """Record a new run and return its handle once the record is durable.

        With an `id` that already exists, `if_exists="return"` returns the
        existing run and `"error"` raises `RunAlreadyExistsError`. `deadline`
        (a duration) overrides the workflow's own.
        """
        self._check_open()
        wf = self._resolve_workflow(workflow)
        wf.check_args(args)
        if if_exists not in ("return", "error"):
            raise ValueError(f"if_exists must be 'return' or 'error', got {if_exists!r}")
        run_id = new_run_id() if id is None else check_run_id(id)
        limit = self.max_payload_bytes
        args_data = encode(list(args), "args", limit)
        meta = None if metadata is None else encode(metadata, "metadata", limit)
        seconds = wf.deadline if deadline is None else to_seconds(deadline, "deadline")
        batch = self.store.batch()
        if self._create(batch, wf, run_id, args_data, meta, seconds, unique=id is None):
            await shielded(self.store.commit())
            if run_id not in batch.conflicts:
                return Run(self, run_id)
        if if_exists == "error":
            raise RunAlreadyExistsError(f"a run with id {run_id!r} already exists")
        return Run(self, run_id)

    async def start_many(
        self,
        workflow: WorkflowFunction[Any, R] | str,
        inputs: Iterable[tuple[Any, ...] | list[Any]],
        *,
        ids: Iterable[str] | None = None,
        metadata: Any = None,
        deadline: Duration | None = None,
    ) -> list[Run[R]]:
        """Record one new run per entry of `inputs` (each a tuple or list of the
        workflow's positional arguments); return their handles, in order, once
        all the records are durable.

        All or nothing: every input is checked before anything is recorded (a
        bad one raises naming its index), and the records commit in one
        transaction. `ids`, one per input, makes the call idempotent: a run
        whose id exists already is returned as it is (its input is not used).
        Cheaper than as many `start()` calls: one commit wait, no task per run.
        """
        self._check_open()
        wf = self._resolve_workflow(workflow)
        encoded = []
        for i, args in enumerate(inputs):
            if not isinstance(args, (tuple, list)):
                raise TypeError(
                    f"start_many inputs must be tuples or lists of arguments, "
                    f"got {type(args).__name__} at index {i}"
                )
            wf.check_args(args, f"inputs[{i}]: ")
            encoded.append(encode(list(args), f"inputs[{i}]", self.max_payload_bytes))
        meta = None if metadata is None else encode(metadata, "metadata", self.max_payload_bytes)
        seconds = wf.deadline if deadline is None else to_seconds(deadline, "deadline")
        chosen = None if ids is None else [check_run_id(run_id) for run_id in ids]
        if chosen is not None:
            if len(chosen) != len(encoded):
                raise ValueError(f"start_many got {len(chosen)} ids for {len(encoded)} inputs")
            if len(set(chosen)) != len(chosen):
                raise ValueError("start_many ids must be distinct")
        batch = self.store.batch()
        runs: list[Run[R]] = []
        for i, args_data in enumerate(encoded):
            run_id = new_run_id() if chosen is None else chosen[i]
            self._create(batch, wf, run_id, args_data, meta, seconds, unique=chosen is None)
            runs.append(Run(self, run_id))
        if runs:
            await shielded(self.store.commit())
        return runs

    def _create(
        self,
        batch: WriteBatch,
        wf: WorkflowFunction[Any, Any],
        run_id: str,
        args_data: bytes,
        meta: bytes | None,
        deadline: float | None,
        unique: bool,
    ) -> bool:
        """Add a new run's row and first event to `batch` and start its actor. False, with
        nothing added, when an actor holds a run with this id already."""
        existing = self._actors.get(run_id)
        if existing is not None and existing.loaded:
            return False
        now = time.time()
        row = RunRow(
            run_id,
            wf.name,
            RunStatus.QUEUED._value_,
            args_data,
            now,
            metadata=meta,
            deadline_at=None if deadline is None else now + deadline,
        )
        created = EventRow(run_id, 0, 0, RUN_CREATED, None, wf.name, None, now)
        batch.create_run(row, [created], unique=unique)
        self._spawn(row, batch, unique=unique)
        return True

    def _spawn(self, row: RunRow, batch: WriteBatch, unique: bool = False) -> None:
        """Start an actor for a run whose creation is in `batch`.

        The actor waits for that commit before it runs the workflow, unless the id is
        `unique` (generated here, so it cannot conflict): then it starts at once, and
        its steps start only after the creation is committed.
        """
        existing = self._actors.get(row.id)
        if self._state != "open" or (existing is not None and existing.loaded):
            return
        actor = self._actors[row.id] = RunActor(self, row.id, row, batch, unique)
        actor.start()
        if existing is not None:
            existing.superseded = True

    def get_run(self, run_id: str) -> Run[Any]:
        """A handle for `run_id`; nothing is checked until it is used (see `Run.exists`)."""
        return Run(self, check_run_id(run_id))

    # -- routing ---------------------------------------------------------------------------

    def _deliver(self, run_id: str, message: Any) -> None:
        """Put `message` in the run's mailbox, rehydrating the run if it is not in memory.

        While the engine closes, messages are refused: actors started now would outlive
        `close()`; the runs continue on the next open.
        """
        if self._state != "open":
            reply_to(getattr(message, "reply", None), error=EngineClosedError("engine closed"))
            return
        self._ensure_actor(run_id).post(message)

    def _ensure_actor(self, run_id: str) -> RunActor:
        actor = self._actors.get(run_id)
        if actor is None:
            actor = self._actors[run_id] = RunActor(self, run_id)
            actor.start()
        return actor

    def _actor_exited(self, actor: RunActor) -> None:
        if self._actors.get(actor.run_id) is actor:
            del self._actors[actor.run_id]
        if actor.superseded and self._state == "open":
            for message in actor.mailbox.take_all():
                self._deliver(actor.run_id, message)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        """Own a cancelled step task until it has ended; `close()` awaits stragglers."""
        if not task.done():
            self._dying.add(task)
            task.add_done_callback(self._dying.discard)

    def live_actors(self) -> int:
        """How many runs are in memory now."""
        return len(self._actors)

    def _wake(self, run_id: str) -> None:
        self._parked.pop(run_id, None)
        self._deliver(run_id, WAKE)

    def _grant(self, run_id: str) -> None:
        self._deliver(run_id, SLOT_GRANTED)

    def _park(self, run_id: str, wake_at: float) -> None:
        """Rehydrate a run that is not in memory shortly before its next timer is due.

        Waking ahead spreads the rehydrations of many timers due at once over the
        seconds before them, so that each fires in a live actor, on time. The
        default (2 s) keeps the rehydrations of a one-second burst out of the
        second its timers fire in: with 10,000 timers in a second, rehydrating,
        firing and finishing them at once takes the whole core here, and p99
        lateness was 45-80 ms with 1 s ahead, 2-7 ms with 2 s (`benchmarks`'
        `waiting` workload).
        """
        self._rehydrate_at(run_id, wake_at - self.wake_ahead)

    def _rehydrate_at(self, run_id: str, when: float) -> None:
        """Bring the run back into memory at `when` (a time.time() value), if nothing
        (a message, `start`) brings it back sooner."""
        self._unpark_timer(run_id)
        self._parked[run_id] = self.timers.schedule(when, run_id)

    def _unpark_timer(self, run_id: str) -> None:
        entry = self._parked.pop(run_id, None)
        if entry is not None:
            entry.cancel()

    def _drop_hooks(self, run_id: str) -> None:
        """Release the hook tokens of a finished run."""
        for token in [t for t, owner in self.hooks.items() if owner == run_id]:
            del self.hooks[token]
        self.store.batch().hook_deletes.append(run_id)

    # -- after commits ---------------------------------------------------------------------

    def _on_commit(self, batch: WriteBatch) -> None:
        hub = self.event_hub
        if hub:
            for run, events in batch.new_runs:
                if run.id not in batch.conflicts:
                    for event in events:
                        if hub.has(event.run_id):
                            hub.publish(event.run_id, event)
            for event in batch.events:
                if hub.has(event.run_id):
                    hub.publish(event.run_id, event)
        chunks = self.chunk_hub
        if chunks:
            for chunk in batch.chunks:
                key = (chunk.run_id, chunk.namespace)
                if chunks.has(key):
                    chunks.publish(key, chunk)

    def _outcome_loaded(self, row: RunRow) -> None:
        """An actor found its run final in the store: answer the `result()` callers."""
        self._results.finished(row)

    def _run_finished(self, row: RunRow) -> None:
        """Called by an actor once its run's final status is committed."""
        self._results.finished(row)
        if row.parent_id is not None:
            self._deliver(row.parent_id, ChildDone(row.id, row.status, row.result, row.error))
        for key in self.chunk_hub.subscribed_keys():
            if isinstance(key, tuple) and key[0] == row.id:
                self.chunk_hub.end(key)

    # -- what run handles send ------------------------------------------------------------

    async def _control(
        self, run_id: str, action: ControlAction, from_step: str | None = None
    ) -> None:
        """Send a pause/resume/terminate/restart to the run and wait until it is committed."""
        self._check_open()
        reply: asyncio.Future[None] = self.loop.create_future()
        self._deliver(run_id, Control(action, reply, from_step))
        await reply

    async def send_event(self, run_id: str, type: str, payload: Any = None) -> None:
        """Durably deliver an event to the run (buffered until it waits for that type)."""
        self._check_open()
        key = check_event_type(type)
        data = encode(payload, "event payload", self.max_payload_bytes)
        reply: asyncio.Future[None] = self.loop.create_future()
        self._deliver(run_id, Deliver(key, data, reply))
        await reply

    async def resume_hook(self, token: str, payload: Any = None) -> None:
        """Send `payload` to the run holding hook `token`; raises `HookNotFoundError` if none."""
        self._check_open()
        if not isinstance(token, str) or not token:
            raise ValueError(f"hook token must be a non-empty str, got {token!r}")
        data = encode(payload, "hook payload", self.max_payload_bytes)
        run_id = self.hooks.get(token)
        if run_id is None:
            raise HookNotFoundError(f"no unfinished run holds hook {token!r}")
        reply: asyncio.Future[None] = self.loop.create_future()
        self._deliver(run_id, Deliver(HOOK_PREFIX + token, data, reply))
        await reply
