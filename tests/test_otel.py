"""OpenTelemetry: the spans and metrics of runs, read with the SDK's in-memory exporter and
metric reader (`actorflow.otel`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import actorflow as af
from actorflow.otel import ActorflowInstrumentor

from .conftest import eventually


class Telemetry:
    """An instrumented process's exported spans and metrics."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = Telemetry()
    instrumentor = ActorflowInstrumentor()
    instrumentor.instrument(found.tracer_provider, found.meter_provider)
    try:
        yield found
    finally:
        instrumentor.uninstrument()


def tree(spans: list[ReadableSpan], root: ReadableSpan) -> list[Any]:
    """`root`'s name and its children's trees, in start order."""
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: (s.start_time, s.name),
    )
    return [root.name, *[tree(spans, child) for child in children]]


flaky_calls: dict[str, int] = {}


@af.step(retry=af.Retry(limit=3, delay=0.01))
async def flaky(key: str) -> str:
    flaky_calls[key] = flaky_calls.get(key, 0) + 1
    if flaky_calls[key] < 3:
        raise RuntimeError(f"attempt {flaky_calls[key]} fails")
    return "ok"


@af.step
async def double(x: int) -> int:
    return 2 * x


@af.workflow
async def otel_child(x: int) -> int:
    return await double(x)


@af.workflow
async def otel_parent(key: str) -> int:
    await flaky(key)
    await af.sleep("10ms")
    payload = await af.wait_for_event("go")
    child = await af.start(otel_child, payload["x"])
    return int(await child.result())


async def test_span_tree_of_a_run_with_retries_sleep_event_and_child(
    telemetry: Telemetry, store_url: str
) -> None:
    async with af.Engine(store_url) as engine:
        run = await engine.start(otel_parent, store_url)
        await run.send_event("go", {"x": 21})
        assert await run.result(timeout=10) == 42
        await eventually(lambda: any(s.name == "run otel_parent" for s in telemetry.spans()))
    spans = telemetry.spans()
    (root,) = [s for s in spans if s.name == "run otel_parent"]
    assert root.parent is None
    assert tree(spans, root) == [
        "run otel_parent",
        ["step flaky"],
        ["step flaky"],
        ["step flaky"],
        ["sleep"],
        ["wait_for_event go"],
        ["child otel_child"],
        ["run otel_child", ["step double"]],
    ] or tree(spans, root) == [
        "run otel_parent",
        ["step flaky"],
        ["step flaky"],
        ["step flaky"],
        ["sleep"],
        ["wait_for_event go"],
        ["run otel_child", ["step double"]],
        ["child otel_child"],
    ]
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    attempts = [s for s in spans if s.name == "step flaky"]
    assert [a.attributes["actorflow.step.attempt"] for a in attempts] == [1, 2, 3]
    assert [a.attributes["actorflow.outcome"] for a in attempts] == [
        "retrying",
        "retrying",
        "completed",
    ]
    assert attempts[0].attributes["actorflow.step.retry_delay"] == pytest.approx(0.01, abs=0.01)
    assert attempts[0].attributes["actorflow.run_id"] == run.id
    assert attempts[0].attributes["actorflow.workflow"] == "otel_parent"
    assert attempts[0].attributes["actorflow.step.seq"] == 0
    assert not attempts[0].status.is_ok and attempts[2].status.is_ok
    assert root.attributes["actorflow.outcome"] == "completed"
    assert root.attributes["actorflow.generation"] == 0
    assert all(s.start_time is not None and s.end_time is not None for s in spans)
    assert all(s.start_time <= s.end_time for s in spans)  # type: ignore[operator]
