"""RunMetrics: actorflow's OpenTelemetry instruments, all named `actorflow.*`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from .. import _observe

SECONDS_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip
ROWS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
ATTEMPTS_BUCKETS = (1, 2, 3, 4, 5, 10, 20, 50)


class RunMetrics:
    """The instruments, and one method per thing measured (called from committed rows)."""

    def __init__(self, meter: Meter) -> None:
        counter, seconds = meter.create_counter, partial(_histogram, meter, "s", SECONDS_BUCKETS)
        self.runs_started = counter("actorflow.runs.started", "{run}", "Runs created, by workflow")
        self.runs_finished = counter(
            "actorflow.runs.finished", "{run}", "Runs that ended, by workflow and outcome"
        )
        self.run_duration = seconds(
            "actorflow.run.duration", "From creation to final status, by workflow and outcome"
        )
        self.queue_wait = seconds(
            "actorflow.run.queue_wait",
            "From creation to first running (the wait for a concurrency slot, when limited)",
        )
        self.step_duration = seconds(
            "actorflow.step.duration", "One step attempt, by workflow, step and outcome"
        )
        self.step_attempts = _histogram(
            meter, "{attempt}", ATTEMPTS_BUCKETS,
            "actorflow.step.attempts", "Attempts a step took, once it ended",
        )  # fmt: skip
        self.step_retries = counter(
            "actorflow.step.retries", "{retry}", "Step attempts that failed and will be retried"
        )
        self.timer_lateness = seconds(
            "actorflow.timer.lateness", "How long after its due time a sleep fired"
        )
        self.batch_rows = _histogram(
            meter, "{row}", ROWS_BUCKETS,
            "actorflow.commit.batch_size", "Rows per group-commit transaction",
        )  # fmt: skip
        self.commit_latency = seconds(
            "actorflow.commit.latency", "Time to write one group-commit transaction"
        )
        self.write_failures = counter(
            "actorflow.store.write_failures", "{batch}", "Group-commit transactions that failed"
        )
        self.evictions = counter(
            "actorflow.actors.evictions", "{run}", "Idle runs that left memory"
        )
        self.rehydrations = counter(
            "actorflow.actors.rehydrations", "{run}", "Runs brought back into memory from the log"
        )
        meter.create_observable_gauge(
            "actorflow.actors.live", [_live_actors], "{run}", "Runs in memory, by status"
        )

    def run_started(self, workflow: str) -> None:
        self.runs_started.add(1, {"workflow": workflow})

    def run_finished(self, workflow: str, outcome: str, seconds: float) -> None:
        attrs = {"workflow": workflow, "outcome": outcome}
        self.runs_finished.add(1, attrs)
        self.run_duration.record(seconds, attrs)

    def queue_waited(self, workflow: str, seconds: float) -> None:
        self.queue_wait.record(max(0.0, seconds), {"workflow": workflow})

    def step_ended(
        self, workflow: str, step: str, outcome: str, seconds: float, attempt: int
    ) -> None:
        attrs = {"workflow": workflow, "step": step, "outcome": outcome}
        self.step_duration.record(seconds, attrs)
        if outcome == "retrying":
            self.step_retries.add(1, {"workflow": workflow, "step": step})
        else:
            self.step_attempts.record(attempt, attrs)

    def timer_late(self, workflow: str, seconds: float) -> None:
        self.timer_lateness.record(max(0.0, seconds), {"workflow": workflow})

    def committed(self, rows: int, seconds: float) -> None:
        self.batch_rows.record(rows)
        self.commit_latency.record(seconds)


def _histogram(
    meter: Meter, unit: str, buckets: Sequence[float], name: str, description: str
) -> Histogram:
    return meter.create_histogram(
        name, unit, description, explicit_bucket_boundaries_advisory=buckets
    )


def _live_actors(options: CallbackOptions) -> Iterable[Observation]:
    totals: dict[str, int] = {}
    for engine in list(_observe.open_engines):
        for status, count in engine.live_statuses().items():
            totals[status] = totals.get(status, 0) + count
    return [Observation(count, {"status": status}) for status, count in totals.items()]
