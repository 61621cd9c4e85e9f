"""`GET /metrics`: actorflow's OpenTelemetry metrics as Prometheus text.

The text is prometheus_client's default registry, which the
`PrometheusMetricReader` of the meter provider actorflow is instrumented with
fills (`actorflow[otel]`). Without the extra, or uninstrumented, the route
answers 404 saying what is missing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ._problems import error_response

NOT_INSTALLED = (
    "metrics need the otel extra: pip install 'actorflow[otel]' "
    "(opentelemetry-exporter-prometheus, prometheus_client)"
)
NOT_INSTRUMENTED = (
    "metrics are off: run actorflow serve with --metrics, or call "
    "actorflow.otel.ActorflowInstrumentor().instrument("
    "meter_provider=MeterProvider(metric_readers=[PrometheusMetricReader()]))"
)


async def prometheus_metrics(request: Request) -> Response:
    """200 with the Prometheus text exposition; 404 when metrics are not available."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        from actorflow.otel import ActorflowInstrumentor
    except ImportError:
        return error_response(404, "NotFound", NOT_INSTALLED)
    if not ActorflowInstrumentor().is_instrumented:
        return error_response(404, "NotFound", NOT_INSTRUMENTED)
    # On the loop's thread: collecting reads the engines' live runs (the gauge).
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
