"""streams: one step writes chunks with `af.get_writable()`; 1 and then R readers follow
with `run.stream()`.

The writer first writes a "ready" chunk and waits until every reader has it
(so every reader is live), then writes N timestamped chunks, each
`await writer.write(...)` in turn, and closes the stream. Chunks/s counts from
the first timed write until the last reader has the last chunk; latency is
write call -> reader receives, over every (chunk, reader) pair.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import actorflow as af

from .common import Context, Metric, log, summarize

DESCRIPTION = "chunks/s and chunk latency, one writer to 1 and to R readers"
DEFAULTS = {"chunks": 5000, "readers": "1,100"}
QUICK = {"chunks": 200, "readers": "1,10"}
TABLE = [
    Metric("r1_chunks_per_s", "1 reader: chunks", "/s"),
    Metric("r1_latency_p50_ms", "1 reader: write -> receive p50", "ms"),
    Metric("r1_latency_p99_ms", "1 reader: write -> receive p99", "ms"),
    Metric("rmany_readers", "many readers: how many", ""),
    Metric("rmany_chunks_per_s", "many readers: chunks (each to all)", "/s"),
    Metric("rmany_deliveries_per_s", "many readers: deliveries", "/s"),
    Metric("rmany_latency_p50_ms", "many readers: write -> receive p50", "ms"),
    Metric("rmany_latency_p99_ms", "many readers: write -> receive p99", "ms"),
]

_ready: asyncio.Event | None = None


@af.step(name="bench.streams.produce")
async def produce(n: int) -> int:
    assert _ready is not None
    writer = af.get_writable()
    await writer.write({"ready": True})
    await _ready.wait()
    clock = time.perf_counter
    for i in range(n):
        await writer.write({"i": i, "t": clock(), "token": "lorem"})
    await writer.close()
    return n


@af.workflow(name="bench.streams.producer")
async def producer(n: int) -> int:
    return await produce(n)


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    readers = [int(r) for r in str(cfg["readers"]).split(",") if r.strip()]
    async with ctx.engine(workflows=[producer]) as engine:
        await _measure(engine, 1, 50)  # warm-up
        for count in readers:
            log(f"  {cfg['chunks']:,} chunks to {count} reader(s)")
            result = await _measure(engine, count, cfg["chunks"])
            prefix = "r1" if count == 1 else "rmany"
            if count != 1:
                ctx.metrics["rmany_readers"] = count
            ctx.metrics.update({f"{prefix}_{k}": v for k, v in result.items()})
            ctx.checkpoint()


async def _measure(engine: af.Engine, readers: int, n: int) -> dict[str, float]:
    global _ready
    _ready = asyncio.Event()
    have_ready = 0
    latencies: list[float] = []
    last_seen: list[float] = []
    first_write: list[float] = []
    clock = time.perf_counter

    async def reader(run_: af.Run[int]) -> None:
        nonlocal have_ready
        got = 0
        async for chunk in run_.stream():
            now = clock()
            if "ready" in chunk:
                have_ready += 1
                if have_ready == readers:
                    assert _ready is not None
                    _ready.set()
                continue
            if chunk["i"] == 0 and not first_write:
                first_write.append(chunk["t"])
            latencies.append(now - chunk["t"])
            got += 1
        assert got == n, f"a reader got {got} of {n} chunks"
        last_seen.append(clock())

    run_ = await engine.start(producer, n)
    tasks = [asyncio.create_task(reader(run_)) for _ in range(readers)]
    await asyncio.gather(*tasks)
    seconds = max(last_seen) - first_write[0]
    await run_.result()
    stats = summarize(latencies, scale=1000.0)
    return {
        "chunks": n,
        "chunks_per_s": n / seconds,
        "deliveries_per_s": n * readers / seconds,
        "latency_p50_ms": stats["p50"],
        "latency_p99_ms": stats["p99"],
        "latency_max_ms": stats["max"],
    }
