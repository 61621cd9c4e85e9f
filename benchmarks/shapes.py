"""The workflow most workloads measure: three trivial async steps."""

from __future__ import annotations

import actorflow as af


@af.step(name="bench.add_one")
async def add_one(x: int) -> int:
    return x + 1


@af.workflow(name="bench.three_steps")
async def three_steps(x: int) -> int:
    a = await add_one(x)
    b = await add_one(a)
    return await add_one(b)


STEPS_PER_RUN = 3
