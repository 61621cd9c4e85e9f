"""`actorflow serve --otlp`: a standalone server's spans and metrics, exported over OTLP/HTTP
to a collector named by OTEL_EXPORTER_OTLP_ENDPOINT (here a real HTTP server in this
process that keeps what it receives), flushed when the server shuts down."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests._cli import ROOT, cli, free_port, ok, serving


class Collector(ThreadingHTTPServer):
    """Answers OTLP/HTTP exports with 200 and keeps each request's path and body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Receive)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, path: str) -> list[bytes]:
        return [body for at, body in self.received if at == path]


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test reads what arrived, not a log of it


@contextmanager
def collecting() -> Iterator[Collector]:
    collector = Collector()
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        collector.shutdown()
        collector.server_close()
        thread.join(10)


def _spans(bodies: list[bytes]) -> list[tuple[str, str, dict[str, str]]]:
    """(service name, span name, string attributes) of every span exported."""
    found = []
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attrs = {a.key: a.value.string_value for a in span.attributes}
                    found.append((resource["service.name"], span.name, attrs))
    return found


def _metric_names(bodies: list[bytes]) -> set[str]:
    names = set()
    for body in bodies:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                names.update(metric.name for metric in scope_metrics.metrics)
    return names


def test_serve_with_otlp_exports_the_spans_and_metrics_of_the_runs_it_served(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'otlp.db'}"
    with collecting() as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "orders"}
        with serving(db, options=("--otlp",), env=env) as url:
            started = cli("runs", "start", "cli_summed", "1", "2", "--wait", "--id", "o-1", url=url)
            assert ok(started) != ""
        # The server has exited: its batch processor and metric reader flushed on shutdown.
        spans = _spans(collector.bodies("/v1/traces"))
        metrics = _metric_names(collector.bodies("/v1/metrics"))
    names = sorted(name for _, name, _ in spans)
    assert names == ["run cli_summed", "step cli_add", "step cli_add"]
    assert {service for service, _, _ in spans} == {"orders"}
    assert all(attrs["actorflow.run_id"] == "o-1" for _, _, attrs in spans)
    assert {
        "actorflow.runs.started",
        "actorflow.runs.finished",
        "actorflow.step.duration",
    } <= metrics


def test_serve_with_otlp_names_the_service_actorflow_by_default(tmp_path: Path) -> None:
    with collecting() as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
        with serving(f"sqlite:///{tmp_path / 'named.db'}", options=("--otlp",), env=env) as url:
            ok(cli("runs", "start", "cli_summed", "1", "1", "--wait", url=url))
        spans = _spans(collector.bodies("/v1/traces"))
    assert spans and {service for service, _, _ in spans} == {"actorflow"}


@pytest.mark.parametrize(
    ("flag", "missing"),
    [
        ("--otlp", "opentelemetry.exporter.otlp.proto.http"),
        ("--metrics", "opentelemetry.exporter.prometheus"),
    ],
)
def test_serve_without_the_exporter_installed_names_the_extra_to_install(
    tmp_path: Path, flag: str, missing: str
) -> None:
    """With the exporter's package absent (here: its import blocked in the server's
    process), `serve` exits with status 2 and says which extra to install, before it
    binds its port or opens the store."""
    absent = f"import sys; sys.modules[{missing!r}] = None; from actorflow.cli import main; main()"
    db = tmp_path / "never.db"
    done = subprocess.run(
        [sys.executable, "-c", absent, "serve", "tests.cli_workflows", "--db", f"sqlite:///{db}",
         "--port", str(free_port()), flag],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{flag} needs the otel extra: pip install 'actorflow[otel]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not db.exists()
