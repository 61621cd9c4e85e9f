"""`actorflow serve MODULE`: an engine and the HTTP API in one process, served by uvicorn.

The production process of a standalone deployment. SIGTERM or Ctrl-C shuts it
down cleanly: the engine closes first (its runs stop where their logs are and
continue on the next start; Server-Sent Events readers and result waits end, so
clients reconnect), then uvicorn drains the connections, then the store file and
its lock are released.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import click

import actorflow as af

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import TracerProvider

DEFAULT_DB = "sqlite:///actorflow.db"


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def is_loopback_host(host: str) -> bool:
    """Whether binding to `host` exposes the server only to this machine."""
    from actorflow.http import is_loopback

    if host == "localhost":
        return True
    return is_loopback(host)


def import_workflows(module: str) -> None:
    """Import `module` from the current directory, as uvicorn does with its app."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise  # the module exists; something it imports does not
        _fail(f"cannot import module {module!r} from {cwd}: {exc}", 2)


@click.command()
@click.argument("module")
@click.option("--db", default=DEFAULT_DB, show_default=True, help="store URL")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="ACTORFLOW_TOKEN",
    help="bearer token every /v1 request must carry (or ACTORFLOW_TOKEN); "
    "required to bind to a non-loopback address",
)
@click.option(
    "--metrics",
    is_flag=True,
    envvar="ACTORFLOW_METRICS",
    help="serve GET /metrics (Prometheus text): actorflow's OpenTelemetry metrics, "
    "no spans (or ACTORFLOW_METRICS=1; needs actorflow[otel])",
)
@click.option(
    "--otlp",
    is_flag=True,
    envvar="ACTORFLOW_OTLP",
    help="export actorflow's spans and metrics over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT "
    "(default http://localhost:4318; the exporters' other OTEL_* variables apply; "
    "or ACTORFLOW_OTLP=1; needs actorflow[otel])",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve_command(
    module: str,
    db: str,
    host: str,
    port: int,
    token: str | None,
    metrics: bool,
    otlp: bool,
    log_level: str,
) -> None:
    """Serve the HTTP API for the workflows MODULE registers (imported from the
    current directory), with an engine on --db."""
    if not token and not is_loopback_host(host):
        _fail(f"refusing to serve on {host} without a token: pass --token or ACTORFLOW_TOKEN", 2)
    try:
        import actorflow.http  # noqa: F401
    except ImportError as exc:
        _fail(f"actorflow serve needs the http extra: pip install 'actorflow[http]' ({exc})", 2)
    import_workflows(module)
    with contextlib.ExitStack() as instrumented:
        if metrics or otlp:
            instrumented.enter_context(_telemetry(prometheus=metrics, otlp=otlp))
        try:
            af.run(_serve(db, host, port, token or None, log_level))
        except (af.StoreLockedError, OSError) as exc:
            _fail(f"{type(exc).__name__}: {exc}", 1)


@contextlib.contextmanager
def _telemetry(prometheus: bool, otlp: bool) -> Iterator[None]:
    """actorflow instrumented for a standalone server: metrics for `GET /metrics` (a
    Prometheus reader, on prometheus_client's default registry, which the route renders)
    and/or spans and metrics exported over OTLP/HTTP, as the standard OTEL_* environment
    variables configure the exporters; what is pending is exported at shutdown."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        from actorflow.otel import ActorflowInstrumentor

        resource = _resource()
        readers: list[MetricReader] = []
        tracer_provider: TracerProvider = NoOpTracerProvider()
        if prometheus:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader())
        if otlp:
            tracer_provider, reader = _otlp_exporters(resource)
            readers.append(reader)
    except ImportError as exc:
        flag = "--otlp" if otlp else "--metrics"
        _fail(f"{flag} needs the otel extra: pip install 'actorflow[otel]' ({exc})", 2)
    meter_provider = MeterProvider(metric_readers=readers, resource=resource)
    instrumentor = ActorflowInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        shutdown = getattr(tracer_provider, "shutdown", None)  # the SDK's: flushes spans
        if shutdown is not None:
            shutdown()
        meter_provider.shutdown()


def _otlp_exporters(resource: Resource) -> tuple[TracerProvider, MetricReader]:
    """A tracer provider (of `resource`) whose spans, and a metric reader whose metrics, go
    to the OTLP/HTTP endpoint the environment names (the exporters read
    OTEL_EXPORTER_OTLP_*)."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = SDKTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return tracer_provider, PeriodicExportingMetricReader(OTLPMetricExporter())


def _resource() -> Resource:
    """The process's resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, named
    `actorflow` unless they name it."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "actorflow"}))
    return resource


async def _serve(db: str, host: str, port: int, token: str | None, log_level: str) -> None:
    from actorflow.http import serve

    async with af.Engine(db) as engine:
        await serve(engine, host=host, port=port, token=token, log_level=log_level)
