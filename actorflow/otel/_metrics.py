"""RunMetrics: actorflow's OpenTelemetry instruments, all named `actorflow.*`.

Counters are counted here, in a dict, and reported by observable counters when
a reader collects: adding one is a dict update, where the SDK's synchronous
counter spends microseconds per `add` (attribute validation and hashing, a lock).
Histograms have no observable form in the API, so they are recorded as they happen.
"""

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
# `attempts` values of `actorflow.steps.finished`: the number up to this, then one series.
MOST_ATTEMPTS_NAMED = 10
ATTEMPTS = [str(n) for n in range(MOST_ATTEMPTS_NAMED + 1)] + [f">{MOST_ATTEMPTS_NAMED}"]


class Counts:
    """A monotonic counter kept as totals by attribute values (`labels` names them),
    reported by an observable counter."""

    __slots__ = ("labels", "totals")

    def __init__(self, meter: Meter, name: str, unit: str, description: str, *labels: str):
        self.labels = labels
        self.totals: dict[tuple[str, ...], int] = {}
        meter.create_observable_counter(name, [self.observe], unit, description)

    def add(self, *values: str) -> None:
        """Count one, with these attribute values (one per label)."""
        totals = self.totals
        totals[values] = totals.get(values, 0) + 1

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # list() copies in one step (C code, under the GIL): a reader's thread may collect
        # while the loop counts.
        found = list(self.totals.items())
        labels = self.labels
        return [Observation(n, dict(zip(labels, key, strict=True))) for key, n in found]


class RunMetrics:
    """The instruments, and one method per thing measured (called from committed rows)."""

    def __init__(self, meter: Meter) -> None:
        counter, seconds = partial(Counts, meter), partial(_histogram, meter, "s", SECONDS_BUCKETS)
        self.runs_started = counter(
            "actorflow.runs.started", "{run}", "Runs created, by workflow", "workflow"
        )
        self.runs_finished = counter(
            "actorflow.runs.finished",
            "{run}",
            "Runs that ended, by workflow and outcome",
            "workflow",
            "outcome",
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
        self.steps_finished = counter(
            "actorflow.steps.finished",
            "{step}",
            "Steps that ended, by workflow, step, outcome and the attempts they took",
            "workflow",
            "step",
            "outcome",
            "attempts",
        )
        self.step_retries = counter(
            "actorflow.step.retries",
            "{retry}",
            "Step attempts that failed and will be retried",
            "workflow",
            "step",
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
            "actorflow.actors.rehydrations",
            "{run}",
            "Runs brought back into memory from the log",
            "workflow",
        )
        meter.create_observable_gauge(
            "actorflow.actors.live", [_live_actors], "{run}", "Runs in memory, by status"
        )

    def run_started(self, workflow: str) -> None:
        self.runs_started.add(workflow)

    def run_finished(self, workflow: str, outcome: str, seconds: float) -> None:
        self.runs_finished.add(workflow, outcome)
        self.run_duration.record(seconds, {"workflow": workflow, "outcome": outcome})

    def queue_waited(self, workflow: str, seconds: float) -> None:
        self.queue_wait.record(max(0.0, seconds), {"workflow": workflow})

    def step_ended(
        self, workflow: str, step: str, outcome: str, seconds: float, attempt: int
    ) -> None:
        self.step_duration.record(seconds, {"workflow": workflow, "step": step, "outcome": outcome})
        if outcome == "retrying":
            self.step_retries.add(workflow, step)
        else:
            attempts = ATTEMPTS[min(attempt, MOST_ATTEMPTS_NAMED + 1)]
            self.steps_finished.add(workflow, step, outcome, attempts)

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
