"""Count what one OpenTelemetry SDK call costs, with valgrind (README, Observability, Cost).

    python -m benchmarks.otel_sdk [span7|span4|span0|hist3|hist1|hist0 ...]

For each kind of call, runs a loop of 1,000 and of 3,000 such calls under
`valgrind --tool=callgrind` and prints (instructions(3,000) -
instructions(1,000)) / 2,000: the instructions of one call, start-up cancelled
out. `spanN`: a span with N attributes, started under a sampled parent and
ended, through `SimpleSpanProcessor` to `InMemorySpanExporter` (as
`benchmarks.instructions --otel`); `histN`: a histogram record with N attributes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any

KINDS = ("span7", "span4", "span0", "hist3", "hist1", "hist0")
_IR = re.compile(r"refs:\s+([\d,]+)")
ATTRIBUTES: dict[str, Any] = {
    "actorflow.run_id": "2f3c9a5e6b7d4c1a",
    "actorflow.workflow": "bench.instructions",
    "actorflow.generation": 0,
    "actorflow.step.name": "add_one",
    "actorflow.step.seq": 1,
    "actorflow.step.attempt": 1,
    "actorflow.outcome": "completed",
}
METRIC_ATTRIBUTES = {"workflow": "bench.instructions", "step": "add_one", "outcome": "completed"}


def calls(kind: str, n: int) -> None:
    """The measured program: `n` calls of `kind`."""
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("bench")
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    histogram = meter.create_histogram("bench.seconds", "s")
    parent = trace.NonRecordingSpan(
        trace.SpanContext(1, 2, False, trace.TraceFlags(trace.TraceFlags.SAMPLED))
    )
    context = trace.set_span_in_context(parent, Context())
    size = int(kind[-1])
    span_attributes = dict(list(ATTRIBUTES.items())[len(ATTRIBUTES) - size :])
    metric_attributes = dict(list(METRIC_ATTRIBUTES.items())[:size])
    for i in range(n):
        if kind.startswith("span"):
            attrs = dict(span_attributes)
            span = tracer.start_span("step add_one", context, attributes=attrs, start_time=1)
            span.end(end_time=2)
            if i % 1000 == 999:
                exporter.clear()
        else:
            histogram.record(0.5, dict(metric_attributes))


def count(kind: str, n: int) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    command = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
               "-m", "benchmarks.otel_sdk", "--child", kind, str(n)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = _IR.search(done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        calls(args[1], int(args[2]))
        return
    for kind in args or KINDS:
        if kind not in KINDS:
            raise SystemExit(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        per_call = (count(kind, 3000) - count(kind, 1000)) / 2000
        print(f"{kind}: {per_call:,.0f} instructions per call")


if __name__ == "__main__":
    main()
