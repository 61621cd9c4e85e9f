"""ActorflowInstrumentor: turns actorflow's traces and metrics on and off."""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar

from opentelemetry import metrics, trace

from .. import _observe
from .._store import EventRow, RunRow, WriteBatch
from ._metrics import RunMetrics
from ._spans import RunSpans

SCOPE = "actorflow"
log = logging.getLogger("actorflow.otel")
P = ParamSpec("P")
R = TypeVar("R")
# The instruments made on each meter provider, made once: an observable instrument made
# again (on instrumenting again) would report its series twice.
_metrics_of: weakref.WeakKeyDictionary[object, RunMetrics] = weakref.WeakKeyDictionary()


def _guarded(method: Callable[P, R | None]) -> Callable[P, R | None]:
    """Log what `method` raises instead of raising it into the runtime it observes (a
    commit, a rehydration): telemetry never stops a run."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return method(*args, **kwargs)
        except Exception:
            log.exception("actorflow telemetry failed")
            return None

    return guarded


class ActorflowInstrumentor:
    """Emits spans and metrics of every engine in the process, from committed facts.

    `instrument()` installs it; `uninstrument()` removes it (runs keep going, and
    nothing more is emitted). Uninstrumented, actorflow does not import
    OpenTelemetry and costs nothing.
    """

    def instrument(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        """Start emitting, to the given providers (default: the global ones).

        Instrumenting again replaces the previous providers."""
        self.uninstrument()
        tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        run_metrics = _metrics_of.get(provider)
        if run_metrics is None:
            meter = metrics.get_meter(SCOPE, meter_provider=provider)
            run_metrics = _metrics_of[provider] = RunMetrics(meter)
        _observe.install(OtelObserver(RunSpans(tracer, run_metrics)))

    def uninstrument(self) -> None:
        """Stop emitting (a no-op if not instrumented)."""
        current = _observe.current
        if isinstance(current, OtelObserver):
            _observe.install(None)
            current.spans.close()

    @property
    def is_instrumented(self) -> bool:
        """Whether actorflow is instrumented now."""
        return isinstance(_observe.current, OtelObserver)


class OtelObserver:
    """The `_observe.Observer` that feeds `RunSpans` and `RunMetrics`."""

    def __init__(self, spans: RunSpans) -> None:
        self.spans = spans
        self.metrics = spans.metrics

    @_guarded
    def run_creating(
        self, row: RunRow, given: Mapping[str, str] | None
    ) -> Mapping[str, str] | None:
        return self.spans.creating(row, given)

    @_guarded
    def batch_written(self, rows: int, seconds: float) -> None:
        self.metrics.committed(rows, seconds)

    @_guarded
    def committed(self, batch: WriteBatch) -> None:
        spans = self.spans
        conflicts = batch.conflicts
        for row, events in batch.new_runs:
            spans.created(row, events, row.id in conflicts)
            if row.id not in conflicts:
                for event in events:
                    if event.run_id != row.id:  # the parent's `child_started`
                        spans.committed(event)
        for event in batch.events:
            spans.committed(event)
        for run_id, params in batch.run_updates.items():
            spans.update(run_id, params[0], params[4])

    @_guarded
    def commit_failed(self, batch: WriteBatch) -> None:
        self.metrics.write_failures.add()

    @_guarded
    def run_loaded(self, row: RunRow, events: list[EventRow], restarted: bool) -> None:
        if not restarted:
            self.metrics.rehydrations.add(row.workflow)
        self.spans.load(row, events, restarted)

    @_guarded
    def run_evicted(self, run_id: str) -> None:
        self.metrics.evictions.add()
