"""ResultWaiters: how a run's outcome reaches the callers of `Run.result()`.

Push, not poll: a caller registers a future before it looks at the store, and
the run's actor resolves every registered future the moment the run's final
status is committed. Registering first means a run that finishes while the
caller reads the store cannot be missed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, NamedTuple

from ._errors import RunFailedError, RunTerminatedError
from ._models import ErrorInfo, RunStatus
from ._serde import loads
from ._store import RunRow


class Outcome(NamedTuple):
    """How a run ended."""

    run_id: str
    status: str
    result: bytes | None
    error: bytes | None

    @staticmethod
    def of(row: RunRow) -> Outcome:
        # `tuple.__new__`: a NamedTuple's own constructor is an interpreted function.
        return _new_tuple(Outcome, (row.id, row.status, row.result, row.error))

    def value(self) -> Any:
        """The result, or the exception that `Run.result()` raises."""
        if self.status == _COMPLETED:
            return None if self.result is None else loads(self.result)
        if self.status == _FAILED:
            raise RunFailedError(self.run_id, ErrorInfo.from_json(loads(self.error or b"{}")))
        raise RunTerminatedError(self.run_id)


# Read once or twice per run: a compiled build reads module constants from C statics.
_new_tuple: Final = tuple.__new__
_COMPLETED: Final = RunStatus.COMPLETED._value_
_FAILED: Final = RunStatus.FAILED._value_


class ResultWaiters:
    """Futures of `result()` callers, by run id."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[Outcome]]] = {}

    def add(self, run_id: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Outcome]:
        """A future of `loop` (the engine's: asking for the running loop is a system
        call on Python 3.11) resolved with the run's outcome; `discard` it when done.

        (Not a context manager: `result()` is on every caller's hot path, and a
        generator-based one costs several calls.)
        """
        future: asyncio.Future[Outcome] = loop.create_future()
        waiters = self._waiting.get(run_id)
        if waiters is None:
            self._waiting[run_id] = [future]
        else:
            waiters.append(future)
        return future

    def discard(self, run_id: str, future: asyncio.Future[Outcome]) -> None:
        waiters = self._waiting.get(run_id)
        if waiters is not None:
            waiters.remove(future)
            if not waiters:
                del self._waiting[run_id]

    def waiting_ids(self) -> set[str]:
        """The runs someone waits on."""
        return set(self._waiting)

    def finished(self, row: RunRow) -> None:
        """Resolve every waiter of a run whose final status is now committed."""
        waiters = self._waiting.get(row.id)
        if waiters:
            outcome = Outcome.of(row)
            for future in waiters:
                if not future.done():
                    future.set_result(outcome)

    def fail_all(self, error: BaseException) -> None:
        """Wake every waiter with `error` (the engine is closing)."""
        for waiters in self._waiting.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(error)
