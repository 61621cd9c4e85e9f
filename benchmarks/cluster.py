"""Many engines on one PostgreSQL: throughput with 1, 2 and 3 engine processes, failover
after SIGKILL of an owner, message latency across engines, and the server's ceiling of
notifying commits.

    python -m benchmarks.cluster [--quick] [--out PATH] [--lease SECONDS]

It starts a throwaway PostgreSQL server (`tests/pg_cluster.py`, the server's default
settings: fsync on), runs every phase on a fresh schema of its own, with the engines
in processes of their own (`tests/cluster_program.py`) and this process as a client
(`execute=False`), prints a table and writes JSON (`benchmarks/results/cluster-*.json`).

- `notify`: commits/s the server takes from 8 connections inserting a row each, plain
  and with a NOTIFY (every notifying commit takes a server-wide lock), and the
  notifying commits the engines sent per second in the throughput phase.
- `throughput_N`: a client starts `runs` 3-step workflows with one `start_many` (they
  wait queued); N engine processes claim and run them: workflows/s until all completed.
- `failover_SIGKILL`, `failover_SIGSTOP`: one engine owns `waiting` runs waiting for an
  event and `running` runs in a long step; a second engine starts; the owner is
  SIGKILLed (the server drops its connections: its lease is expired at once) or
  SIGSTOPped (its connections stay: its lease lapses after `lease_timeout`) and every
  waiting run is sent its event: seconds until every run progressed on the survivor
  (the event journaled, the step attempt started there), against the goal
  lease_timeout + 1 s.
- `latency`: `send_event` from the client to runs another engine owns, one at a time:
  send -> the event journaled by the owner (its `at`), p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

import actorflow as af
from tests.cluster_processes import EngineProcess
from tests.cluster_program import hold, job
from tests.pg_cluster import Cluster

from .common import machine_info

SIZES: dict[str, Any] = {
    "runs": 3000, "waiting": 1000, "running": 1000, "latency": 200, "notify_s": 3.0
}  # fmt: skip
QUICK: dict[str, Any] = {"runs": 200, "waiting": 50, "running": 50, "latency": 20, "notify_s": 0.5}


def log(text: str) -> None:
    print(text, flush=True)


def schema_url(server: str) -> str:
    return f"{server}?schema=bench_{uuid.uuid4().hex[:8]}"


async def _count(url: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": _schema(url)})
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


def _schema(url: str) -> str:
    return url.split("schema=")[1]


async def _wait_count(url: str, sql: str, target: int, timeout: float, *args: Any) -> float:
    """Poll (the harness, not the runtime) until `sql` counts `target`; when it did."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": _schema(url)})
    try:
        while int(await conn.fetchval(sql, *args)) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sql!r} did not reach {target} in {timeout} s")
            await asyncio.sleep(0.02)
        return time.time()
    finally:
        await conn.close()


async def notify_ceiling(server: str, seconds: float, connections: int = 8) -> dict[str, float]:
    admin = await asyncpg.connect(server)
    await admin.execute("CREATE TABLE IF NOT EXISTS bench_notify (id BIGSERIAL, v INT)")
    listener = await asyncpg.connect(server)
    await listener.add_listener("bench_notify", lambda *_: None)
    conns = [await asyncpg.connect(server) for _ in range(connections)]
    out: dict[str, float] = {}
    statements = {
        "plain": "INSERT INTO bench_notify (v) VALUES (1)",
        "notify": "WITH i AS (INSERT INTO bench_notify (v) VALUES (1) RETURNING id)"
        " SELECT pg_notify('bench_notify', '') FROM i",
    }
    for mode, sql in statements.items():
        done = 0
        deadline = time.monotonic() + seconds

        async def loop(conn: asyncpg.Connection, sql: str = sql, until: float = deadline) -> None:
            nonlocal done
            while time.monotonic() < until:
                await conn.execute(sql)
                done += 1

        began = time.monotonic()
        await asyncio.gather(*(loop(c) for c in conns))
        out[f"{mode}_commits_per_s"] = done / (time.monotonic() - began)
    for conn in [*conns, listener]:
        await conn.close()
    await admin.execute("DROP TABLE bench_notify")
    await admin.close()
    return out


def _stats(processes: list[EngineProcess]) -> list[dict[str, int]]:
    """Close the engines (SIGTERM) and take the counters each prints."""
    return [process.close() for process in processes]


async def throughput(server: str, engines: int, runs: int, lease: float) -> dict[str, float]:
    url = schema_url(server)
    async with af.Engine(url, execute=False, workflows=[job]) as client:
        processes = [EngineProcess(url, lease) for _ in range(engines)]
        try:
            began = time.time()
            await client.start_many(job, [(3, 0.0)] * runs)
            ended = await _wait_count(
                url, "SELECT count(*) FROM runs WHERE status = 'completed'", runs, 600
            )
            owners = await _count(url, "SELECT count(DISTINCT owner) FROM runs")
        finally:
            stats = await asyncio.to_thread(_stats, processes)
    elapsed = ended - began
    notifying = sum(s.get("notifying_commits", 0) for s in stats)
    return {
        "engines": engines,
        "runs": runs,
        "seconds": elapsed,
        "workflows_per_s": runs / elapsed,
        "steps_per_s": 3 * runs / elapsed,
        "engines_that_ran_some": owners,
        "notifying_commits_per_s": notifying / elapsed,
    }


async def failover(
    server: str, waiting: int, running: int, lease: float, how: signal.Signals
) -> dict[str, Any]:
    url = schema_url(server)
    effects = Path(f"/tmp/actorflow-failover-{uuid.uuid4().hex[:8]}")
    async with af.Engine(url, execute=False, workflows=[job, hold]) as client:
        owner = EngineProcess(url, lease, side_effects=effects)
        survivor: EngineProcess | None = None
        try:
            held = await client.start_many(hold, [()] * waiting)
            await client.start_many(job, [(1, 3600.0)] * running)
            await _wait_count(
                url, "SELECT count(*) FROM runs WHERE status = 'waiting'", waiting, 300
            )
            deadline = time.monotonic() + 300
            while _attempts(effects, None) < running:
                assert time.monotonic() < deadline, "the long steps did not start"
                await asyncio.sleep(0.05)
            survivor = EngineProcess(url, lease, side_effects=effects)
            killed = time.time()
            owner.signal(how)
            await asyncio.gather(
                *(client.send_event(run.id, "go", i) for i, run in enumerate(held))
            )
            sent = time.time()
            claimed = await _wait_count(
                url,
                "SELECT count(*) FROM runs WHERE owner = $1",
                waiting + running,
                120,
                survivor.engine_id,
            )
            waited = await _wait_count(
                url, "SELECT count(*) FROM events WHERE kind = 'event_received'", waiting, 120
            )
            pid = str(survivor.proc.pid)
            while _attempts(effects, pid) < running:
                assert time.time() < killed + 120, "the long steps did not start again"
                await asyncio.sleep(0.02)
            restarted = time.time()
            rerun = _rerun_completed(url)
        finally:
            owner.kill()
            if survivor is not None:
                survivor.kill()
            await asyncio.to_thread(effects.unlink, missing_ok=True)
    return {
        "signal": how.name,
        "lease_timeout": lease,
        "waiting": waiting,
        "running": running,
        "events_sent_s": sent - killed,
        "all_claimed_s": claimed - killed,
        "waiting_progressed_s": waited - killed,
        "running_progressed_s": restarted - killed,
        "failover_s": max(waited, restarted) - killed,
        "goal_s": lease + 1.0,
        "committed_steps_rerun": await rerun,
    }


async def _rerun_completed(url: str) -> int:
    return await _count(
        url,
        "SELECT count(*) FROM (SELECT run_id, seq FROM events WHERE kind = 'step_completed'"
        " GROUP BY run_id, seq HAVING count(*) > 1) AS twice",
    )


def _attempts(effects: Path, pid: str | None) -> int:
    """Distinct runs with a step attempt recorded (by process `pid`, or any)."""
    if not effects.exists():
        return 0
    runs = set()
    for line in effects.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and (pid is None or parts[3] == pid):
            runs.add(parts[0])
    return len(runs)


async def latency(server: str, samples: int, lease: float) -> dict[str, float]:
    url = schema_url(server)
    async with af.Engine(url, execute=False, workflows=[hold]) as client:
        owner = EngineProcess(url, lease)
        try:
            runs = await client.start_many(hold, [()] * samples)
            await _wait_count(
                url, "SELECT count(*) FROM runs WHERE status = 'waiting'", samples, 120
            )
            sent: dict[str, float] = {}
            for i, run in enumerate(runs):
                sent[run.id] = time.time()
                await client.send_event(run.id, "go", i)
                await asyncio.sleep(0.01)
            await _wait_count(
                url, "SELECT count(*) FROM events WHERE kind = 'event_received'", samples, 60
            )
            conn = await asyncpg.connect(server, server_settings={"search_path": _schema(url)})
            rows = await conn.fetch("SELECT run_id, at FROM events WHERE kind = 'event_received'")
            await conn.close()
        finally:
            await asyncio.to_thread(_stats, [owner])
    ms = sorted((row["at"] - sent[row["run_id"]]) * 1000 for row in rows)
    return {
        "samples": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max_ms": ms[-1],
    }


def table(results: dict[str, Any]) -> str:
    lines = ["| measurement | value |", "|---|---|"]
    n = results["notify"]
    lines.append(
        f"| commits/s the server takes, plain (8 connections) | {n['plain_commits_per_s']:,.0f} |"
    )
    lines.append(
        f"| commits/s the server takes, each with a NOTIFY | {n['notify_commits_per_s']:,.0f} |"
    )
    for key in ("throughput_1", "throughput_2", "throughput_3"):
        t = results.get(key)
        if t:
            lines.append(
                f"| {t['engines']} engine process(es): workflows/s (3 steps, {t['runs']:,} runs) "
                f"| {t['workflows_per_s']:,.0f} "
                f"({t['notifying_commits_per_s']:.1f} notifying commits/s) |"
            )
    for how in ("SIGKILL", "SIGSTOP"):
        f = results[f"failover_{how}"]
        lines.append(
            f"| failover after {how} of the owner of {f['waiting']:,} waiting + "
            f"{f['running']:,} running runs (lease {f['lease_timeout']:g} s): until all "
            f"progressed on the survivor | {f['failover_s']:.2f} s (goal {f['goal_s']:g} s; "
            f"all claimed {f['all_claimed_s']:.2f} s; committed steps run again: "
            f"{f['committed_steps_rerun']}) |"
        )
    m = results["latency"]
    lines.append(
        f"| send_event -> journaled by the owner (another process) p50 / p99 "
        f"| {m['p50_ms']:.1f} / {m['p99_ms']:.1f} ms |"
    )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else SIZES
    cluster = Cluster(settings={"max_connections": "300"})
    results: dict[str, Any] = {
        "machine": machine_info(Path(tempfile.gettempdir())),
        "sizes": sizes,
        "load_start": os.getloadavg(),
    }
    try:
        server = cluster.start()
        log("notify ceiling ...")
        results["notify"] = await notify_ceiling(server, sizes["notify_s"])
        for engines in (1, 2, 3):
            log(f"throughput with {engines} engine process(es) ...")
            results[f"throughput_{engines}"] = await throughput(
                server, engines, sizes["runs"], args.lease
            )
        for how in (signal.SIGKILL, signal.SIGSTOP):
            log(f"failover after {how.name} ...")
            results[f"failover_{how.name}"] = await failover(
                server, sizes["waiting"], sizes["running"], args.lease, how
            )
        log("latency ...")
        results["latency"] = await latency(server, sizes["latency"], args.lease)
    finally:
        cluster.destroy()
    results["load_end"] = os.getloadavg()
    results["cpus"] = os.cpu_count()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = af.run(main(args))
    print(table(results))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H%M%S")
    out = args.out or Path(__file__).with_name("results") / f"cluster-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out}")
