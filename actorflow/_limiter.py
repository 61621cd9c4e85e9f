"""ConcurrencyLimiter: slots for running runs, per workflow and engine-wide, granted FIFO.

A run asks for a slot when it has steps to start and gives it back when it
has none (waiting, paused, finished), so waiting runs never hold one. Requests
are served in arrival order; a request that cannot be served (its workflow is
full) does not block later requests of other workflows.
"""

from __future__ import annotations

from collections.abc import Callable


class ConcurrencyLimiter:
    """Grants slots; `grant(run_id)` is called for requests served after they queued."""

    def __init__(self, max_total: int | None, grant: Callable[[str], None]) -> None:
        self._max_total = max_total
        self._grant = grant
        self._limits: dict[str, int] = {}
        self._held: dict[str, str] = {}
        self._per_workflow: dict[str, int] = {}
        self._queue: dict[str, str] = {}

    def set_limit(self, workflow: str, limit: int | None) -> None:
        if limit is not None:
            self._limits[workflow] = limit

    def is_limited(self, workflow: str) -> bool:
        """False when no limit applies to `workflow`: its runs never need to ask."""
        return self._max_total is not None or workflow in self._limits

    def acquire(self, run_id: str, workflow: str) -> bool:
        """Take a slot now (True) or queue for one (False; `grant` follows later)."""
        if run_id in self._held:
            return True
        self._queue.setdefault(run_id, workflow)
        self._dispatch(asking=run_id)
        return run_id in self._held

    def release(self, run_id: str) -> None:
        """Give back the run's slot or drop its queued request."""
        self._queue.pop(run_id, None)
        workflow = self._held.pop(run_id, None)
        if workflow is not None:
            self._per_workflow[workflow] -= 1
            self._dispatch()

    def queued(self) -> list[str]:
        """Run ids waiting for a slot, oldest first."""
        return list(self._queue)

    def _fits(self, workflow: str) -> bool:
        if self._max_total is not None and len(self._held) >= self._max_total:
            return False
        limit = self._limits.get(workflow)
        return limit is None or self._per_workflow.get(workflow, 0) < limit

    def _dispatch(self, asking: str | None = None) -> None:
        granted: list[str] = []
        for run_id, workflow in list(self._queue.items()):
            if self._max_total is not None and len(self._held) >= self._max_total:
                break
            if self._fits(workflow):
                del self._queue[run_id]
                self._held[run_id] = workflow
                self._per_workflow[workflow] = self._per_workflow.get(workflow, 0) + 1
                granted.append(run_id)
        for run_id in granted:
            if run_id != asking:
                self._grant(run_id)
