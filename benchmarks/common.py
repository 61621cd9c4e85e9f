"""What every workload shares: the run context, statistics, memory, machine facts, the table.

A workload module defines:

- `DESCRIPTION`: one line for `--list` and the table header;
- `DEFAULTS` and `QUICK`: its sizes (the full run, and `--quick`); `--set name.key=value`
  overrides any of them;
- `TABLE`: the `Metric`s the results table shows, in order;
- `async def run(cfg, ctx)`: measures and fills `ctx.metrics` (JSON numbers only).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import actorflow as af
from actorflow import _build

STORE_ENV = "ACTORFLOW_BENCH_STORE"

# -- the context a workload runs in ----------------------------------------------------------


@dataclass
class Context:
    """Where a workload puts its databases and its numbers.

    `metrics` and `notes` are written to `out` on every `checkpoint()`, so a
    workload that is killed (time limit, or a teardown that never ends) still
    leaves what it had measured.
    """

    workdir: Path
    out: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: str = "running"
    started: float = field(default_factory=time.perf_counter)
    # `--store`: a PostgreSQL server to run the engines on, instead of SQLite files.
    store: str | None = field(default_factory=lambda: os.environ.get(STORE_ENV) or None)
    _dbs: int = 0
    schemas: list[str] = field(default_factory=list)

    def db_path(self, name: str = "actorflow") -> Path:
        """A path for a fresh SQLite database (a new file every call)."""
        self._dbs += 1
        return self.workdir / f"{name}-{self._dbs}.db"

    def store_url(self, name: str = "actorflow") -> str:
        """A fresh store: a new SQLite file, or with `--store`, a new schema on that server."""
        if self.store is None:
            return f"sqlite:///{self.db_path(name)}"
        from .postgres import schema_url

        self._dbs += 1
        schema = f"bench_{name}_{os.getpid()}_{self._dbs}"
        self.schemas.append(schema)
        return schema_url(self.store, schema)

    def engine(
        self,
        *,
        workflows: Iterable[Any],
        path: Path | None = None,
        url: str | None = None,
        **options: Any,
    ) -> af.Engine:
        """An engine on `url`, on the SQLite file at `path` (default durability), or on a
        fresh store (`store_url`)."""
        if url is None:
            url = self.store_url() if path is None else f"sqlite:///{path}"
        return af.Engine(url, workflows=workflows, **options)

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"  note: {text}")

    def record(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "elapsed_s": time.perf_counter() - self.started,
            "gc_threshold": list(gc.get_threshold()),
            "metrics": self.metrics,
            "notes": self.notes,
        }

    def checkpoint(self) -> None:
        """Write what has been measured so far to `out` (atomically)."""
        if self.out is None:
            return
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record(), indent=1))
        tmp.replace(self.out)

    def exit_if_stuck(self, seconds: float, what: str) -> Callable[[], None]:
        """Arm a watchdog: if not disarmed within `seconds`, record why and exit the process.

        For teardowns that may take unbounded time (e.g. closing an engine with
        100,000 live runs): the numbers are already measured, so keep them.
        Returns the function that disarms it.
        """

        def fire() -> None:
            self.note(f"{what} did not finish within {seconds:g} s; process exited without it")
            self.status = "ok"
            self.checkpoint()
            sys.stderr.flush()
            shutil.rmtree(self.workdir, ignore_errors=True)
            os._exit(0)

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        return timer.cancel


def log(text: str) -> None:
    """Progress output (stderr, so that stdout stays the results)."""
    print(text, file=sys.stderr, flush=True)


# -- statistics ------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100) of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(samples: Iterable[float], scale: float = 1.0, prefix: str = "") -> dict[str, float]:
    """count, mean, p50, p90, p99, max of `samples` (multiplied by `scale`)."""
    values = sorted(s * scale for s in samples)
    if not values:
        return {f"{prefix}count": 0}
    return {
        f"{prefix}count": len(values),
        f"{prefix}mean": sum(values) / len(values),
        f"{prefix}p50": percentile(values, 50),
        f"{prefix}p90": percentile(values, 90),
        f"{prefix}p99": percentile(values, 99),
        f"{prefix}max": values[-1],
    }


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


# -- waiting for things ----------------------------------------------------------------------


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    what: str,
    interval: float = 0.02,
    required: bool = True,
) -> float | None:
    """Poll `check` until it is true; returns the seconds it took.

    After `timeout`: raises if `required`, else returns None.
    """
    import asyncio

    start = time.perf_counter()
    while True:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            if not required:
                return None
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def db_count(path: Path, sql: str, params: Sequence[Any] = ()) -> int:
    """One integer from a query on a separate read-only connection (WAL: never blocks)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        return int(conn.execute(sql, tuple(params)).fetchone()[0])
    finally:
        conn.close()


async def count_events(url: str) -> int:
    """Events in the store at `url` (SQLite or PostgreSQL), read beside the engine."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return await asyncio.to_thread(db_count, Path(path), "SELECT count(*) FROM events")
    from .postgres import count_rows

    return await count_rows(url, "events")


class CommitCounts:
    """What the group-commit writer did and how many events reached the database
    between entering and leaving `async with CommitCounts(engine, url) as counts:`
    (`batches`, `rows`, `busy_seconds` of the writer; `events` counted in the store)."""

    def __init__(self, engine: af.Engine, url: str) -> None:
        self._engine = engine
        self._url = url
        self.batches = self.rows = self.events = 0
        self.busy_seconds = 0.0

    async def _events(self) -> int:
        return await count_events(self._url)

    async def __aenter__(self) -> CommitCounts:
        stats = self._engine.store_stats()
        self.batches, self.rows, self.busy_seconds = (
            stats.batches,
            stats.rows,
            stats.busy_seconds,
        )
        self.events = await self._events()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stats = self._engine.store_stats()
        self.batches = stats.batches - self.batches
        self.rows = stats.rows - self.rows
        self.busy_seconds = stats.busy_seconds - self.busy_seconds
        self.events = await self._events() - self.events


# -- memory ----------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process now (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    return int(psutil.Process().memory_info().rss)


def settled_rss() -> int:
    """RSS after a full garbage collection (what is really kept)."""
    gc.collect()
    gc.collect()
    return rss_bytes()


def python_blocks() -> int:
    """Python objects allocated now (after a collection): counts what is kept, not RSS."""
    gc.collect()
    return sys.getallocatedblocks()


class GcWatch:
    """Counts what the cyclic garbage collector does while active: collections, objects
    it freed (objects that reference counting alone did not free), and its pauses.

    `with GcWatch() as gcw: ...` then `gcw.metrics(prefix, per=n)`.
    """

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.freed = 0
        self.pause_total = 0.0
        self.pause_max = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.collections[info["generation"]] += 1
        self.freed += info["collected"]
        self.pause_total += pause
        self.pause_max = max(self.pause_max, pause)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def pauses(self, prefix: str = "") -> dict[str, Any]:
        """Collections and pause times (while no collection was forced)."""
        return {
            f"{prefix}gc_collections": sum(self.collections),
            f"{prefix}gc_full_collections": self.collections[2],
            f"{prefix}gc_pause_total_ms": self.pause_total * 1000,
            f"{prefix}gc_pause_max_ms": self.pause_max * 1000,
        }

    def freed_per_run(self, runs: int, prefix: str = "") -> dict[str, Any]:
        """Objects only the cyclic collector freed, per run (force a collection first)."""
        return {f"{prefix}gc_freed_per_run": self.freed / runs}


# -- the machine -----------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def _filesystem(path: Path) -> str | None:
    """The filesystem type holding `path` (from /proc/mounts), e.g. ext4 or tmpfs."""
    with contextlib.suppress(OSError):
        best = ("", "")
        target = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount, kind = parts[1], parts[2]
            if target.startswith(mount) and len(mount) > len(best[0]):
                best = (mount, kind)
        return best[1] or None
    return None


def _git_commit() -> str | None:
    """The checked-out commit of the actorflow source, if it is a git checkout (read only)."""
    root = Path(af.__file__).resolve().parent.parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine skews the numbers)."""
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def machine_info(workdir: Path) -> dict[str, Any]:
    """What the numbers were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        loop = f"uvloop {version('uvloop')}"
    except PackageNotFoundError:
        loop = "asyncio"
    versions = {}
    for name in ("aiosqlite", "orjson", "psutil", "dbos"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    ram = _ram_bytes()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": ram,
        "ram_gib": None if ram is None else round(ram / 2**30, 1),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "event_loop": loop,
        "actorflow": af.__version__,
        "actorflow_build": "compiled (mypyc)" if _build.COMPILED else "pure Python",
        "actorflow_commit": _git_commit(),
        "packages": versions,
        "workdir": str(workdir),
        "workdir_filesystem": _filesystem(workdir),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": load_average(),
    }


# -- the results table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A row of the results table: `key` in the workload's metrics, shown as `label`.

    `unit` picks the formatting ("ms", "us", "/s", "bytes", "x", "%", "s", "");
    `goal` is `("<", limit)` or `(">", limit)` in the metric's own unit.
    """

    key: str
    label: str
    unit: str = ""
    goal: tuple[str, float] | None = None


def met(value: Any, goal: tuple[str, float] | None) -> bool | None:
    if goal is None or not isinstance(value, int | float) or math.isnan(value):
        return None
    op, limit = goal
    return value < limit if op == "<" else value > limit


def fmt_value(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if unit == "bytes":
        return fmt_bytes(value)
    if unit == "/s":
        return f"{value:,.0f}/s" if value >= 100 else f"{value:.3g}/s"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "x":
        return f"{value:.2f}x"
    if isinstance(value, int):
        return f"{value:,}{' ' + unit if unit else ''}"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def fmt_goal(goal: tuple[str, float] | None, unit: str) -> str:
    if goal is None:
        return ""
    return f"{goal[0]} {fmt_value(goal[1], unit)}"


def table(sections: list[tuple[str, str, list[tuple[Metric, Any]]]]) -> str:
    """Plain-text table: one section per workload (name, status line, rows)."""
    lines: list[str] = []
    width = max(
        [len(m.label) for _, _, rows in sections for m, _ in rows] + [20],
    )
    for name, status, rows in sections:
        lines.append(f"{name:<{width + 2}} {status}")
        for m, value in rows:
            check = met(value, m.goal)
            goal = fmt_goal(m.goal, m.unit)
            verdict = "" if check is None else ("ok" if check else "MISSED")
            goal_text = f"goal {goal}  {verdict}" if goal else ""
            lines.append(f"  {m.label:<{width}} {fmt_value(value, m.unit):>16}   {goal_text}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
