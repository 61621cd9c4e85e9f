"""otel: the cost of `actorflow.otel` (spans and metrics on, in-memory exporter) against off.

The latency and throughput shapes, each measured with instrumentation off and
on in alternating rounds in this one process (so load on the machine hits both
alike); the table gives the median over rounds. Spans go through the SDK's
`SimpleSpanProcessor` to an `InMemorySpanExporter` (so the export's cost is
paid inline, where it is measured), metrics to an `InMemoryMetricReader`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actorflow.otel import ActorflowInstrumentor

from .common import Context, Metric, log, summarize
from .shapes import three_steps

DESCRIPTION = "latency and throughput with spans+metrics on vs off (in-memory exporter)"
DEFAULTS = {"rounds": 3, "samples": 1000, "runs": 5000, "warmup": 100}
QUICK = {"rounds": 1, "samples": 30, "runs": 200, "warmup": 5}
TABLE = [
    Metric("latency_p50_off_ms", "start->result p50, off", "ms"),
    Metric("latency_p50_on_ms", "start->result p50, on", "ms"),
    Metric("latency_p50_overhead_pct", "latency p50 overhead", "%"),
    Metric("workflows_per_s_off", "workflows, off", "/s"),
    Metric("workflows_per_s_on", "workflows, on", "/s"),
    Metric("throughput_overhead_pct", "throughput lost", "%"),
    Metric("spans_per_run", "spans per 3-step run", ""),
]


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor = ActorflowInstrumentor()
    latency: dict[bool, list[float]] = {False: [], True: []}
    throughput: dict[bool, list[float]] = {False: [], True: []}
    spans_per_run = 0.0
    for round_ in range(cfg["rounds"]):
        # Alternate which goes first, so neither always meets a warmer (or busier) machine.
        for on in (False, True) if round_ % 2 == 0 else (True, False):
            if on:
                instrumentor.instrument(tracer_provider, meter_provider)
            try:
                log(f"  round {round_ + 1}, otel {'on' if on else 'off'}")
                latency[on].append(await _latency(cfg, ctx))
                exporter.clear()
                throughput[on].append(await _throughput(cfg, ctx))
                if on:
                    spans_per_run = len(exporter.get_finished_spans()) / (cfg["runs"] + 100)
                exporter.clear()
            finally:
                instrumentor.uninstrument()
    off_ms, on_ms = statistics.median(latency[False]), statistics.median(latency[True])
    off_s, on_s = statistics.median(throughput[False]), statistics.median(throughput[True])
    ctx.metrics.update(
        latency_p50_off_ms=off_ms,
        latency_p50_on_ms=on_ms,
        latency_p50_overhead_pct=100 * (on_ms / off_ms - 1),
        workflows_per_s_off=off_s,
        workflows_per_s_on=on_s,
        throughput_overhead_pct=100 * (1 - on_s / off_s),
        spans_per_run=spans_per_run,
        latency_p50_rounds_ms={"off": latency[False], "on": latency[True]},
        workflows_per_s_rounds={"off": throughput[False], "on": throughput[True]},
    )


async def _latency(cfg: dict[str, Any], ctx: Context) -> float:
    """p50 ms of sequential start->result."""
    async with ctx.engine(workflows=[three_steps]) as engine:
        for i in range(cfg["warmup"]):
            await (await engine.start(three_steps, i)).result()
        samples = []
        clock = time.perf_counter
        for i in range(cfg["samples"]):
            t0 = clock()
            await (await engine.start(three_steps, i)).result()
            samples.append(clock() - t0)
    return float(summarize(samples, scale=1000.0)["p50"])


async def _throughput(cfg: dict[str, Any], ctx: Context) -> float:
    """Workflows/s of `runs` concurrent runs, started at once (plus 100 warm-up runs)."""
    n = cfg["runs"]
    async with ctx.engine(workflows=[three_steps]) as engine:
        await asyncio.gather(*(_one(engine, i) for i in range(100)))
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(engine.start(three_steps, i) for i in range(n)))
        await asyncio.gather(*(r.result() for r in runs))
        return float(n / (time.perf_counter() - t0))


async def _one(engine: Any, i: int) -> None:
    await (await engine.start(three_steps, i)).result()
