"""DyingTasks: the tasks the engine has cancelled and still owns until they end, and
the bounded wait for them when it closes.

A task that swallows its cancellation (a step with `except CancelledError: pass`
around a long wait) would keep `Engine.close()` waiting for ever; instead, close
waits at most `close_timeout` seconds in all and abandons what is left, with a
warning naming each task (run and step). An abandoned task still runs on the loop:
whoever runs the loop (asyncio.run) cancels it again when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("actorflow.engine")


class DyingTasks:
    """Cancelled tasks still running, each with what it is (for the warning)."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], str] = {}

    def reap(self, task: asyncio.Task[Any], what: str) -> None:
        """Own the cancelled `task` until it has ended."""
        if not task.done():
            self._tasks[task] = what
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

    async def wait(
        self, deadline: float, first: Iterable[tuple[asyncio.Task[Any], str]] = ()
    ) -> None:
        """Wait for the tasks `first` (the actors, whose ending cancels their steps), then
        for these, until `deadline` (a `time.monotonic()` value); warn about, and
        abandon, those still running then."""
        await self._wait_for(dict(first), deadline)
        await self._wait_for(dict(self._tasks), deadline)

    async def _wait_for(self, waiting: dict[asyncio.Task[Any], str], deadline: float) -> None:
        waiting = {t: w for t, w in waiting.items() if not t.done()}
        if not waiting:
            return
        _, pending = await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            log.warning(
                "%s did not stop within the engine's close_timeout after it was cancelled "
                "(does it catch CancelledError?); abandoned",
                waiting[task],
            )
            self._tasks.pop(task, None)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a service task the engine owns and wait for it to end (its cancellation
    is expected; any other exception propagates)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
