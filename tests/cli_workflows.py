"""Workflows the command-line tests drive, in a module of their own so that the
`actorflow serve` subprocess imports it by name like a user's module."""

from __future__ import annotations

import dataclasses
from typing import Any

import actorflow as af


@af.step
async def cli_add(a: int, b: int) -> int:
    return a + b


@af.workflow
async def cli_summed(a: int, b: int) -> int:
    total = await cli_add(a, b)
    return await cli_add(total, 1)


@af.workflow
async def cli_echo(number: Any, obj: Any, text: Any) -> list[Any]:
    return [number, obj, text]


@af.step
async def cli_explode(message: str) -> None:
    raise af.FatalError(message)


@af.workflow
async def cli_broken(message: str) -> None:
    await cli_explode(message)


@af.workflow
async def cli_approval(order: dict[str, Any]) -> dict[str, Any]:
    """Streams text, a JSON value and bytes, then waits for "approve", then closes."""
    writer = af.get_writable()
    await writer.write("waiting for ")
    await writer.write("approval")
    await writer.write({"order": order})
    await writer.write(b"\x00raw")
    by = await af.wait_for_event("approve")
    await writer.close()
    return {"order": order, "by": by}


@af.workflow
async def cli_parent(a: int) -> int:
    child = await af.start(cli_summed, a, a)
    return await child.result()


@af.workflow
async def cli_hooked(token: str) -> Any:
    return await af.create_hook(token).wait()


@af.workflow
async def cli_gate() -> str:
    """A step, a wait for "go", a step: something to pause, resume, restart, terminate."""
    await cli_add(1, 1)
    await af.wait_for_event("go")
    await cli_add(2, 2)
    return "through"


@af.workflow
async def cli_chatter() -> int:
    """Writes two chunks, waits for "more", writes a third and closes its stream."""
    writer = af.get_writable()
    await writer.write({"i": 0})
    await writer.write(b"raw-1")
    await af.wait_for_event("more")
    await writer.write({"i": 2})
    await writer.close()
    return 3


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


@af.workflow
async def cli_count(lines: list[Line]) -> int:
    """Typed arguments: a start with one that does not fit is one error line naming it."""
    return sum(line.qty for line in lines)
