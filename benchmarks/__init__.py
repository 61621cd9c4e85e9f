"""actorflow benchmarks: `python -m benchmarks [workload ...] [--quick] [--out FILE]`.

Each workload runs in a subprocess of its own (clean memory numbers, no state
shared between workloads) against a fresh SQLite file in a temporary
directory, on uvloop through `af.run`. See `python -m benchmarks --help`.
"""

WORKLOADS = (
    "latency",
    "throughput",
    "typed",
    "sustained",
    "limit",
    "floors",
    "long",
    "fanout",
    "memory",
    "streams",
    "waiting",
    "schedules",
    "purge",
    "http",
    "otel",
)
