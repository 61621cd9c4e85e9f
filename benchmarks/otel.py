"""otel: the cost of `actorflow.otel` (spans and metrics on, in-memory exporter) against off.

The latency and throughput shapes, each measured with instrumentation off, on
(every run traced) and sampled (a tenth of the runs traced, metrics for all:
`ParentBased(TraceIdRatioBased(0.1))`), in rotating rounds in this one process
(so load on the machine hits all alike); the table gives the median over
rounds. Spans go through the SDK's `SimpleSpanProcessor` to an
`InMemorySpanExporter` (so the export's cost is paid inline, where it is
measured), metrics to an `InMemoryMetricReader`.
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
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from actorflow.otel import ActorflowInstrumentor

from .common import Context, Metric, log, summarize
from .shapes import three_steps

DESCRIPTION = "latency and throughput with spans+metrics off, on, 10 % sampled (in memory)"
MODES = ("off", "on", "sampled")
DEFAULTS = {"rounds": 3, "samples": 1000, "runs": 5000, "warmup": 100}
QUICK = {"rounds": 1, "samples": 30, "runs": 200, "warmup": 5}
TABLE = [
    Metric("latency_p50_off_ms", "start->result p50, off", "ms"),
    Metric("latency_p50_on_ms", "start->result p50, on", "ms"),
    Metric("latency_p50_overhead_pct", "latency p50 overhead", "%"),
    Metric("workflows_per_s_off", "workflows, off", "/s"),
    Metric("workflows_per_s_on", "workflows, on", "/s"),
    Metric("throughput_overhead_pct", "throughput lost", "%"),
    Metric("latency_p50_sampled_ms", "start->result p50, 10 % sampled", "ms"),
    Metric("workflows_per_s_sampled", "workflows, 10 % sampled", "/s"),
    Metric("throughput_overhead_sampled_pct", "throughput lost, 10 % sampled", "%"),
    Metric("spans_per_run", "spans per 3-step run", ""),
]


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    exporter = InMemorySpanExporter()
    tracer_providers = {
        "on": TracerProvider(),
        "sampled": TracerProvider(ParentBased(TraceIdRatioBased(0.1))),
    }
    for provider in tracer_providers.values():
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor = ActorflowInstrumentor()
    latency: dict[str, list[float]] = {mode: [] for mode in MODES}
    throughput: dict[str, list[float]] = {mode: [] for mode in MODES}
    spans_per_run = 0.0
    for round_ in range(cfg["rounds"]):
        # Rotate which goes first, so none always meets a warmer (or busier) machine.
        for mode in MODES[round_ % 3 :] + MODES[: round_ % 3]:
            if mode != "off":
                instrumentor.instrument(tracer_providers[mode], meter_provider)
            try:
                log(f"  round {round_ + 1}, otel {mode}")
                latency[mode].append(await _latency(cfg, ctx))
                exporter.clear()
                throughput[mode].append(await _throughput(cfg, ctx))
                if mode == "on":
                    spans_per_run = len(exporter.get_finished_spans()) / (cfg["runs"] + 100)
                exporter.clear()
            finally:
                instrumentor.uninstrument()
    ms = {mode: statistics.median(latency[mode]) for mode in MODES}
    per_s = {mode: statistics.median(throughput[mode]) for mode in MODES}
    ctx.metrics.update(
        latency_p50_off_ms=ms["off"],
        latency_p50_on_ms=ms["on"],
        latency_p50_overhead_pct=100 * (ms["on"] / ms["off"] - 1),
        workflows_per_s_off=per_s["off"],
        workflows_per_s_on=per_s["on"],
        throughput_overhead_pct=100 * (1 - per_s["on"] / per_s["off"]),
        latency_p50_sampled_ms=ms["sampled"],
        workflows_per_s_sampled=per_s["sampled"],
        throughput_overhead_sampled_pct=100 * (1 - per_s["sampled"] / per_s["off"]),
        spans_per_run=spans_per_run,
        latency_p50_rounds_ms=latency,
        workflows_per_s_rounds=throughput,
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
