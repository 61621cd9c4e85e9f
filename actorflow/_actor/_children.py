"""Children: the child runs a run has started, and the workflow futures waiting on them.

Part of the run's actor state. A child's outcome reaches the parent as a
`ChildDone` message; the parent records it as a `child_finished` input, and
only when that input is applied (live after its commit, or on replay) are
waiting `child.result()` calls resolved. Awaiting a child that already
finished resolves at once, live and on replay alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from .._errors import InvalidStateError, RunFailedError, RunTerminatedError
from .._messages import ChildDone
from .._models import ErrorInfo
from .._serde import dumps


class Children:
    """Child ids by the seq of their start, their outcomes, and who waits for them."""

    __slots__ = ("noted", "outcomes", "seqs", "waiters")

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self.noted: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.seqs)

    def started(self, child_id: str, seq: int) -> None:
        self.seqs[child_id] = seq

    def dropped(self, child_id: str) -> None:
        """The start did not happen (a run with that id already existed)."""
        del self.seqs[child_id]

    def wait(self, child_id: str, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Resolve `future` with the child's result once its outcome is applied."""
        if child_id not in self.seqs:
            future.set_exception(
                InvalidStateError(
                    f"run {child_id!r} is not a child of this run; inside a workflow only "
                    "children started with af.start() can be awaited"
                )
            )
        elif child_id in self.outcomes:
            _settle(future, child_id, self.outcomes[child_id])
        else:
            self.waiters.setdefault(child_id, []).append(future)
        return future

    def record(self, message: ChildDone) -> tuple[int, bytes] | None:
        """The (seq, data) of the `child_finished` entry to log for `message`, or None if
        the child is not ours or its outcome is already known."""
        child_id = message.child_id
        seq = self.seqs.get(child_id)
        if seq is None or child_id in self.outcomes or child_id in self.noted:
            return None
        self.noted.add(child_id)
        return seq, dumps(
            {
                "status": message.status,
                "result": None if message.result is None else orjson.Fragment(message.result),
                "error": None if message.error is None else orjson.Fragment(message.error),
            }
        )

    def finished(self, child_id: str, outcome: dict[str, Any]) -> None:
        """Apply a child's outcome: wake everything awaiting it."""
        self.outcomes[child_id] = outcome
        for future in self.waiters.pop(child_id, []):
            _settle(future, child_id, outcome)

    def unknown_outcomes(self) -> list[str]:
        """Children whose outcome has not reached this run (checked after rehydration)."""
        return [c for c in self.seqs if c not in self.outcomes and c not in self.noted]

    def unfinished(self, which: Callable[[int], bool]) -> Iterator[str]:
        """Children not known to be finished whose start seq satisfies `which`."""
        return (c for c, seq in self.seqs.items() if which(seq) and c not in self.outcomes)


def _settle(future: asyncio.Future[Any], child_id: str, outcome: dict[str, Any]) -> None:
    status = outcome["status"]
    if status == "completed":
        future.set_result(outcome["result"])
    elif status == "failed":
        future.set_exception(RunFailedError(child_id, ErrorInfo.from_json(outcome["error"])))
    else:
        future.set_exception(RunTerminatedError(child_id))
