"""TimerService: one heap of wake-ups for every run, and one task that fires them.

A run with durable timers (sleeps, event timeouts, retry delays, deadlines)
keeps at most one entry here: its earliest deadline. When it comes due the
service asks the engine to wake the run, which rehydrates it if it was evicted;
the run itself decides what is due. So a sleeping run costs one heap entry,
not a task.

One service serves every run, so no single value may stop it: a time that is
not a finite number is refused where it is scheduled (the run that asked for it
fails, not the service), and an error while waking one run is logged and the
next entries still fire.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable

from ._dying import cancel_and_wait

log = logging.getLogger("actorflow.timers")


class TimerEntry:
    """A scheduled wake-up; `cancel()` removes it lazily."""

    __slots__ = ("cancelled", "run_id", "service", "when")

    def __init__(self, when: float, run_id: str, service: TimerService) -> None:
        self.when = when
        self.run_id = run_id
        self.service = service
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.service.cancelled += 1

    def __lt__(self, other: TimerEntry) -> bool:
        return self.when < other.when


class TimerService:
    """Calls `wake(run_id)` at (or right after) each scheduled wall-clock time."""

    def __init__(self, wake: Callable[[str], None]) -> None:
        self._wake = wake
        self._heap: list[TimerEntry] = []
        self.cancelled = 0
        self._changed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="actorflow-timers")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, when: float, run_id: str) -> TimerEntry:
        """Wake `run_id` at epoch time `when` (at once if it has passed).

        Raises `ValueError` if `when` is not a finite number.
        """
        if not math.isfinite(when):
            raise ValueError(f"run {run_id!r}: a wake-up time must be finite, got {when!r}")
        entry = TimerEntry(when, run_id, self)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry and self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        return entry

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        heap = self._heap
        while True:
            now = time.time()
            while heap and (heap[0].cancelled or heap[0].when <= now):
                entry = heapq.heappop(heap)
                if entry.cancelled:
                    self.cancelled -= 1
                else:
                    entry.cancelled = True  # fired: a later cancel() is a no-op
                    try:
                        self._wake(entry.run_id)
                    except Exception:
                        log.exception("waking run %r failed", entry.run_id)
            if self.cancelled > 1024 and self.cancelled > len(heap) // 2:
                heap[:] = [e for e in heap if not e.cancelled]
                heapq.heapify(heap)
                self.cancelled = 0
            self._changed = loop.create_future()
            timer = None if not heap else loop.call_later(heap[0].when - now, _fire, self._changed)
            try:
                await self._changed
            finally:
                if timer is not None:
                    timer.cancel()


def _fire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
