"""RunClient: what a run handle (`Run`) asks of the engine that holds its run.

The one contract behind `Run`: status, result, info, events, stream, control
and events sent to the run, by run id. `Run` talks to nothing else, so a `Run`
whose run lives elsewhere works through the same interface: the local
implementation is `LocalRunClient` (`_local_client.py`, over an in-process
engine); an HTTP client, the CLI or an engine in another process (a
PostgreSQL store shared by many engines) implement this protocol.

Every method may raise `EngineClosedError` (the engine is not open) and
`RunNotFoundError` (no run has this id), besides what each one names.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable
from typing import Any, Protocol

from ._messages import ControlAction
from ._models import RunEvent, RunInfo, RunStatus


class RunClient(Protocol):
    """The engine, as seen from a run handle."""

    async def status(self, run_id: str) -> RunStatus:
        """The run's current status."""

    def result(self, run_id: str, timeout: float | None) -> Awaitable[Any]:
        """The run's result once it is final. Raises `RunFailedError`,
        `RunTerminatedError`, and `TimeoutError` after `timeout` seconds."""

    async def info(self, run_id: str) -> RunInfo:
        """A snapshot of the run, with its steps."""

    def events(
        self, run_id: str, after: int = -1, follow: bool = True
    ) -> AsyncGenerator[RunEvent, None]:
        """The committed events of the run with an index above `after`, then (with
        `follow`) live ones, until it ends."""

    def stream(
        self, run_id: str, namespace: str, start: int, with_info: bool
    ) -> AsyncGenerator[Any, None]:
        """Stream chunks from `start`, then live ones, until the namespace closes or the
        run ends. Raises `ValueError`/`TypeError` for a bad namespace or start."""

    async def control(
        self, run_id: str, action: ControlAction, from_step: str | None = None
    ) -> None:
        """Pause, resume, terminate or restart the run; returns once committed. Raises
        `InvalidStateError` when the action does not apply, `WorkflowNotRegisteredError`."""

    async def send_event(self, run_id: str, type: str, payload: Any = None) -> None:
        """Durably deliver an event to the run. Raises `InvalidStateError` if it is
        final, `ValueError` for a bad type, `SerializationError` for a bad payload."""
