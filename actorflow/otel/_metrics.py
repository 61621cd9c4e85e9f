"""RunMetrics: actorflow's OpenTelemetry instruments, all named `actorflow.*`."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

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
        self.runs_started = meter.create_counter(
            "actorflow.runs.started", "{run}", "Runs created, by workflow"
        )
        self.runs_finished = meter.create_counter(
            "actorflow.runs.finished", "{run}", "Runs that ended, by workflow and outcome"
        )
        self.run_duration = meter.create_histogram(
            "actorflow.run.duration", "s", "From creation to final status, by workflow and outcome",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.queue_wait = meter.create_histogram(
            "actorflow.run.queue_wait", "s",
            "From creation to first running (the wait for a concurrency slot, when limited)",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.step_duration = meter.create_histogram(
            "actorflow.step.duration", "s", "One step attempt, by workflow, step and outcome",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.step_attempts = meter.create_histogram(
            "actorflow.step.attempts", "{attempt}", "Attempts a step took, once it ended",
            explicit_bucket_boundaries_advisory=ATTEMPTS_BUCKETS,
        )  # fmt: skip
        self.step_retries = meter.create_counter(
            "actorflow.step.retries", "{retry}", "Step attempts that failed and will be retried"
        )
        self.timer_lateness = meter.create_histogram(
            "actorflow.timer.lateness", "s", "How long after its due time a sleep fired",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.batch_rows = meter.create_histogram(
            "actorflow.commit.batch_size", "{row}", "Rows per group-commit transaction",
            explicit_bucket_boundaries_advisory=ROWS_BUCKETS,
        )  # fmt: skip
        self.commit_latency = meter.create_histogram(
            "actorflow.commit.latency", "s", "Time to write one group-commit transaction",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )  # fmt: skip
        self.write_failures = meter.create_counter(
            "actorflow.store.write_failures", "{batch}", "Group-commit transactions that failed"
        )
        self.evictions = meter.create_counter(
            "actorflow.actors.evictions", "{run}", "Idle runs that left memory"
        )
        self.rehydrations = meter.create_counter(
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


def _live_actors(options: CallbackOptions) -> Iterable[Observation]:
    totals: dict[str, int] = {}
    for engine in list(_observe.open_engines):
        for status, count in engine.live_statuses().items():
            totals[status] = totals.get(status, 0) + count
    return [Observation(count, {"status": status}) for status, count in totals.items()]
