"""`GET /metrics` on the HTTP app: actorflow's metrics as Prometheus text (through
opentelemetry-exporter-prometheus's reader), and a clear 404 when they are off."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client.parser import text_string_to_metric_families

import actorflow as af
from actorflow.http import asgi_app
from actorflow.otel import ActorflowInstrumentor


@af.step
async def add_one(x: int) -> int:
    return x + 1


@af.workflow
async def prometheus_counted(x: int) -> int:
    return await add_one(await add_one(x))


@pytest.fixture
def prometheus() -> Iterator[None]:
    """actorflow instrumented with a Prometheus reader (on prometheus_client's registry)."""
    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    instrumentor = ActorflowInstrumentor()
    instrumentor.instrument(meter_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        provider.shutdown()  # takes the reader off the registry


async def client(engine: af.Engine, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app(engine, token))
    async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
        yield http


async def test_metrics_parse_as_prometheus_text(prometheus: None, engine: af.Engine) -> None:
    for i in range(3):
        assert await (await engine.start(prometheus_counted, i)).result() == i + 2
    async for http in client(engine):
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    started = families["actorflow_runs_started"]
    assert started.type == "counter"
    totals = [(s.labels["workflow"], s.value) for s in started.samples if s.name.endswith("_total")]
    assert totals == [("prometheus_counted", 3.0)]
    finished = {
        s.labels["outcome"]: s.value
        for s in families["actorflow_runs_finished"].samples
        if s.name.endswith("_total")
    }
    assert finished == {"completed": 3.0}
    steps = families["actorflow_step_duration_seconds"]
    assert steps.type == "histogram"
    counts = [s.value for s in steps.samples if s.name.endswith("_count")]
    assert counts == [6.0]


async def test_metrics_need_the_token_the_api_needs(prometheus: None, engine: af.Engine) -> None:
    async for http in client(engine, token="secret"):
        assert (await http.get("/metrics")).status_code == 401
        answered = await http.get("/metrics", headers={"Authorization": "Bearer secret"})
    assert answered.status_code == 200


async def test_metrics_off_is_a_404_saying_how_to_turn_them_on(engine: af.Engine) -> None:
    assert not ActorflowInstrumentor().is_instrumented
    async for http in client(engine):
        response = await http.get("/metrics")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "NotFound"
    assert "ActorflowInstrumentor().instrument(" in error["message"]
    assert "PrometheusMetricReader" in error["message"]


async def test_metrics_without_the_extra_is_a_404_naming_it(
    engine: af.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    async for http in client(engine):
        response = await http.get("/metrics")
    assert response.status_code == 404
    assert "pip install 'actorflow[otel]'" in response.json()["error"]["message"]
