"""OpenTelemetry: the spans and metrics of runs, read with the SDK's in-memory exporter and
metric reader (`actorflow.otel`)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

import actorflow as af
from actorflow.otel import ActorflowInstrumentor

from .conftest import eventually, wait_for_status
from .databases import RefusedInserts, SQLiteDatabase


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
    name, *children = tree(spans, root)
    assert name == "run otel_parent"
    # The child run and the parent's wait for it begin in the same commit: either first.
    assert sorted(children) == [
        ["child otel_child"],
        ["run otel_child", ["step double"]],
        ["sleep"],
        ["step flaky"],
        ["step flaky"],
        ["step flaky"],
        ["wait_for_event go"],
    ]
    assert [c[0] for c in children[:5]] == [*["step flaky"] * 3, "sleep", "wait_for_event go"]
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


PROGRAM = Path(__file__).resolve().parent / "otel_crash_program.py"


async def _program(mode: str, db: Path, spans: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PROGRAM), mode, str(db), str(spans), stdout=asyncio.subprocess.PIPE
    )


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()


async def test_spans_after_sigkill_and_recovery_join_the_trace_once(tmp_path: Path) -> None:
    db, spans_file = tmp_path / "runs.db", tmp_path / "spans.jsonl"
    first = await _program("start", db, spans_file)
    try:
        assert await _line(first) == "started"
        assert await _line(first) == "first-done"
    finally:
        first.kill()
        await first.wait()
    second = await _program("recover", db, spans_file)
    assert await _line(second) == "finished 3"
    assert await second.wait() == 0
    spans = [orjson.loads(line) for line in spans_file.read_text().splitlines()]
    names = [(s["name"], s["pid"]) for s in spans]
    assert sorted(names) == sorted(
        [
            ("caller", first.pid),
            ("step first", first.pid),
            ("step second", second.pid),  # the killed attempt is never emitted
            ("run two_steps", second.pid),
        ]
    )
    by_name = {s["name"]: s for s in spans}
    caller, run = by_name["caller"], by_name["run two_steps"]
    assert {s["trace_id"] for s in spans} == {caller["trace_id"]}
    assert run["parent"] == caller["span_id"]
    # Both processes parent the steps to the same run span: the one the second emitted.
    assert by_name["step first"]["parent"] == run["span_id"]
    assert by_name["step second"]["parent"] == run["span_id"]
    assert by_name["step second"]["attributes"]["actorflow.step.attempt"] == 2


async def test_a_run_joins_the_callers_span_or_a_given_trace_context(
    telemetry: Telemetry, sqlite_url: str
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with af.Engine(sqlite_url) as engine:
        with tracer.start_as_current_span("caller") as caller:
            joined = await engine.start(otel_child, 1)
        remote = await engine.start(otel_child, 2, trace_context={"traceparent": given})
        assert await joined.result(timeout=10) == 2
        assert await remote.result(timeout=10) == 4
        with pytest.raises(TypeError):
            await engine.start(otel_child, 3, trace_context={"traceparent": 1})  # type: ignore[dict-item]
        # The carrier is stored with the run (so a recovering process finds it).
        events = [e async for e in remote.events()]
    assert events[0].data == {"trace_context": {"traceparent": given}}
    spans = telemetry.spans()
    runs = {s.attributes["actorflow.run_id"]: s for s in spans if s.name == "run otel_child"}
    steps = {s.attributes["actorflow.run_id"]: s for s in spans if s.name == "step double"}
    first, second = runs[joined.id], runs[remote.id]
    assert first.context.trace_id == caller.get_span_context().trace_id
    assert first.parent is not None and first.parent.span_id == caller.get_span_context().span_id
    assert second.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert second.parent is not None and second.parent.span_id == 0xB7AD6B7169203331
    for run_id, run in runs.items():
        step = steps[run_id]
        assert step.parent is not None and step.parent.span_id == run.context.span_id


@af.step
async def fails_once(key: str) -> None:
    flaky_calls[key] = flaky_calls.get(key, 0) + 1
    if flaky_calls[key] == 1:
        raise RuntimeError("first attempt fails")


@af.workflow
async def measured(key: str) -> str:
    await fails_once(key)
    await af.sleep(0.01)
    return key


@af.step
async def holds_the_slot() -> None:
    await asyncio.sleep(0.05)


@af.workflow(concurrency=1)
async def one_at_a_time() -> None:
    await holds_the_slot()


@af.workflow
async def waits_forever() -> None:
    await af.wait_for_event("never")


def _value(points: list[Any], **attrs: Any) -> Any:
    found = [p for p in points if all(p.attributes.get(k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, points)
    return found[0]


async def test_metrics_after_a_known_workload(telemetry: Telemetry, sqlite_url: str) -> None:
    async with af.Engine(sqlite_url) as engine:
        runs = [await engine.start(measured, f"{sqlite_url}-{i}") for i in range(3)]
        runs += [await engine.start(one_at_a_time) for _ in range(3)]
        for run in runs:
            await run.result(timeout=10)
        stopped = await engine.start(waits_forever)
        await wait_for_status(stopped, af.RunStatus.WAITING)
        assert _value(telemetry.points("actorflow.actors.live"), status="waiting").value == 1
        await stopped.terminate()
    t = telemetry
    assert _value(t.points("actorflow.runs.started"), workflow="measured").value == 3
    assert _value(t.points("actorflow.runs.started"), workflow="waits_forever").value == 1
    finished = t.points("actorflow.runs.finished")
    assert _value(finished, workflow="measured", outcome="completed").value == 3
    assert _value(finished, workflow="waits_forever", outcome="terminated").value == 1
    assert _value(t.points("actorflow.step.retries"), step="fails_once").value == 3
    durations = t.points("actorflow.step.duration")
    assert _value(durations, step="fails_once", outcome="retrying").count == 3
    assert _value(durations, step="fails_once", outcome="completed").count == 3
    finished_steps = t.points("actorflow.steps.finished")
    assert _value(finished_steps, step="fails_once", outcome="completed", attempts="2").value == 3
    assert _value(finished_steps, step="holds_the_slot", attempts="1").value == 3
    lateness = _value(t.points("actorflow.timer.lateness"), workflow="measured")
    assert lateness.count == 3 and 0 <= lateness.max < 5
    # Only runs a concurrency limit applies to: the third waited for two 50 ms steps.
    queue_waits = t.points("actorflow.run.queue_wait")
    assert [p.attributes["workflow"] for p in queue_waits] == ["one_at_a_time"]
    assert queue_waits[0].count == 3 and queue_waits[0].max >= 0.1
    batches = _value(t.points("actorflow.commit.batch_size"))
    assert batches.count >= 1 and batches.sum >= 3 * 6  # each run: created, 4 step rows, ...
    assert _value(t.points("actorflow.commit.latency")).count == batches.count


async def test_instrumenting_again_with_one_meter_provider_counts_on_once(
    sqlite_url: str,
) -> None:
    found = Telemetry()
    instrumentor = ActorflowInstrumentor()
    try:
        async with af.Engine(sqlite_url) as engine:
            instrumentor.instrument(found.tracer_provider, found.meter_provider)
            await (await engine.start(measured, "again-1")).result(timeout=10)
            instrumentor.uninstrument()
            await (await engine.start(measured, "unseen")).result(timeout=10)
            instrumentor.instrument(found.tracer_provider, found.meter_provider)
            await (await engine.start(measured, "again-2")).result(timeout=10)
    finally:
        instrumentor.uninstrument()
    # One series (not one per instrument() call), counting only what ran instrumented.
    assert _value(found.points("actorflow.runs.started"), workflow="measured").value == 2
    finished = _value(found.points("actorflow.runs.finished"), outcome="completed")
    assert finished.value == 2


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(af.RunLogFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


user_log = logging.getLogger("tests.user_code")


@af.step(retry=af.Retry(limit=1, delay=0))
def logs_in_a_thread(key: str) -> None:
    user_log.warning("sync step %s", key)
    flaky_calls[key] = flaky_calls.get(key, 0) + 1
    if flaky_calls[key] == 1:
        raise RuntimeError("again")


@af.workflow
async def logging_workflow(key: str) -> None:
    user_log.warning("workflow body")
    await logs_in_a_thread(key)


async def test_log_records_name_the_run_step_and_attempt(sqlite_url: str) -> None:
    handler = Records()
    user_log.addHandler(handler)
    try:
        async with af.Engine(sqlite_url) as engine:
            run = await engine.start(logging_workflow, sqlite_url)
            await run.result(timeout=10)
        user_log.warning("outside", extra={"run_id": "given"})
    finally:
        user_log.removeHandler(handler)
    seen = [(r.getMessage(), r.run_id, r.workflow, r.step, r.attempt) for r in handler.records]  # type: ignore[attr-defined]
    assert seen == [
        ("workflow body", run.id, "logging_workflow", None, None),
        (f"sync step {sqlite_url}", run.id, "logging_workflow", "logs_in_a_thread", 1),
        (f"sync step {sqlite_url}", run.id, "logging_workflow", "logs_in_a_thread", 2),
        ("outside", "given", None, None, None),
    ]


@af.workflow
async def waits_then_steps(x: int) -> int:
    await af.wait_for_event("go")
    return await double(x)


async def test_an_evicted_run_rehydrates_without_emitting_twice(
    telemetry: Telemetry, sqlite_url: str
) -> None:
    async with af.Engine(sqlite_url, idle_timeout=0) as engine:
        run = await engine.start(waits_then_steps, 5)
        await eventually(lambda: engine.live_actors() == 0)
        await run.send_event("go")
        assert await run.result(timeout=10) == 10
        await run.restart()
        assert await run.result(timeout=10) == 10
    spans = telemetry.spans()
    runs = sorted(
        (s for s in spans if s.name == "run waits_then_steps"),
        key=lambda s: s.attributes["actorflow.generation"],
    )
    assert [r.attributes["actorflow.generation"] for r in runs] == [0, 1]
    assert runs[0].context.trace_id == runs[1].context.trace_id
    for generation, run_span in enumerate(runs):
        children = [s for s in spans if s.parent and s.parent.span_id == run_span.context.span_id]
        assert sorted(s.name for s in children) == ["step double", "wait_for_event go"]
        assert all(s.attributes["actorflow.generation"] == generation for s in children)
    assert _value(telemetry.points("actorflow.actors.evictions")).value >= 1
    rehydrated = telemetry.points("actorflow.actors.rehydrations")
    assert _value(rehydrated, workflow="waits_then_steps").value >= 1


@af.step
async def starts_a_run() -> str:
    run = await af.start(otel_child, 4)
    return run.id


@af.workflow
async def starts_from_a_step() -> str:
    return await starts_a_run()


async def test_a_run_started_by_a_step_joins_the_starting_runs_trace(
    telemetry: Telemetry, sqlite_url: str
) -> None:
    async with af.Engine(sqlite_url) as engine:
        run = await engine.start(starts_from_a_step)
        started = engine.get_run(await run.result(timeout=10))
        assert await started.result(timeout=10) == 8
        await eventually(
            lambda: len([s for s in telemetry.spans() if s.name.startswith("run")]) == 2
        )
    spans = {s.name: s for s in telemetry.spans()}
    starter, child = spans["run starts_from_a_step"], spans["run otel_child"]
    assert child.context.trace_id == starter.context.trace_id
    assert child.parent is not None and child.parent.span_id == starter.context.span_id


async def test_the_samplers_decision_on_a_run_holds_for_all_its_spans(sqlite_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(0.5))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = ActorflowInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=MeterProvider())
    try:
        async with af.Engine(sqlite_url) as engine:
            runs = [await engine.start(otel_child, i) for i in range(20)]
            for run in runs:
                await run.result(timeout=10)
    finally:
        instrumentor.uninstrument()
    per_run = Counter(s.attributes["actorflow.run_id"] for s in exporter.get_finished_spans())
    assert set(per_run.values()) == {2}  # a run's span and its step's, or neither
    assert 0 < len(per_run) < 20


async def test_a_failed_commit_is_counted_and_emits_nothing(
    telemetry: Telemetry, sqlite_url: str
) -> None:
    async with af.Engine(sqlite_url) as engine:
        run = await engine.start(waits_then_steps, 1)
        await wait_for_status(run, af.RunStatus.WAITING)
        database = SQLiteDatabase(Path(sqlite_url.removeprefix("sqlite:///")))
        refused = RefusedInserts(database, "NEW.kind = 'event_received'")
        with pytest.raises(af.StoreWriteError):
            await run.send_event("go")
        refused.stop()
        await run.send_event("go")
        assert await run.result(timeout=10) == 2
    assert _value(telemetry.points("actorflow.store.write_failures")).value == 1
    waits = [s for s in telemetry.spans() if s.name == "wait_for_event go"]
    assert len(waits) == 1


async def test_a_scheduled_runs_spans_name_its_schedule(
    telemetry: Telemetry, sqlite_url: str
) -> None:
    async with af.Engine(sqlite_url) as engine:
        schedule = await engine.create_schedule(
            "every-second", otel_child, "* * * * * *", args=(1,)
        )

        async def fired() -> str | None:
            recent = (await schedule.info()).recent
            return recent[0].run_id if recent and recent[0].run_id else None

        run_id = await eventually(fired, timeout=10)
        await schedule.pause()
        assert await engine.get_run(run_id).result(timeout=10) == 2
    spans = [s for s in telemetry.spans() if s.attributes["actorflow.run_id"] == run_id]
    assert sorted(s.name for s in spans) == ["run otel_child", "step double"]
    assert {s.attributes["actorflow.schedule_id"] for s in spans} == {"every-second"}
