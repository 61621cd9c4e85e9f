"""`--compare dbos`: the latency and throughput workloads again, in DBOS on SQLite (or on
the `--store` PostgreSQL server).

Runs only when the optional `dbos` package is installed; each DBOS
configuration runs in a subprocess of its own (DBOS is a process-wide
singleton). The workflow has the same shape: three trivial async steps, on
uvloop. Configurations (`--set dbos.modes=...`):

- `wal`: DBOS with its SQLite system database switched to WAL and
  `synchronous=NORMAL`, actorflow's default durability (apples to apples);
- `default`: DBOS as it comes (rollback journal, `synchronous=FULL`);
- `postgres` (the only one with `--store postgresql://...`): DBOS's system database
  on the same server as actorflow's schemas, in a database of its own, dropped after.

Sizes of 0 mean "the same as actorflow's workload in this invocation".
`executor_threads` caps DBOS's thread pool (its default is unbounded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .common import STORE_ENV, Stopwatch, log, summarize

DESCRIPTION = "DBOS (SQLite) on the latency and throughput workloads"
DEFAULTS = {
    "modes": "wal,default",
    # DBOS's own default is an unbounded thread pool: 10,000 concurrent workflows
    # start 10,000 threads that fight over SQLite's write lock (it live-locked here).
    "executor_threads": 16,  # DBOS `max_executor_threads` (~ its 5+10 connections); 0: default
    "latency_samples": 0,
    "latency_warmup": 50,
    "throughput_runs": 0,
    "timeout_s": 1800.0,
}
QUICK = {**DEFAULTS, "modes": "wal", "latency_warmup": 5}


def compare(
    cfg: dict[str, Any], results: dict[str, Any], args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    """Run DBOS in each mode and compute ratios against actorflow's numbers."""
    if importlib.util.find_spec("dbos") is None:
        reason = "the dbos package is not installed here (pip install dbos); comparison skipped"
        log(f"  {reason}")
        return {"available": False, "reason": reason}
    latency = results.get("latency", {})
    through = results.get("throughput", {})
    sizes = {
        "executor_threads": cfg["executor_threads"],
        "latency_samples": cfg["latency_samples"] or latency.get("config", {}).get("samples", 0),
        "latency_warmup": cfg["latency_warmup"],
        "throughput_runs": cfg["throughput_runs"] or through.get("config", {}).get("runs", 0),
    }
    from importlib.metadata import version

    out: dict[str, Any] = {"available": True, "dbos_version": version("dbos"), "sizes": sizes}
    modes: dict[str, Any] = {}
    wanted = [m.strip() for m in str(cfg["modes"]).split(",") if m.strip()]
    for mode in ["postgres"] if os.environ.get(STORE_ENV) else wanted:
        log(
            f"  dbos [{mode}]: {sizes['latency_samples']:,} sequential runs, "
            f"{sizes['throughput_runs']:,} concurrent runs"
        )
        numbers = _run_mode(mode, sizes, cfg["timeout_s"], scratch, args.workdir)
        if "error" not in numbers:
            numbers["ratios"] = _ratios(numbers, latency.get("metrics", {}), through)
            floor = results.get("limit", {}).get("metrics", {}).get("floor_latency_p50_ms")
            if floor and numbers.get("latency_p50_ms"):
                # The most any store with a durable record of each step could reach.
                numbers["ratios"]["floor_latency_p50_ratio"] = numbers["latency_p50_ms"] / floor
        modes[mode] = numbers
    out["modes"] = modes
    return out


def _ratios(
    dbos: dict[str, Any], latency: dict[str, Any], through: dict[str, Any]
) -> dict[str, float]:
    ratios = {}
    if latency.get("p50_ms") and dbos.get("latency_p50_ms"):
        ratios["latency_p50_ratio"] = dbos["latency_p50_ms"] / latency["p50_ms"]
        ratios["latency_p99_ratio"] = dbos["latency_p99_ms"] / latency["p99_ms"]
    ours = through.get("metrics", {}).get("workflows_per_s")
    if ours and dbos.get("workflows_per_s"):
        ratios["throughput_ratio"] = ours / dbos["workflows_per_s"]
    return ratios


def _run_mode(
    mode: str, sizes: dict[str, Any], timeout: float, scratch: Path, workdir: Path | None
) -> dict[str, Any]:
    out = scratch / f"dbos-{mode}.json"
    command = [sys.executable, "-m", "benchmarks.compare_dbos", mode, json.dumps(sizes), str(out)]
    command.append(str(workdir or ""))
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(
            command, timeout=timeout, env=env, check=False, capture_output=True, text=True
        )
    except subprocess.TimeoutExpired:
        return {"error": f"DBOS did not finish within {timeout:g} s"}
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(out.read_text()))
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
    return {"error": f"DBOS run failed (exit {proc.returncode}): " + " | ".join(tail)}


# -- the subprocess ------------------------------------------------------------------------------


def _dbos_config(mode: str, url: str, threads: int) -> dict[str, Any]:
    config: dict[str, Any] = {"name": "actorflow-bench", "system_database_url": url}
    config["log_level"] = "WARNING"
    if threads:
        config["max_executor_threads"] = threads
    if mode == "default":
        return config
    if mode != "wal":
        raise ValueError(f"unknown dbos mode {mode!r}; use wal or default")
    import sqlalchemy as sa

    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(conn: Any, record: Any) -> None:
        # What DBOS sets on its own SQLite engine, plus WAL and synchronous=NORMAL.
        conn.isolation_level = "IMMEDIATE"
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")

    config["system_database_engine"] = engine
    return config


async def _measure(sizes: dict[str, Any]) -> dict[str, Any]:
    from dbos import DBOS

    @DBOS.step()
    async def add_one(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    async def three_steps(x: int) -> int:
        a = await add_one(x)
        b = await add_one(a)
        return await add_one(b)

    DBOS.launch()
    try:
        for i in range(sizes["latency_warmup"]):
            await (await DBOS.start_workflow_async(three_steps, i)).get_result()
        samples = []
        clock = time.perf_counter
        for i in range(sizes["latency_samples"]):
            t0 = clock()
            handle = await DBOS.start_workflow_async(three_steps, i)
            assert await handle.get_result() == i + 3
            samples.append(clock() - t0)
        stats = summarize(samples, scale=1000.0)
        n = sizes["throughput_runs"]
        with Stopwatch() as total:
            handles = await asyncio.gather(
                *(DBOS.start_workflow_async(three_steps, i) for i in range(n))
            )
            results = await asyncio.gather(*(h.get_result() for h in handles))
        assert results == [i + 3 for i in range(n)]
    finally:
        DBOS.destroy()
    return {
        "latency_samples": len(samples),
        "latency_p50_ms": stats.get("p50"),
        "latency_p99_ms": stats.get("p99"),
        "latency_mean_ms": stats.get("mean"),
        "throughput_runs": n,
        "workflows_per_s": n / total.seconds if n else None,
        "steps_per_s": 3 * n / total.seconds if n else None,
        "throughput_total_s": total.seconds,
    }


async def _postgres_database(server: str, create: bool) -> str:
    """Create (or drop) DBOS's own database on `server`; returns its URL."""
    import asyncpg

    from actorflow._store._postgres import split_url

    dsn = split_url(server)[0]
    name = f"dbos_bench_{os.getpid()}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"{'CREATE' if create else 'DROP'} DATABASE {name}")
    finally:
        await conn.close()
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}", query=""))


def main() -> None:
    mode, sizes, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    workdir = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    with tempfile.TemporaryDirectory(prefix="actorflow-bench-dbos-", dir=workdir) as tmp:
        from dbos import DBOS

        server = os.environ.get(STORE_ENV)
        if mode == "postgres" and server:
            url = asyncio.run(_postgres_database(server, create=True))
            config: dict[str, Any] = {"name": "actorflow-bench", "system_database_url": url}
            config["log_level"] = "WARNING"
            if sizes["executor_threads"]:
                config["max_executor_threads"] = sizes["executor_threads"]
        else:
            config = _dbos_config(mode, f"sqlite:///{tmp}/dbos.sqlite", sizes["executor_threads"])
        DBOS(config=config)  # type: ignore[arg-type]
        # uvloop like actorflow's workloads, but not `af.run`: DBOS gets no actorflow tuning.
        try:
            import uvloop
        except ImportError:  # pragma: no cover - no uvloop on this platform
            numbers = asyncio.run(_measure(sizes))
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                numbers = runner.run(_measure(sizes))
        if mode == "postgres" and server:
            asyncio.run(_postgres_database(server, create=False))
    numbers["mode"] = mode
    out.write_text(json.dumps(numbers))


if __name__ == "__main__":
    main()
