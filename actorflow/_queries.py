"""RunQueries: what run handles read (`result`, `status`, `info`) and `list_runs`.

Mixed into `Engine`. A run in memory answers from its actor; any other from the
store, through the `RunLoader`, which groups the reads of one loop turn.
`result()` registers its waiter before it looks, so a run that finishes
meanwhile cannot be missed (see `ResultWaiters`).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._definitions import WorkflowFunction
from ._errors import RunNotFoundError
from ._loader import RunLoader
from ._log import fold_steps, to_run_info
from ._models import STATUS_OF, RunInfo, RunStatus
from ._results import Outcome, ResultWaiters
from ._store import RunRow, Store

if TYPE_CHECKING:
    from ._actor import RunActor


class RunQueries(abc.ABC):
    """The read side of the engine; mixed into `Engine`."""

    store: Store
    loader: RunLoader
    _actors: dict[str, RunActor]
    _results: ResultWaiters

    @abc.abstractmethod
    def _check_open(self) -> None: ...

    async def _wait_result(self, run_id: str, timeout: float | None) -> Any:
        """The run's result once it is final; raises for failed or terminated runs."""
        self._check_open()
        waiter = self._results.add(run_id)
        try:
            actor = self._actors.get(run_id)
            row: RunRow | None
            if actor is not None and actor.loaded:
                row = actor.row if actor.notified else None
            else:
                row = await self._stored_run(run_id)
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
            self._results.discard(run_id, waiter)

    async def _run_status(self, run_id: str) -> RunStatus:
        self._check_open()
        actor = self._actors.get(run_id)
        if actor is not None and actor.loaded:
            return actor.status
        return STATUS_OF[(await self._stored_run(run_id)).status]

    async def _stored_run(self, run_id: str) -> RunRow:
        """The run's committed row; raises `RunNotFoundError` if there is none."""
        row = await self.loader.row(run_id)
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return row

    async def _run_is_final(self, run_id: str) -> bool:
        return (await self._run_status(run_id)).is_final

    async def _run_info(self, run_id: str) -> RunInfo:
        self._check_open()
        row = await self._stored_run(run_id)
        actor = self._actors.get(run_id)
        if actor is not None and actor.loaded:
            row.status = actor.status.value
        events = await self.store.load_events(run_id)
        return to_run_info(row, fold_steps(events, row.generation))

    async def list_runs(
        self,
        *,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        workflow: WorkflowFunction[Any, Any] | str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunInfo]:
        """Runs matching every filter, newest first. `steps` is empty: use `Run.info()`."""
        self._check_open()
        if status is None:
            statuses = None
        elif isinstance(status, str):
            statuses = [_status_text(status)]
        else:
            statuses = [_status_text(s) for s in status]
        name = workflow.name if isinstance(workflow, WorkflowFunction) else workflow
        if not isinstance(limit, int) or limit < 0 or not isinstance(offset, int) or offset < 0:
            raise ValueError("limit and offset must be non-negative ints")
        rows = await self.store.list_runs(
            statuses=statuses, workflow=name, parent_id=parent_id, limit=limit, offset=offset
        )
        return [to_run_info(row, ()) for row in rows]


def _status_text(status: RunStatus | str) -> str:
    """The stored text of `status`; `ValueError` naming the valid ones if it is none."""
    found = STATUS_OF.get(status) if isinstance(status, str) else None
    if found is None:
        valid = ", ".join(s.value for s in RunStatus)
        raise ValueError(f"unknown run status {status!r}; valid: {valid}")
    return found.value
