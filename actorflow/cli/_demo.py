"""`python -m actorflow demo`: a few real workflows on the embedded SQLite store.

It processes orders (a flaky payment step that retries, inventory reserved in
parallel, a child run that ships, an approval event, a durable sleep, and a
summary streamed token by token), then runs a burst of small workflows, and
prints what happened. Run it twice: runs started by the first call are
recovered by the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import click

import actorflow as af

_failed_once: set[str] = set()


@af.step(retry=af.Retry(limit=3, delay=0.05, backoff="exponential"))
async def charge(order_id: str, amount: float) -> dict[str, Any]:
    """Payment provider call: fails on its first attempt to show a retry."""
    info = af.step_info()
    if order_id not in _failed_once:
        _failed_once.add(order_id)
        raise af.RetryableError("payment provider timed out")
    return {"order": order_id, "amount": amount, "idempotency_key": info.step_id}


@af.step
async def reserve(item: str) -> str:
    await asyncio.sleep(0.01)
    return f"{item}: reserved"


@af.step
async def print_label(order_id: str) -> str:
    return f"LABEL-{order_id.upper()}"


@af.workflow(name="demo.ship")
async def ship(order_id: str) -> str:
    return await print_label(order_id)


@af.step
async def summarize(order_id: str, items: list[str]) -> str:
    """Stands in for an AI call: every token reaches readers as it is produced."""
    writer = af.get_writable()
    text = f"Order {order_id}: {len(items)} items paid, reserved, shipped and approved."
    for token in text.split(" "):
        await writer.write(token + " ")
        await asyncio.sleep(0.005)
    await writer.close()
    return text


@af.workflow(name="demo.process_order")
async def process_order(order_id: str, items: list[str]) -> dict[str, Any]:
    receipt = await charge(order_id, 10.0 * len(items))
    reservations = await asyncio.gather(*(reserve(item) for item in items))
    shipment = await af.start(ship, order_id)
    label = await shipment.result()
    approval = await af.wait_for_event("approval", timeout="30s")
    await af.sleep("100ms")
    summary = await summarize(order_id, items)
    return {"receipt": receipt, "reserved": reservations, "label": label,
            "approved_by": approval["by"], "summary": summary}  # fmt: skip


@af.step
async def tiny(x: int) -> int:
    return x + 1


@af.workflow(name="demo.burst")
async def burst(x: int) -> int:
    return await tiny(await tiny(await tiny(x)))


async def demo(url: str, burst_size: int) -> None:
    print(f"actorflow demo on {url}\n")
    async with af.Engine(url) as engine:
        recovered = await engine.list_runs(status=["running", "waiting", "queued"])
        if recovered:
            print(f"recovered {len(recovered)} unfinished run(s) from the last demo\n")
        started = time.perf_counter()
        orders = {f"order-{i}": ["book", "lamp", "mug"][: i + 1] for i in range(3)}
        runs = {oid: await engine.start(process_order, oid, items, id=f"{oid}-{time.time_ns()}")
                for oid, items in orders.items()}  # fmt: skip
        for oid, run in runs.items():
            async with contextlib.aclosing(run.events()) as events:
                async for event in events:
                    if event.kind == "wait_started":
                        break
            print(f"{oid}: paid, reserved, shipped; now {await run.status()} for approval")
            await run.send_event("approval", {"by": "alice"})
        first = next(iter(runs.values()))
        print("\nstreaming the summary of order-0 as it is written:\n  ", end="")
        async for token in first.stream():
            print(token, end="", flush=True)
        print("\n")
        for oid, run in runs.items():
            result = await run.result(timeout=30)
            print(
                f"{oid}: completed -> label {result['label']}, approved by {result['approved_by']}"
            )
        print(f"\n3 orders in {time.perf_counter() - started:.2f} s (incl. a 100 ms durable sleep)")
        info = await first.info()
        print(f"\nsteps of {info.id}:")
        for step in info.steps:
            print(f"  #{step.seq:<2} {step.name:<12} {step.status:<10} attempts={step.attempts}")
        print(f"\nevent log of {info.id}:")
        async for event in first.events():
            label = f"{event.name or ''}"
            print(f"  {event.index:>3}  {event.kind:<16} {label}")
        started = time.perf_counter()
        handles = await asyncio.gather(*(engine.start(burst, i) for i in range(burst_size)))
        await asyncio.gather(*(h.result(timeout=60) for h in handles))
        elapsed = time.perf_counter() - started
        print(f"\nburst: {burst_size} 3-step workflows, every step committed, in {elapsed:.2f} s "
              f"({burst_size / elapsed:,.0f} workflows/s)")  # fmt: skip
    print("\nEverything above is in the SQLite file; `python -m actorflow demo` again "
          "shows recovery and adds new runs.")  # fmt: skip


@click.command()
@click.option(
    "--db", default="actorflow-demo.db", show_default=True, help="SQLite file of the demo"
)
@click.option(
    "--burst",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="size of the throughput burst",
)
def demo_command(db: str, burst: int) -> None:
    """Run a few real workflows on embedded SQLite."""
    af.run(demo(f"sqlite:///{db}", burst))
