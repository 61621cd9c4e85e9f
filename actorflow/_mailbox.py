"""Mailbox: an actor's inbox. Puts never block; the owner takes everything queued at once."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Mailbox:
    """A deque plus one waiter: lighter than `asyncio.Queue`, and batch-oriented."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: Any) -> None:
        self._items.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._items)

    def take_all(self) -> list[Any]:
        """Everything queued, oldest first (possibly nothing)."""
        items = list(self._items)
        self._items.clear()
        return items

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something is queued; False if `timeout` seconds passed first."""
        if self._items:
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
        return bool(self._items)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
