"""Mailbox: an actor's inbox. Puts never block; the owner takes everything queued at once."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from mypy_extensions import mypyc_attr


@mypyc_attr(native_class=False)
class Mailbox(deque[Any]):
    """The queued messages (a deque, which the owner tests directly) plus one waiter:
    lighter than `asyncio.Queue`, and batch-oriented. A deque itself rather than an
    object holding one: thousands of runs are alive at once, one object less each."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        super().__init__()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: Any) -> None:
        self.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def owner_waiting(self) -> bool:
        """Whether the owner waits in `wait()` with nothing queued: it is between turns."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self

    def take_all(self) -> list[Any]:
        """Everything queued, oldest first (possibly nothing)."""
        items = list(self)
        self.clear()
        return items

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something is queued; False if `timeout` seconds passed first."""
        if self:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return bool(self)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
