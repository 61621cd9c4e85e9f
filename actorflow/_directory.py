"""RunDirectory: the engine's live run actors, and everything they ask of it (`RunHost`).

Every message for a run goes through `deliver()`, which hands it to the run's
live actor or creates one that rehydrates the run from its log. Runs that
leave memory with a timer pending are parked: a timer brings them back
shortly before it is due. The directory owns every actor task it starts (and
the cancelled step tasks it is handed, `reap`); `stop()` cancels and awaits them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Container, Iterable
from typing import TYPE_CHECKING, Any

from . import _observe
from ._actor import RunActor
from ._actor._runners import StepRunners
from ._channels import Hub
from ._cluster._inbox import control_row, event_row
from ._definitions import WorkflowFunction, workflow_registry
from ._dying import DyingTasks
from ._errors import (
    EngineClosedError,
    HookConflictError,
    RunNotFoundError,
    StoreWriteError,
    WorkflowNotRegisteredError,
)
from ._ids import TICK_SEPARATOR
from ._limiter import ConcurrencyLimiter
from ._loader import RunLoader
from ._messages import SLOT_GRANTED, WAKE, ChildDone, Control, Deliver, reply_to
from ._models import FINAL, STATUS_OF, RunStatus, ScheduleTick
from ._results import Outcome, ResultWaiters
from ._retention import RunsBeingPurged
from ._schedules import SCHEDULE_KEY, Scheduler
from ._store import ChunkRow, EventRow, RunRow, Store, WriteBatch
from ._timers import TimerEntry, TimerService
from ._write_failures import WriteFailures

if TYPE_CHECKING:
    from ._actor._state import RunState
    from ._client import RunClient
    from ._cluster._claims import Claimed
    from ._cluster._node import ClusterNode
    from ._context import RunStarter


class RunDirectory:
    """The live actors of one engine; implements `RunHost` for them."""

    def __init__(
        self,
        engine: RunStarter,
        store: Store,
        workflows: dict[str, WorkflowFunction[Any, Any]] | None,
        max_concurrency: int | None,
        idle_timeout: float | None,
        wake_ahead: float,
        max_stream_bytes: int,
        max_payload_bytes: int,
    ) -> None:
        self.engine = engine
        self.store = store
        self.idle_timeout = idle_timeout
        self.wake_ahead = wake_ahead
        self.max_stream_bytes = max_stream_bytes
        self.max_payload_bytes = max_payload_bytes
        self.client: RunClient  # set by the engine, which makes both
        self.loop: asyncio.AbstractEventLoop
        self.step_runners = StepRunners()  # on the engine's loop once `open`
        # `workflows=None`: every workflow decorated in this process, now or later (the
        # registry itself: a dict read per run, where a lookup function was a Python call).
        self._workflows = workflow_registry() if workflows is None else workflows
        self.limiter = ConcurrencyLimiter(max_concurrency, self._grant)
        self.timers = TimerService(self._wake)
        self.loader = RunLoader(store)
        self.event_hub: Hub[EventRow] = Hub()
        self.chunk_hub: Hub[ChunkRow] = Hub()
        self.hooks: dict[str, str] = {}
        # (run, token) -> the run on another engine holding the token when a commit
        # refused the run's taking of it (`_hooks_held_elsewhere`).
        self._hooks_refused: dict[tuple[str, str], str] = {}
        self.results = ResultWaiters()
        self.actors: dict[str, RunActor] = {}
        self.purging = RunsBeingPurged()
        self.write_failures = WriteFailures(store, self)
        # False until the engine opens, and again once it starts closing: actors started
        # then would outlive `stop()`; their runs continue on the next open.
        self.accepting = False
        self._parked: dict[str, TimerEntry] = {}
        # Set by the engine: told of its schedules' timers and of every finished run.
        self.scheduler: Scheduler | None = None
        self._dying = DyingTasks()
        # Set by the engine on a database shared by many engines: which runs are this
        # engine's, and the way to the others'.
        self.cluster: ClusterNode | None = None
        self.max_runs: int | None = None

    async def result_of(self, run_id: str, timeout: float | None) -> Any:
        """`Run.result()` of a run this engine answers for (compiled: every caller's path).

        Raises `RunNotFoundError`, `TimeoutError` after `timeout` seconds, and what the
        run's outcome raises (`Outcome.value`)."""
        results = self.results
        waiter = results.add(run_id, self.loop)
        try:
            actor = self.actors.get(run_id)
            row: RunRow | None
            if actor is not None and actor.loaded:
                row = actor.row if actor.notified else None
            else:
                row = await self.loader.row(run_id)
                if row is None:
                    raise RunNotFoundError(f"no run with id {run_id!r}")
            if row is not None and STATUS_OF[row.status].is_final:
                return Outcome.of(row).value()
            if timeout is None:
                return (await waiter).value()
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    return (await waiter).value()
            except TimeoutError:
                if not scope.expired():
                    raise
                raise TimeoutError(f"run {run_id!r} did not finish within {timeout} s") from None
        finally:
            results.discard(run_id, waiter)

    def open(self) -> None:
        """Accept runs from now on (and show them to gauges: `_observe.open_engines`)."""
        self.accepting = True
        self.step_runners.loop = self.loop
        _observe.open_engines.add(self)

    async def stop(self, timeout: float) -> None:
        """Stop every actor (their runs resume on the next open) and wait for their tasks
        and their cancelled steps, `timeout` seconds at most (see `DyingTasks`)."""
        self.accepting = False
        _observe.open_engines.discard(self)
        deadline = time.monotonic() + timeout
        tasks = [(a.task, f"the actor of run {a.run_id!r}") for a in self.actors.values() if a.task]
        for actor in list(self.actors.values()):
            actor.stop()
        # After the actors: a runner whose attempt an actor's stop cancelled is reaped.
        for runner in self.step_runners.close():
            self._dying.reap(runner, "a step runner")
        await self._dying.wait(deadline, tasks)
        await self.timers.stop()
        await self.loader.stop()
        closed = EngineClosedError("the engine was closed")
        self.results.fail_all(closed)
        self.event_hub.fail_all(closed)
        self.chunk_hub.fail_all(closed)

    def live_statuses(self) -> dict[str, int]:
        """How many runs in memory have each status (`_observe.LiveRuns`)."""
        return dict(Counter(actor.status._value_ for actor in self.actors.values()))

    def is_limited(self, workflow: str) -> bool:
        """Whether `workflow`'s runs may wait for a concurrency slot (`_observe.LiveRuns`)."""
        return self.limiter.is_limited(workflow)

    # -- workflows -------------------------------------------------------------------------

    def workflow(self, name: str) -> WorkflowFunction[Any, Any] | None:
        """The workflow this engine runs under `name`, if any."""
        wf = self._workflows.get(name)
        if wf is not None and wf.concurrency is not None:
            self.limiter.set_limit(name, wf.concurrency)
        return wf

    def resolve_workflow(self, workflow: Any) -> WorkflowFunction[Any, Any]:
        """The workflow meant by a decorated function or a name.

        Raises `WorkflowNotRegisteredError` if unknown, `TypeError` if neither."""
        if isinstance(workflow, WorkflowFunction):
            name = workflow.name
        elif isinstance(workflow, str):
            name = workflow
        else:
            raise TypeError(
                f"workflow must be an @af.workflow function or its name, got {workflow!r}"
            )
        wf = self.workflow(name)
        if wf is None:
            raise WorkflowNotRegisteredError(f"no workflow named {name!r} is registered")
        return wf

    # -- actors ----------------------------------------------------------------------------

    def holds(self, run_id: str) -> bool:
        """Whether a live actor has loaded run `run_id` (so creating it again conflicts)."""
        existing = self.actors.get(run_id)
        return existing is not None and existing.loaded

    def spawn(
        self,
        row: RunRow,
        batch: WriteBatch,
        unique: bool = False,
        schedule: ScheduleTick | None = None,
    ) -> None:
        """Start an actor for a run whose creation is in `batch`.

        The actor waits for that commit before it runs the workflow, unless the id is
        `unique` (generated here, so it cannot conflict): then it starts at once, and
        its steps start only after the creation is committed.
        """
        existing = self.actors.get(row.id)
        if not self.accepting or (existing is not None and existing.loaded):
            return
        cluster = self.cluster
        if cluster is not None:
            if not cluster.execute or self.room() == 0:
                batch.queued.add(row.id)  # for an engine with room, woken by NOTIFY
                return
            cluster.created(row.id)
        actor = self.actors[row.id] = RunActor(self, row.id, row, batch, unique, schedule)
        actor.start()
        if existing is not None:
            existing.superseded = True

    def deliver(self, run_id: str, message: Any) -> None:
        """Put `message` in the run's mailbox, rehydrating the run if it is not in memory.

        While the engine closes, messages are refused: actors started now would outlive
        `stop()`; the runs continue on the next open.
        """
        if not self.accepting:
            reply_to(getattr(message, "reply", None), error=EngineClosedError("engine closed"))
            return
        cluster = self.cluster
        if cluster is not None and run_id not in cluster.owned:
            self._route(run_id, message)
            return
        self.ensure_actor(run_id).post(message)

    def _route(self, run_id: str, message: Any) -> None:
        """A message for a run this engine does not own: events and control go to the
        owner through the inbox, in the open batch (so in the sender's transaction), and
        the caller hears once it is committed. Others are dropped: a child's outcome
        reaches a parent elsewhere through `commit_batch`, or its rehydration; a message
        taken from the inbox stays there for the run's new owner; timers and slots are
        the owner's."""
        if getattr(message, "inbox", None) is not None:
            return
        if isinstance(message, Deliver):
            row = event_row(run_id, message.key, message.data)
        elif isinstance(message, Control):
            row = control_row(run_id, message.action, message.from_step)
        else:
            return
        self.store.batch().inbox.append(row)
        committed = self.store.commit()
        reply = message.reply
        if reply is not None:
            committed.add_done_callback(
                lambda done: reply_to(reply, error=None if done.cancelled() else done.exception())
            )

    def ensure_actor(self, run_id: str) -> RunActor:
        """The run's live actor, started (to rehydrate the run) if there is none."""
        actor = self.actors.get(run_id)
        if actor is None:
            actor = self.actors[run_id] = RunActor(self, run_id)
            actor.start()
        return actor

    def actor_exited(self, actor: RunState) -> None:
        if self.actors.get(actor.run_id) is actor:
            del self.actors[actor.run_id]
        # Messages left are a superseded actor's, or those after one whose handling
        # crashed the actor: the run's next actor serves them.
        if self.accepting and actor.mailbox:
            for message in actor.mailbox.take_all():
                self.deliver(actor.run_id, message)

    def reap(self, task: asyncio.Task[Any], what: str) -> None:
        self._dying.reap(task, what)

    # -- what `WriteFailures` asks ---------------------------------------------------------

    def live_row(self, run_id: str) -> RunRow | None:
        """The row the run's live actor holds, if any."""
        actor = self.actors.get(run_id)
        return None if actor is None else actor.row

    def abandon(self, run_id: str, error: BaseException) -> None:
        """Drop the run's live actor, which writes nothing more (see `RunActor.abandon`)."""
        actor = self.actors.pop(run_id, None)
        if actor is not None:
            actor.abandon(error)

    # -- what the cluster node asks (`ClusterHost`) -----------------------------------------

    def room(self) -> int | None:
        """How many more runs this engine may own now (None: no limit)."""
        if self.max_runs is None or self.cluster is None:
            return None
        return max(0, self.max_runs - len(self.cluster.owned))

    async def recover(self) -> None:
        """At open: bring back every unfinished run (on a shared database: join the
        engines, claiming what is there to claim). Rehydrate what can make progress, park
        the rest; tell parents of children that finished meanwhile."""
        if self.cluster is not None:
            await self.cluster.open(self)
            return
        self.adopt(await self.store.unfinished_runs())
        for child in await self.store.finished_children_of_unfinished_parents():
            assert child.parent_id is not None
            self.deliver(
                child.parent_id, ChildDone(child.id, child.status, child.result, child.error)
            )

    def adopt(self, runs: Iterable[Claimed | RunRow]) -> None:
        """Runs recovered or just claimed: rehydrate those that can make progress, park
        the rest (like evicted runs) until their timers (sleep, timeout, deadline)."""
        for run in runs:
            if run.status in (RunStatus.PAUSED, RunStatus.WAITING):
                if run.wake_at is not None:
                    self.park(run.id, run.wake_at)
                continue
            self.ensure_actor(run.id)

    def drop(self, run_ids: Iterable[str], error: BaseException) -> None:
        """This engine no longer owns `run_ids`: their actors stop, writing nothing more,
        and their rows not yet written are dropped (the fence would refuse them)."""
        lost = set(run_ids)
        for run_id in lost:
            self.unpark(run_id)
            self.abandon(run_id, error)
        self.store.discard_pending(lost)

    async def schedules_changed(self) -> None:
        """Schedules may have been changed by another engine: read them again."""
        if self.scheduler is not None:
            await self.scheduler.refresh()

    async def schedules_written(self) -> None:
        """Schedules were created, changed or deleted here (committed): on a database
        shared by many engines, tell the others."""
        if self.cluster is not None:
            await self.cluster.announce_schedules()

    async def changed(self, run_ids: set[str] | None) -> None:
        """Runs owned elsewhere that local readers follow changed (None: any of them):
        `result()` callers of finished ones are answered, `events()` and `stream()`
        readers read on from the store."""
        waiting = self.results.waiting_ids()
        if run_ids is not None:
            waiting &= run_ids
        if waiting:
            for row in (await self.store.get_runs(list(waiting))).values():
                if row.status in FINAL:
                    self.results.finished(row)
        for key in self.event_hub.subscribed_keys():
            if run_ids is None or key in run_ids:
                self.event_hub.poke(key)
        for key in self.chunk_hub.subscribed_keys():
            if isinstance(key, tuple) and (run_ids is None or key[0] in run_ids):
                self.chunk_hub.poke(key)

    # -- timers ----------------------------------------------------------------------------

    def _wake(self, run_id: str) -> None:
        if run_id.startswith(SCHEDULE_KEY):  # a schedule's next tick, not a run
            assert self.scheduler is not None
            self.scheduler.wake(run_id)
            return
        self._parked.pop(run_id, None)
        self.deliver(run_id, WAKE)

    def _grant(self, run_id: str) -> None:
        self.deliver(run_id, SLOT_GRANTED)

    def park(self, run_id: str, wake_at: float) -> None:
        """Rehydrate a run that is not in memory shortly before its next timer is due.

        Waking ahead spreads the rehydrations of many timers due at once over the
        seconds before them, so that each fires in a live actor, on time. The
        default (2 s) keeps the rehydrations of a one-second burst out of the
        second its timers fire in: with 10,000 timers in a second, rehydrating,
        firing and finishing them at once takes the whole core here, and p99
        lateness was 45-80 ms with 1 s ahead, 2-7 ms with 2 s (`benchmarks`'
        `waiting` workload).
        """
        self.rehydrate_at(run_id, wake_at - self.wake_ahead)

    def rehydrate_at(self, run_id: str, when: float) -> None:
        """Bring the run back into memory at `when` (a time.time() value), if nothing
        (a message, `start`) brings it back sooner."""
        self.unpark(run_id)
        self._parked[run_id] = self.timers.schedule(when, run_id)

    def unpark(self, run_id: str) -> None:
        entry = self._parked.pop(run_id, None)
        if entry is not None:
            entry.cancel()

    def hook_holder(self, run_id: str, token: str) -> str | None:
        """The run that holds hook `token`, for run `run_id` (see `RunHost`). On a database
        shared by many engines, a holder elsewhere is known only for the moment a commit
        refused `run_id`'s taking of it: it may have finished since (and the token is
        free), so the database decides, at the commit."""
        refused = self._hooks_refused.pop((run_id, token), None)
        if refused is not None:
            return refused
        holder = self.hooks.get(token)
        cluster = self.cluster
        if holder is not None and cluster is not None and not cluster.owns(holder):
            return None
        return holder

    def drop_hooks(self, run_id: str) -> None:
        """Release the hook tokens of a finished run."""
        for token in [t for t, owner in self.hooks.items() if owner == run_id]:
            del self.hooks[token]
        self.store.batch().hook_deletes.append(run_id)

    # -- after commits ---------------------------------------------------------------------

    def on_commit(self, batch: WriteBatch) -> None:
        """Publish a committed batch's events and chunks to live readers; on a database
        shared by many engines, first drop the runs whose rows the fence refused."""
        observer = _observe.current
        if observer is not None:
            observer.committed(batch)
        cluster = self.cluster
        if cluster is not None:
            refused = cluster.committed(batch)
            if refused:
                self.drop(refused, StoreWriteError("another engine owns the run"))
            if batch.hook_conflicts:
                refused |= self._hooks_held_elsewhere(batch)
            if refused:
                self._publish_except(batch, refused)
                return
        self._publish_except(batch, ())

    def _hooks_held_elsewhere(self, batch: WriteBatch) -> set[str]:
        """Runs that took hook tokens runs on other engines hold: nothing of theirs was
        written; they are rehydrated, and `create_hook` now raises `HookConflictError`."""
        taken = batch.hook_conflicts
        runs = {hook.run_id for hook in batch.hooks if hook.token in taken}
        for run_id in runs:
            token = next(h.token for h in batch.hooks if h.run_id == run_id and h.token in taken)
            # What the rehydrated run's `create_hook` finds (once): the holder then.
            self._hooks_refused[run_id, token] = taken[token]
            error = HookConflictError(f"hook token {token!r} is held by run {taken[token]!r}")
            self.abandon(run_id, error)
        self.store.discard_pending(set(runs))
        for run_id in runs:
            self.rehydrate_at(run_id, time.time())
        return runs

    def _publish_except(self, batch: WriteBatch, refused: Container[str]) -> None:
        hub = self.event_hub
        if hub:
            for run, events in batch.new_runs:
                if run.id not in batch.conflicts and run.id not in refused:
                    for event in events:
                        if hub.has(event.run_id):
                            hub.publish(event.run_id, event)
            for event in batch.events:
                if hub.has(event.run_id) and event.run_id not in refused:
                    hub.publish(event.run_id, event)
        chunks = self.chunk_hub
        if chunks:
            for chunk in batch.chunks:
                key = (chunk.run_id, chunk.namespace)
                if chunks.has(key) and chunk.run_id not in refused:
                    chunks.publish(key, chunk)

    def outcome_loaded(self, row: RunRow) -> None:
        """An actor found its run final in the store: answer the `result()` callers."""
        self.results.finished(row)

    def run_finished(self, row: RunRow) -> None:
        """Called by an actor once its run's final status is committed."""
        self.results.finished(row)
        if self.cluster is not None:
            self.cluster.finished(row.id)
        # Only a tick's run can be a schedule's (its id says so): no call for the others.
        if self.scheduler is not None and TICK_SEPARATOR in row.id:
            self.scheduler.run_finished(row.id)
        if row.parent_id is not None:
            self.deliver(row.parent_id, ChildDone(row.id, row.status, row.result, row.error))
        if self.chunk_hub.subscriptions:
            for key in self.chunk_hub.subscribed_keys():
                if isinstance(key, tuple) and key[0] == row.id:
                    self.chunk_hub.end(key)
