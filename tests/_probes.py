"""Probes for the lifecycle tests: per-test counters and `asyncio.Event` gates.

Steps are module-level functions, so they reach the test that started them
through a key (passed as a workflow argument) into `PROBES`. A test gets a
fresh probe from the `probe` fixture of its module:

    p.hit("name")              # a step records that it ran (and sets p.event("name"))
    await p.event("go").wait() # a step blocks until the test opens the gate
    await p.reached("name")    # the test waits (with a timeout) until a step got there
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import actorflow as af

PROBES: dict[str, Probe] = {}


class Probe:
    def __init__(self) -> None:
        self.key = uuid.uuid4().hex
        self.calls: Counter[str] = Counter()
        self.order: list[Any] = []
        self.values: dict[str, Any] = {}
        self._events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def event(self, name: str) -> asyncio.Event:
        return self._events[name]

    def hit(self, name: str) -> int:
        """Count one execution of `name` and signal it; returns the count so far."""
        self.calls[name] += 1
        self._events[name].set()
        return self.calls[name]

    def open(self, name: str) -> None:
        self._events[name].set()

    async def gate(self, name: str) -> None:
        """Block (a step) until the test calls `open(name)`."""
        await self._events[name].wait()

    async def reached(self, name: str, timeout: float = 5.0) -> None:
        """Wait until `hit(name)` or `open(name)` happened."""
        await asyncio.wait_for(self._events[name].wait(), timeout)

    def reset(self, name: str) -> None:
        self._events[name].clear()


def new_probe() -> Iterator[Probe]:
    probe = Probe()
    PROBES[probe.key] = probe
    try:
        yield probe
    finally:
        del PROBES[probe.key]


@af.step
async def mark(key: str, name: str) -> int:
    """A step that records its run (count and order) in the probe `key` and, if `name` is in the
    probe's "gated" values, blocks until the test opens `<name>:go`."""
    p = PROBES[key]
    n = p.hit(name)
    p.order.append(name)
    if name in p.values.get("gated", ()):
        await p.gate(f"{name}:go")
    return n
