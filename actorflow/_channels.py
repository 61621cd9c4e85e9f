"""Broadcast channels from the commit path to readers (`Run.events()`, `Run.stream()`).

Publishing never blocks and never waits for a reader. Each subscription has a
bounded buffer; a reader that falls so far behind that its buffer overflows is
marked `lagged`, its buffer is dropped, and it catches up by reading the store
from the last index it saw. So a slow reader cannot slow the run, the writer,
or other readers, and loses nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar


class Indexed(Protocol):
    """A published item: its position in the run's log or stream."""

    @property
    def idx(self) -> int: ...


T = TypeVar("T", bound=Indexed)


class Subscription(Generic[T]):
    """One reader's view of a channel."""

    __slots__ = ("_hub", "_waiter", "ended", "error", "items", "key", "lagged", "maxsize")

    def __init__(self, hub: Hub[T], key: Hashable, maxsize: int) -> None:
        self._hub = hub
        self.key = key
        self.maxsize = maxsize
        self.items: deque[T] = deque()
        self.lagged = False
        self.ended = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def _push(self, item: T) -> None:
        if self.lagged:
            return
        if len(self.items) >= self.maxsize:
            self.lagged = True
            self.items.clear()
        else:
            self.items.append(item)
        self._wake()

    def _end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def raise_if_failed(self) -> None:
        """Raise the error the channel was failed with (e.g. the engine closed)."""
        if self.error is not None:
            raise self.error

    def take(self) -> list[T]:
        """Everything buffered, and clear the lag flag (the caller re-reads the store on lag)."""
        items = list(self.items)
        self.items.clear()
        self.lagged = False
        return items

    async def follow(self, expected: int) -> tuple[list[T], bool]:
        """Wait for live items and return those that continue from index `expected`,
        in order, and whether the reader must catch up from the store first (it lagged,
        or an item after a gap came: the rest is read from the store)."""
        await self.wait()
        self.raise_if_failed()
        if self.lagged:
            self.take()
            return [], True
        run: list[T] = []
        for item in self.take():
            index = item.idx
            if index < expected:
                continue
            if index > expected:
                return run, True
            run.append(item)
            expected += 1
        return run, False

    async def wait(self) -> None:
        """Until something is buffered, the reader lagged, or the channel ended."""
        if self.items or self.lagged or self.ended or self.error is not None:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self._hub._remove(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub(Generic[T]):
    """Subscriptions by key (a run id, or a run id and stream namespace)."""

    def __init__(self, maxsize: int = 1024) -> None:
        self._maxsize = maxsize
        # Read by the engine's compiled code to skip what no one listens to (no call).
        self.subscriptions: dict[Hashable, list[Subscription[T]]] = {}

    def __bool__(self) -> bool:
        return bool(self.subscriptions)

    def subscribe(self, key: Hashable) -> Subscription[T]:
        sub = Subscription(self, key, self._maxsize)
        self.subscriptions.setdefault(key, []).append(sub)
        return sub

    def has(self, key: Hashable) -> bool:
        return key in self.subscriptions

    def publish(self, key: Hashable, item: T) -> None:
        for sub in self.subscriptions.get(key, ()):
            sub._push(item)

    def poke(self, key: Hashable) -> None:
        """Tell every current subscriber of `key` to read on from the store (what changed
        was committed elsewhere: a run another engine owns)."""
        for sub in self.subscriptions.get(key, ()):
            sub.lagged = True
            sub._wake()

    def end(self, key: Hashable) -> None:
        """Tell every current subscriber of `key` that nothing more will come."""
        for sub in self.subscriptions.get(key, ()):
            sub._end()

    def fail_all(self, error: BaseException) -> None:
        """Wake every subscriber with `error` (the engine is closing)."""
        for subs in self.subscriptions.values():
            for sub in subs:
                sub.error = error
                sub._wake()

    def __len__(self) -> int:
        """How many subscriptions are open (readers that have not closed theirs)."""
        return sum(len(subs) for subs in self.subscriptions.values())

    def subscribed_keys(self) -> list[Hashable]:
        return list(self.subscriptions)

    def _remove(self, sub: Subscription[T]) -> None:
        subs = self.subscriptions.get(sub.key)
        if subs is not None and sub in subs:
            subs.remove(sub)
            if not subs:
                del self.subscriptions[sub.key]
