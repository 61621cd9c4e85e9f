"""The program the OpenTelemetry crash test runs in a subprocess (and kills with SIGKILL).

    python tests/otel_crash_program.py start|recover DB_PATH SPANS_PATH

Instrumented, with every finished span appended to SPANS_PATH as one JSON line.
`start` starts one run of `two_steps` inside a span `caller`, prints `started`,
and, once the first step is done, prints `first-done` while the second step
blocks forever (the test kills it then). `recover` opens the engine (which
recovers the run), waits for the run to finish and prints `finished`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `actorflow` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import actorflow as af
from actorflow.otel import ActorflowInstrumentor

blocking = False


class FileExporter(SpanExporter):
    """Appends each span as a JSON line (one write each: a kill never leaves half a line)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = b"".join(
            orjson.dumps(
                {
                    "name": s.name,
                    "trace_id": f"{s.context.trace_id:032x}",
                    "span_id": f"{s.context.span_id:016x}",
                    "parent": None if s.parent is None else f"{s.parent.span_id:016x}",
                    "attributes": dict(s.attributes or {}),
                    "pid": os.getpid(),
                }
            )
            + b"\n"
            for s in spans
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines)
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


@af.step
async def first() -> int:
    return 1


@af.step
async def second() -> int:
    if blocking:
        say("first-done")
        await asyncio.Event().wait()
    return 2


@af.workflow
async def two_steps() -> int:
    return await first() + await second()


async def main(mode: str, db: str, spans: str) -> None:
    global blocking
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(spans)))
    ActorflowInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("caller")
    async with af.Engine(f"sqlite:///{db}") as engine:
        if mode == "start":
            blocking = True
            with tracer.start_as_current_span("caller"):
                await engine.start(two_steps, id="crash-run")
            say("started")
            await asyncio.Event().wait()
        run = engine.get_run("crash-run")
        say(f"finished {await run.result(timeout=30)}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
