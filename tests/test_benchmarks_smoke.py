"""Smoke test of the benchmark suite: `python -m benchmarks --quick` runs every workload
with tiny sizes and writes a JSON report with sane numbers. No speed is asserted here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Per workload: metrics that must be positive numbers (rates, latencies, sizes).
POSITIVE = {
    "latency": ["p50_ms", "p99_ms", "runs_per_s"],
    "throughput": [
        "workflows_per_s",
        "steps_per_s",
        "events_per_s",
        "mean_batch_rows",
        "batches",
        "events",
    ],
    "typed": ["plain_workflows_per_s", "typed_workflows_per_s", "typed_loop_cpu_us_per_run"],
    "sustained": ["workflows_per_s", "events_per_s", "latency_p50_ms", "mean_batch_rows"],
    "limit": [
        "ceiling_events_per_s",
        "sqlite3_ceiling_events_per_s",
        "row_bytes",
        "actorflow_pct_of_ceiling",
    ],
    "floors": [
        "second_thread_speedup",
        "bare_asyncio_us_per_run",
        "bare_asyncio_runs_per_s",
        "durable_floor_us_per_run",
        "durable_floor_runs_per_s",
        "durable_floor_events_per_s",
        "hand_floor_us_per_run",
        "hand_floor_runs_per_s",
        "hand_floor_events_per_s",
    ],
    "long": ["first_mean_us", "last_mean_us", "ratio_last_first", "steps_per_s"],
    "fanout": [
        "result_from_commit_p50_ms",
        "result_from_commit_p99_ms",
        "events_from_commit_p50_ms",
        "events_from_commit_p99_ms",
        "result_from_at_p99_ms",
        "events_from_at_p99_ms",
    ],
    "memory": ["blocks_per_inflight_run"],
    "streams": [
        "r1_chunks_per_s",
        "r1_latency_p50_ms",
        "r1_latency_p99_ms",
        "rmany_chunks_per_s",
        "rmany_latency_p99_ms",
    ],
    "schedules": ["ticks_fired", "fired_p50_ms", "fired_p99_ms", "running_p99_ms", "loop_cpu_pct"],
    "otel": [
        "latency_p50_off_ms",
        "latency_p50_on_ms",
        "workflows_per_s_off",
        "workflows_per_s_on",
        "workflows_per_s_sampled",
        "spans_per_run",
    ],
    "waiting": [
        "evicted_start_per_s",
        "live_rss_per_run_bytes",
        "live_blocks_per_run",
        "lateness_evicted_p99_ms",
        "lateness_live_p99_ms",
        "evicted_reopen_s",
    ],
    "purge": ["purged_events_per_s", "purge_s", "alone_p50_ms", "during_p50_ms"],
    "http": [
        "http_starts_per_s",
        "inproc_starts_per_s",
        "starts_ratio",
        "http_latency_p50_ms",
        "inproc_latency_p50_ms",
        "http_sse_chunks_per_s",
        "inproc_stream_chunks_per_s",
        "sse_ratio",
    ],
}
# Metrics that must be present (any number; RSS deltas of tiny runs can be noise).
PRESENT = {
    "memory": [
        "rss_per_completed_run_bytes",
        "blocks_per_completed_run",
        "rss_per_inflight_run_bytes",
    ],
    "waiting": ["evicted_rss_per_run_bytes", "evicted_blocks_per_run"],
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_suite_writes_a_sane_report(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--set",
            "waiting.runs=200",
            "--set",
            "waiting.lateness_runs=100",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())

    machine = report["machine"]
    for key in ("cpu_model", "cores", "ram_bytes", "python", "sqlite", "os", "date"):
        assert machine[key], key
    assert report["invocation"]["quick"] is True
    assert report["invocation"]["elapsed_s"] > 0

    workloads = report["workloads"]
    assert set(workloads) == set(POSITIVE)
    for name, record in workloads.items():
        assert record["status"] == "ok", (name, record["notes"])
        assert name in proc.stdout  # the table has a section per workload
        metrics = record["metrics"]
        for key in POSITIVE[name]:
            assert _number(metrics.get(key)) and metrics[key] > 0, (name, key, metrics.get(key))
        for key in PRESENT.get(name, []):
            assert _number(metrics.get(key)), (name, key, metrics.get(key))

    # Completed runs leave memory; the throughput run finished every workflow.
    assert workloads["memory"]["metrics"]["live_actors_after_completed"] == 0
    assert workloads["memory"]["metrics"]["live_actors_after_inflight"] == 0
    assert workloads["throughput"]["metrics"]["live_actors_after"] == 0
    assert workloads["throughput"]["metrics"]["events"] >= 300  # at least one per run
    assert workloads["waiting"]["metrics"]["evicted_live_actors"] == 0
    assert workloads["waiting"]["metrics"]["evicted_gc_freed_per_run"] < 1  # no cycles
    # Every goal is reported with its value (met or not is not a test matter).
    assert report["goals"] and all("met" in g for g in report["goals"].values())


def test_against_runs_a_revision_side_by_side(tmp_path: Path) -> None:
    """`--against HEAD` runs the workload on HEAD's actorflow, extracted apart from this
    checkout, and on the checkout, and reports both sides' numbers for every round."""
    out = tmp_path / "against.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "latency",
            "--quick",
            "--against",
            "HEAD",
            "--repeat",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    sides = report["side_by_side"]["latency"]
    for side in ("against", "this"):
        assert sides[side]["status"] == ["ok", "ok"]
        assert len(sides[side]["samples"]) == 2
        assert sides[side]["metrics"]["p50_ms"] > 0
        assert sides[side]["metrics"]["commits_per_run"] == 4
    assert "this/" in proc.stdout  # the ratio column of the printed table
    # HEAD has this checkout's build, so both sides are the same kind of build.
    assert report["invocation"]["against_build"] == report["machine"]["actorflow_build"]


def test_against_a_revision_from_before_the_compiled_build_runs_its_sources(
    tmp_path: Path,
) -> None:
    """A revision with no `setup.py` (the first commit) is not compiled: it runs as the
    sources it was, where it used to stop the comparison."""
    from benchmarks import against

    first = subprocess.run(
        ["git", "rev-list", "--max-parents=0", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    has_setup = subprocess.run(
        ["git", "cat-file", "-e", f"{first}:setup.py"], cwd=ROOT, capture_output=True
    )
    assert has_setup.returncode != 0, "needs the repository's history (not a shallow clone)"
    tree = against.extract(first, tmp_path)
    assert (tree / "actorflow" / "__init__.py").is_file()
    assert against.compile_tree(first, tree) is False
    assert not list(tree.glob("*.so")) and not (tree / "setup.py").exists()
