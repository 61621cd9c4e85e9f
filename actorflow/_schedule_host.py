"""What the scheduler (`_schedules.Scheduler`) needs from the engine, and reads of a
workflow: named here so that the scheduler does not import the engine's side."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

from ._models import ScheduleTick
from ._store import RunRow, Store, WriteBatch


class Workflow(Protocol):
    """What the scheduler reads of a workflow."""

    @property
    def name(self) -> str: ...
    @property
    def schedules(self) -> tuple[str, ...]: ...


class SchedulerHost(Protocol):
    """What the scheduler needs from the engine."""

    @property
    def store(self) -> Store: ...

    def scheduled_workflows(self) -> Iterable[Workflow]:
        """The workflows whose declared schedules this engine keeps."""

    def workflow(self, name: str) -> Workflow | None:
        """The workflow this engine runs under `name`, if any."""

    def record_tick(
        self,
        batch: WriteBatch,
        wf: Any,
        run_id: str,
        args: bytes,
        metadata: bytes | None,
        tick: ScheduleTick,
    ) -> RunRow | None:
        """Add the tick's run to `batch` (None: a live run holds the id already)."""

    def spawn_tick(self, row: RunRow, batch: WriteBatch, tick: ScheduleTick) -> None:
        """Start the actor of a tick's run recorded in `batch`."""

    def terminate(self, run_id: str) -> Awaitable[None]:
        """Terminate an unfinished run (nothing if it has finished meanwhile)."""
