"""RunSpans: spans (and the metrics that come with them) built from committed log entries.

Each run this process knows of has a `RunTrace`: its trace context and the
calls whose start is committed and whose end is not yet (step attempts,
sleeps, waits, children, hooks). When the end is committed the call's span
is emitted whole, with the entries' own times, so a span never shows what
the log does not hold. A rehydrated run's trace is rebuilt from its loaded
log without emitting anything (`load`), so nothing is emitted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import _log as L
from .. import _observe
from .._context import HOOK_PREFIX, current_step
from .._observe import TRACE_CONTEXT_KEY
from .._serde import loads
from .._store import EventRow, RunRow
from ._ids import PresetIds, run_span_id, run_trace_id
from ._metrics import RunMetrics

PROPAGATOR = TraceContextTextMapPropagator()
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class Call:
    """A call whose start is committed: what its span needs once it ends."""

    __slots__ = ("at", "attempt", "due", "key", "name")

    def __init__(
        self, name: str, at: float, attempt: int = 0, due: float | None = None, key: str = ""
    ) -> None:
        self.name = name
        self.at = at
        self.attempt = attempt
        self.due = due
        self.key = key


class RunTrace:
    """One run's trace context and open calls, for its current generation."""

    __slots__ = (
        "began_at", "calls", "committed", "context", "created_at", "flags", "generation",
        "parent", "received", "recording", "run_attributes", "run_id", "schedule_id", "span_id",
        "started", "trace_id", "workflow",
    )  # fmt: skip

    def __init__(
        self,
        row: RunRow,
        carrier: Mapping[str, str] | None,
        sampled: Callable[[int, Context | None], bool],
    ) -> None:
        self.run_id = row.id
        self.workflow = row.workflow
        self.created_at = row.created_at
        self.committed = False
        self.started = row.started_at is not None
        self.schedule_id: str | None = None
        parent = trace.INVALID_SPAN_CONTEXT
        if carrier:
            extracted = PROPAGATOR.extract(dict(carrier), context=Context())
            parent = trace.get_current_span(extracted).get_span_context()
        if parent.is_valid:
            self.parent: Context = trace.set_span_in_context(NonRecordingSpan(parent), Context())
            self.trace_id, self.flags = parent.trace_id, parent.trace_flags
        else:
            self.parent = Context()
            self.trace_id = run_trace_id(row.id, row.created_at)
            # The run span is ended last, but its sampling decides its calls' spans too.
            self.flags = SAMPLED if sampled(self.trace_id, None) else NOT_SAMPLED
        self.calls: dict[int, Call] = {}
        # Events received with no wait for them yet, by key: a later wait takes one at once.
        self.received: dict[str, int] = {}
        self.begin(row.generation, row.created_at if row.generation == 0 else row.started_at)
        # Whether the sampler keeps the spans under the run's (the SDK's samplers decide by
        # the trace id and the parent's flags): if not, they are not made at all.
        joined = parent.is_valid
        self.recording = sampled(self.trace_id, self.context) if joined else self.flags.sampled

    def begin(self, generation: int, at: float | None) -> None:
        """Start tracing `generation`, which began at `at`."""
        self.generation = generation
        self.run_attributes: dict[str, Any] | None = None
        self.began_at = self.created_at if at is None else at
        self.span_id = run_span_id(self.run_id, self.created_at, generation)
        span = NonRecordingSpan(SpanContext(self.trace_id, self.span_id, False, self.flags))
        self.context = trace.set_span_in_context(span, Context())
        self.calls.clear()
        self.received.clear()

    def carrier(self) -> dict[str, str]:
        """The trace context a child of this run stores: its run span is the parent."""
        return {"traceparent": f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"}

    def attributes(self) -> dict[str, Any]:
        """A new dict of the attributes every span of the run has."""
        attrs = self.run_attributes
        if attrs is None:
            attrs = self.run_attributes = {
                "actorflow.run_id": self.run_id,
                "actorflow.workflow": self.workflow,
                "actorflow.generation": self.generation,
            }
            if self.schedule_id is not None:
                attrs["actorflow.schedule_id"] = self.schedule_id
        return attrs.copy()

    def scheduled(self, schedule_id: str | None) -> None:
        """The run was started by a tick of schedule `schedule_id` (None: it was not)."""
        self.schedule_id = schedule_id
        self.run_attributes = None


class RunSpans:
    """The `RunTrace` of every unfinished run seen here, fed committed and loaded rows."""

    def __init__(self, tracer: trace.Tracer, metrics: RunMetrics) -> None:
        self.tracer = tracer
        self.metrics = metrics
        self.traces: dict[str, RunTrace] = {}
        # The SDK's tracer draws ids from `id_generator`: run spans need derived ones.
        inner = getattr(tracer, "id_generator", None)
        self.ids = PresetIds(inner) if inner is not None else None
        if self.ids is not None:
            tracer.id_generator = self.ids  # type: ignore[attr-defined]
        self._sampler: Any = getattr(tracer, "sampler", None)
        # A no-op tracer (metrics only): no run is sampled, so no span is even started.
        self._tracing = not isinstance(tracer, trace.NoOpTracer)
        self._handlers = {
            L.STEP_STARTED: self._step_started,
            L.STEP_COMPLETED: self._step_ended,
            L.STEP_RETRYING: self._step_ended,
            L.STEP_FAILED: self._step_ended,
            L.SLEEP_STARTED: self._sleep_started,
            L.SLEEP_FIRED: self._call_ended,
            L.WAIT_STARTED: self._wait_started,
            L.WAIT_TIMED_OUT: self._call_ended,
            L.EVENT_RECEIVED: self._event_received,
            L.HOOK_CREATED: self._hook_created,
            L.CHILD_STARTED: self._child_started,
            L.CHILD_FINISHED: self._call_ended,
            L.RUN_COMPLETED: self._run_ended,
            L.RUN_FAILED: self._run_ended,
            L.RUN_TERMINATED: self._run_ended,
        }

    def _sampled(self, trace_id: int, parent: Context | None) -> bool:
        """Whether the SDK's sampler keeps a span of trace `trace_id` under `parent` (a root
        run span for None; with the usual samplers, the decision depends on the trace id and
        the parent's flags alone: every process agrees)."""
        if self._sampler is None:
            return self._tracing
        result = self._sampler.should_sample(parent, trace_id, "run")
        return bool(result.decision.is_sampled())

    def close(self) -> None:
        """Give the tracer its own id generator back."""
        if self.ids is not None:
            self.tracer.id_generator = self.ids.inner  # type: ignore[attr-defined]

    # -- what the observer hears -----------------------------------------------------------

    def creating(self, row: RunRow, given: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if given is not None:
            carrier: Mapping[str, str] | None = given
        elif row.parent_id is not None:
            parent = self.traces.get(row.parent_id)
            carrier = None if parent is None else parent.carrier()
        else:
            current: dict[str, str] = {}
            PROPAGATOR.inject(current)
            carrier = current or self._starting_step()
        if row.id not in self.traces:  # else: an evicted run of this id (the id is taken)
            self.traces[row.id] = RunTrace(row, carrier, self._sampled)
        return carrier

    def created(self, row: RunRow, events: list[EventRow], conflict: bool) -> None:
        trace_ = self.traces.get(row.id)
        if conflict:
            if trace_ is not None and not trace_.committed:
                del self.traces[row.id]
            return
        fields = _creation_fields(events[0])
        if trace_ is None:  # created by a process, or before `instrument()`, without a carrier
            trace_ = self.traces[row.id] = RunTrace(row, _carrier(fields), self._sampled)
        trace_.scheduled(_schedule_id(fields))
        trace_.committed = True
        self.metrics.run_started(row.workflow)
        self.update(row.id, row.status, row.started_at)

    def update(self, run_id: str, status: object, started_at: object) -> None:
        """A run's row changed: the first time it runs, record how long it queued (if a
        concurrency limit applies to it: other runs never wait for a slot, and a histogram
        record costs as much as a tenth of a 3-step run)."""
        trace_ = self.traces.get(run_id)
        if trace_ is None or trace_.started or status != "running":
            return
        trace_.started = True
        workflow = trace_.workflow
        if isinstance(started_at, float) and _observe.is_limited(workflow):
            self.metrics.queue_waited(workflow, started_at - trace_.created_at)

    def committed(self, row: EventRow) -> None:
        trace_ = self.traces.get(row.run_id)
        if trace_ is None or row.generation != trace_.generation:
            return  # unknown, or stale
        handler = self._handlers.get(row.kind)
        if handler is not None:
            # A restart copies entries older than it into the new generation: they bring
            # its state (events still buffered) up to date, but were reported already.
            handler(trace_, row, row.at >= trace_.began_at)

    def load(self, row: RunRow, events: list[EventRow], restarted: bool) -> None:
        trace_ = self.traces.get(row.id)
        if trace_ is not None and trace_.generation == row.generation:
            return  # evicted and rehydrated here: its trace is up to date
        if trace_ is not None and restarted:
            self._end_run_span(trace_, row.started_at or trace_.began_at, "restarted", None)
            trace_.begin(row.generation, row.started_at)
        else:
            fields = _creation_fields(events[0]) if events else {}
            trace_ = self.traces[row.id] = RunTrace(row, _carrier(fields), self._sampled)
            trace_.scheduled(_schedule_id(fields))
        trace_.committed = True
        if restarted:
            return
        handlers = self._handlers
        for event in events:
            if event.generation == row.generation:
                handler = handlers.get(event.kind)
                if handler is not None:
                    handler(trace_, event, False)

    def _starting_step(self) -> Mapping[str, str] | None:
        """For a run started by step code (`af.start` in a step), the starting run's trace."""
        step = current_step()  # not step_info(): outside a step it raises, at each start
        starter = None if step is None else self.traces.get(step.info.run_id)
        return None if starter is None else starter.carrier()

    # -- entries ---------------------------------------------------------------------------

    def _step_started(self, run: RunTrace, row: EventRow, live: bool) -> None:
        assert row.seq is not None and row.name is not None
        run.calls[row.seq] = Call(row.name, row.at, loads(row.data or b"{}")["attempt"])

    def _step_ended(self, run: RunTrace, row: EventRow, live: bool) -> None:
        call = run.calls.pop(row.seq, None) if row.seq is not None else None
        if call is None or not live:
            return
        error = delay = None
        if row.kind == L.STEP_COMPLETED:
            outcome = "completed"
        else:
            data = loads(row.data or b"{}")
            error = data.get("error")
            outcome = "failed"
            if row.kind == L.STEP_RETRYING:
                outcome = "retrying"
                delay = max(0.0, data["retry_at"] - row.at)
        if run.recording:  # else no attributes to build
            attrs = run.attributes()
            attrs["actorflow.step.name"] = call.name
            attrs["actorflow.step.seq"] = row.seq
            attrs["actorflow.step.attempt"] = call.attempt
            if delay is not None:
                attrs["actorflow.step.retry_delay"] = delay
            attrs["actorflow.outcome"] = outcome
            self._emit(run, f"step {call.name}", call.at, row.at, attrs, error)
        self.metrics.step_ended(run.workflow, call.name, outcome, row.at - call.at, call.attempt)

    def _sleep_started(self, run: RunTrace, row: EventRow, live: bool) -> None:
        assert row.seq is not None
        due = loads(row.data or b"{}").get("fire_at")
        run.calls[row.seq] = Call("sleep", row.at, due=due)

    def _wait_started(self, run: RunTrace, row: EventRow, live: bool) -> None:
        assert row.seq is not None and row.name is not None
        call = Call(f"wait_for_event {row.name}", row.at, key=row.name)
        if run.received.get(row.name):
            run.received[row.name] -= 1
            if live:  # the event was here first: the wait ends as it begins
                self._emit(run, call.name, row.at, row.at, self._call_attrs(run, row), None)
            return
        run.calls[row.seq] = call

    def _hook_created(self, run: RunTrace, row: EventRow, live: bool) -> None:
        assert row.seq is not None and row.name is not None
        if row.data is None:  # else the token was taken: the call failed at once
            run.calls[row.seq] = Call("hook", row.at, key=HOOK_PREFIX + row.name)

    def _child_started(self, run: RunTrace, row: EventRow, live: bool) -> None:
        assert row.seq is not None
        data = loads(row.data or b"{}")
        if "error" in data:  # the child's id was taken: the call failed
            call = run.calls.pop(row.seq, None)
            if call is not None and live:
                error = {"type": "RunAlreadyExistsError", "message": data["error"]}
                self._emit(run, call.name, call.at, row.at, self._call_attrs(run, row), error)
            return
        run.calls[row.seq] = Call(f"child {row.name}", row.at, key=data["run_id"])

    def _event_received(self, run: RunTrace, row: EventRow, live: bool) -> None:
        key = row.name or ""
        seq = min(
            (s for s, c in run.calls.items() if c.key == key and c.attempt == 0), default=None
        )
        if seq is None or run.calls[seq].name.startswith("child "):
            run.received[key] = run.received.get(key, 0) + 1
            return
        call = run.calls.pop(seq)
        if live:
            attrs = self._call_attrs(run, row, seq)
            self._emit(run, call.name, call.at, row.at, attrs, None)

    def _call_ended(self, run: RunTrace, row: EventRow, live: bool) -> None:
        call = run.calls.pop(row.seq, None) if row.seq is not None else None
        if call is None or not live:
            return
        attrs = self._call_attrs(run, row)
        error = None
        if row.kind == L.WAIT_TIMED_OUT:
            attrs["actorflow.outcome"] = "timed_out"
        elif row.kind == L.CHILD_FINISHED:
            attrs["actorflow.child.run_id"] = call.key
            data = loads(row.data or b"{}")
            attrs["actorflow.outcome"] = data.get("status")
            error = data.get("error")
        elif call.due is not None:
            self.metrics.timer_late(run.workflow, row.at - call.due)
        self._emit(run, call.name, call.at, row.at, attrs, error)

    def _run_ended(self, run: RunTrace, row: EventRow, live: bool) -> None:
        if not live:
            return
        del self.traces[run.run_id]
        outcome = row.kind.removeprefix("run_")
        error = loads(row.data) if row.kind == L.RUN_FAILED and row.data else None
        self._end_run_span(run, row.at, outcome, error)
        self.metrics.run_finished(run.workflow, outcome, row.at - run.created_at)

    # -- emitting --------------------------------------------------------------------------

    @staticmethod
    def _call_attrs(run: RunTrace, row: EventRow, seq: int | None = None) -> dict[str, Any]:
        attrs = run.attributes()
        attrs["actorflow.seq"] = row.seq if seq is None else seq
        return attrs

    def _end_run_span(
        self, run: RunTrace, at: float, outcome: str, error: dict[str, Any] | None
    ) -> None:
        if not run.recording:
            return
        attrs = run.attributes()
        attrs["actorflow.outcome"] = outcome
        ids = self.ids
        if ids is not None:
            ids.span_id = run.span_id
            ids.trace_id = run.trace_id
        try:
            self._emit(run, f"run {run.workflow}", run.began_at, at, attrs, error, run.parent)
        finally:
            if ids is not None:
                ids.span_id = ids.trace_id = None

    def _emit(
        self,
        run: RunTrace,
        name: str,
        start: float,
        end: float,
        attrs: dict[str, Any],
        error: dict[str, Any] | None,
        context: Context | None = None,
    ) -> None:
        if not run.recording:
            return  # the SDK would make a span that records nothing: skip its cost
        span = self.tracer.start_span(
            name,
            context=run.context if context is None else context,
            attributes=attrs,
            start_time=int(start * 1e9),
        )
        if error is not None:
            span.set_attribute("exception.type", str(error.get("type")))
            span.set_attribute("exception.message", str(error.get("message")))
            span.set_status(
                Status(StatusCode.ERROR, f"{error.get('type')}: {error.get('message')}")
            )
        span.end(end_time=int(end * 1e9))


def _creation_fields(created: EventRow) -> dict[str, Any]:
    """What a run's `run_created` entry holds (its trace context, its schedule tick)."""
    if created.kind != L.RUN_CREATED or created.data is None:
        return {}
    value = loads(created.data)
    return value if isinstance(value, dict) else {}


def _carrier(fields: dict[str, Any]) -> Mapping[str, str] | None:
    value = fields.get(TRACE_CONTEXT_KEY)
    return value if isinstance(value, dict) else None


def _schedule_id(fields: dict[str, Any]) -> str | None:
    tick = fields.get("schedule")
    return str(tick["id"]) if isinstance(tick, dict) else None
