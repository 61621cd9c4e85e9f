"""The workflow most workloads measure: three trivial async steps; and the same with
steps that wait once, as a step doing I/O does (`throughput` and `sustained` with
`waits=1`)."""

from __future__ import annotations

import asyncio
from typing import Any

import actorflow as af


@af.step(name="bench.add_one")
async def add_one(x: int) -> int:
    return x + 1


@af.workflow(name="bench.three_steps")
async def three_steps(x: int) -> int:
    a = await add_one(x)
    b = await add_one(a)
    return await add_one(b)


@af.step(name="bench.add_one_waiting")
async def add_one_waiting(x: int) -> int:
    await asyncio.sleep(0)  # one turn of the loop: the step's task waits
    return x + 1


@af.workflow(name="bench.three_waiting_steps")
async def three_waiting_steps(x: int) -> int:
    a = await add_one_waiting(x)
    b = await add_one_waiting(a)
    return await add_one_waiting(b)


def workflow_for(cfg: dict[str, Any]) -> Any:
    """The 3-step workflow a workload's `waits` size selects."""
    return three_waiting_steps if cfg.get("waits") else three_steps


STEPS_PER_RUN = 3
