"""RunHost: what a run actor may ask of the engine that hosts it.

The one contract between the actors and their engine, as `WorkflowHost` is
between workflow code and its actor. No actor module imports the engine: an
engine is whatever provides this (today `RunDirectory`, owned by `Engine`).
A second engine kind (several processes on one database, a PostgreSQL
store) implements the same protocol.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._client import RunClient
    from .._context import RunStarter
    from .._definitions import WorkflowFunction
    from .._limiter import ConcurrencyLimiter
    from .._loader import RunLoader
    from .._store import RunRow, Store, WriteBatch
    from .._timers import TimerService
    from ._runners import StepRunners
    from ._state import RunState


class RunHost(Protocol):
    """The engine, as seen from a run actor."""

    # Shared services and settings.
    loop: asyncio.AbstractEventLoop
    store: Store
    limiter: ConcurrencyLimiter
    timers: TimerService
    loader: RunLoader
    # The tasks step attempts run in (when the loop has no task factory).
    step_runners: StepRunners
    # Hook token -> the run holding it (for every unfinished run, in memory or not).
    hooks: dict[str, str]
    # What run handles made by the actor (a child's `Run`) talk to.
    client: RunClient
    # The engine step code's `af.start()` starts runs on.
    engine: RunStarter
    idle_timeout: float | None
    wake_ahead: float
    max_payload_bytes: int
    max_stream_bytes: int

    def workflow(self, name: str) -> WorkflowFunction[Any, Any] | None:
        """The workflow this engine runs under `name`, if any."""

    def resolve_workflow(self, workflow: Any) -> WorkflowFunction[Any, Any]:
        """The workflow meant by a decorated function or a name; raises
        `WorkflowNotRegisteredError` if unknown, `TypeError` if neither."""

    def spawn(self, row: RunRow, batch: WriteBatch, unique: bool = False) -> None:
        """Start an actor for a run whose creation is in `batch` (a child run)."""

    def deliver(self, run_id: str, message: Any) -> None:
        """Put `message` in the mailbox of run `run_id`, rehydrating it if needed."""

    def park(self, run_id: str, wake_at: float) -> None:
        """Bring the run (leaving memory now) back shortly before `wake_at`."""

    def unpark(self, run_id: str) -> None:
        """The run is back in memory: cancel what `park` scheduled."""

    def reap(self, task: asyncio.Task[Any], what: str) -> None:
        """Own a cancelled task until it has ended (the engine's close waits for it, a
        bounded time); `what` names it (run and step) in the warning if it is abandoned."""

    def hook_holder(self, run_id: str, token: str) -> str | None:
        """The run that holds hook `token`, for run `run_id`, which would take it, to
        refuse it (None: the token is free here; a store shared by many engines refuses
        a token held on another engine at the commit)."""

    def drop_hooks(self, run_id: str) -> None:
        """Release the hook tokens of a finished run (in the store's open batch)."""

    def outcome_loaded(self, row: RunRow) -> None:
        """The actor found its run final in the store: answer `result()` callers."""

    def run_finished(self, row: RunRow) -> None:
        """The run's final status is committed: answer callers, tell its parent."""

    def actor_exited(self, actor: RunState) -> None:
        """The actor left memory; remove it from the directory (once)."""
