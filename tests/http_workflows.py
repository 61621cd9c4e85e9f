"""Workflows the HTTP tests drive, in a module of their own so that the `actorflow
serve` subprocess test can import it by name like a user's module."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta
from typing import Any

import actorflow as af


@af.step
async def http_double(x: int) -> int:
    return 2 * x


@af.workflow
async def http_add(a: int, b: int) -> int:
    return await http_double(a) + b - a


@af.workflow
async def http_fail(message: str) -> None:
    raise af.FatalError(message)


@af.workflow
async def http_approve(order: str) -> dict[str, Any]:
    decision = await af.wait_for_event("approval")
    return {"order": order, "decision": decision}


@af.workflow
async def http_hook(token: str) -> Any:
    hook = af.create_hook(token)
    return await hook.wait()


@af.workflow
async def http_chatter(n: int) -> int:
    """Writes `n` chunks (every third as bytes), then waits for "done", then closes."""
    writer = af.get_writable()
    for i in range(n):
        await writer.write(f"raw-{i}".encode() if i % 3 == 2 else {"i": i})
    await af.wait_for_event("done")
    await writer.close()
    return n


@af.workflow(concurrency=3)
async def http_sleeper(seconds: float) -> str:
    await af.sleep(seconds)
    return "slept"


class Speed(enum.Enum):
    STANDARD = "standard"
    EXPRESS = "express"


@dataclasses.dataclass
class Parcel:
    sku: str
    qty: int
    ship_by: datetime


@af.workflow
async def http_ship(parcel: Parcel, speed: Speed = Speed.STANDARD) -> Parcel:
    """Typed arguments and result: checked by the HTTP API, described in its OpenAPI."""
    days = 1 if speed is Speed.EXPRESS else 5
    return dataclasses.replace(parcel, qty=parcel.qty + 1, ship_by=parcel.ship_by + timedelta(days))
