"""typed: the throughput workload with a dataclass argument and dataclass step results, side
by side with the same workflow on plain dicts, in one process.

Both workflows take an item and pass it through three steps that each return a
new one: `plain` as dicts (JSON-native: nothing is checked beyond `dict`, nothing
decoded), `typed` as a dataclass (checked at `start`, encoded, decoded back into
the dataclass after every step and from the stored argument). Each round starts
N runs of each at once and awaits them, plain first then typed, alternating for
`rounds` rounds in one engine: the median round of each is reported with the
typed one's slowdown, and the event loop's CPU time over all rounds (steadier
than wall time on a shared machine; `benchmarks.instructions --shape` counts
instructions, steadier still).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from typing import Any

import actorflow as af

from .common import Context, Metric, Stopwatch, log

DESCRIPTION = "throughput with a dataclass argument and step results vs plain dicts"
DEFAULTS = {"runs": 5_000, "rounds": 5, "warmup": 200}
QUICK = {"runs": 200, "rounds": 1, "warmup": 10}
TABLE = [
    Metric("plain_workflows_per_s", "workflows on dicts", "/s"),
    Metric("typed_workflows_per_s", "workflows on a dataclass", "/s"),
    Metric("typed_slowdown_pct", "dataclass vs dicts, slower by (median)", "%", goal=("<", 10.0)),
    Metric("typed_cpu_slowdown_pct", "dataclass vs dicts, more loop CPU by", "%"),
    Metric("plain_loop_cpu_us_per_run", "event loop CPU per workflow, dicts", "us"),
    Metric("typed_loop_cpu_us_per_run", "event loop CPU per workflow, dataclass", "us"),
]


@dataclasses.dataclass
class Item:
    sku: str
    qty: int
    price: float


@af.step(name="bench.typed.bump")
async def bump(item: Item) -> Item:
    return Item(item.sku, item.qty + 1, item.price)


@af.step(name="bench.plain.bump")
async def bump_dict(item: dict[str, Any]) -> dict[str, Any]:
    return {"sku": item["sku"], "qty": item["qty"] + 1, "price": item["price"]}


@af.workflow(name="bench.typed")
async def typed(item: Item) -> Item:
    return await bump(await bump(await bump(item)))


@af.workflow(name="bench.plain")
async def plain(item: dict[str, Any]) -> dict[str, Any]:
    bumped: dict[str, Any] = await bump_dict(await bump_dict(await bump_dict(item)))
    return bumped


@af.workflow(name="bench.typed.chain")
async def chain_dataclass(item: Item, steps: int) -> int:
    """`steps` steps on a dataclass (see `benchmarks.instructions --shape`)."""
    for _ in range(steps):
        item = await bump(item)
    return item.qty


@af.workflow(name="bench.plain.chain")
async def chain_dict(item: dict[str, Any], steps: int) -> int:
    """`steps` steps on a dict (see `benchmarks.instructions --shape`)."""
    for _ in range(steps):
        item = await bump_dict(item)
    qty: int = item["qty"]
    return qty


async def _round(engine: af.Engine, kind: str, n: int) -> tuple[float, float]:
    """Start `n` runs of one kind at once and await them: (seconds, loop CPU seconds)."""
    cpu0 = time.thread_time()
    with Stopwatch() as wall:
        if kind == "typed":
            runs = await asyncio.gather(
                *(engine.start(typed, Item("sku", i, 9.5)) for i in range(n))
            )
            items = await asyncio.gather(*(r.result() for r in runs))
            assert all(isinstance(x, Item) and x.qty == i + 3 for i, x in enumerate(items))
        else:
            druns = await asyncio.gather(
                *(engine.start(plain, {"sku": "sku", "qty": i, "price": 9.5}) for i in range(n))
            )
            dicts = await asyncio.gather(*(r.result() for r in druns))
            assert all(d["qty"] == i + 3 for i, d in enumerate(dicts))
    return wall.seconds, time.thread_time() - cpu0


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    n, rounds = cfg["runs"], cfg["rounds"]
    seconds: dict[str, list[float]] = {"plain": [], "typed": []}
    cpu: dict[str, float] = {"plain": 0.0, "typed": 0.0}
    async with ctx.engine(workflows=[typed, plain]) as engine:
        for kind in ("plain", "typed"):
            await _round(engine, kind, cfg["warmup"])
        for r in range(rounds):
            for kind in ("plain", "typed"):
                wall, used = await _round(engine, kind, n)
                log(f"  round {r + 1}, {kind}: {n / wall:,.0f} workflows/s")
                seconds[kind].append(wall)
                cpu[kind] += used
    plain_s, typed_s = statistics.median(seconds["plain"]), statistics.median(seconds["typed"])
    ctx.metrics.update(
        runs=n,
        rounds=rounds,
        plain_workflows_per_s=n / plain_s,
        typed_workflows_per_s=n / typed_s,
        typed_slowdown_pct=100 * (typed_s / plain_s - 1),
        plain_loop_cpu_us_per_run=cpu["plain"] * 1e6 / (n * rounds),
        typed_loop_cpu_us_per_run=cpu["typed"] * 1e6 / (n * rounds),
        typed_cpu_slowdown_pct=100 * (cpu["typed"] / cpu["plain"] - 1),
    )
