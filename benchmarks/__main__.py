"""`python -m benchmarks [WORKLOAD ...] [--quick] [--set W.KEY=VALUE] [--out FILE]
[--compare dbos]`: run workloads, print the results table, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from actorflow import _build

from . import WORKLOADS, against
from .common import STORE_ENV, Metric, fmt_goal, load_average, log, machine_info, met, table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The workloads that run on `--store postgresql://...` (the others measure SQLite itself).
POSTGRES_WORKLOADS = ("latency", "throughput", "sustained", "limit", "long")

# Ratios derived across workloads, shown in their own table section.
COMPARE_ROWS = [
    Metric("latency_p50_ratio", "latency p50, dbos / actorflow", "x"),
    Metric("latency_p99_ratio", "latency p99, dbos / actorflow", "x"),
    Metric("throughput_ratio", "workflows/s, actorflow / dbos", "x"),
    Metric("floor_latency_p50_ratio", "latency p50, dbos / the floor (limit)", "x"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="actorflow benchmarks. Each workload runs in a fresh process against a "
        "fresh SQLite file; results are printed as a table and written as JSON.",
    )
    parser.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help=f"workloads to run, default all: {', '.join(WORKLOADS)}",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="W.KEY=VALUE",
        help="override a size, e.g. --set throughput.runs=5000 (see --list)",
    )
    parser.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/<time>.json)"
    )
    parser.add_argument(
        "--compare",
        choices=["dbos"],
        action="append",
        default=[],
        help="also run latency and throughput in DBOS, on SQLite or on the --store server "
        "(needs the dbos package)",
    )
    parser.add_argument(
        "--store",
        metavar="postgresql://...",
        help="run the engines on this PostgreSQL server (a fresh schema each, dropped "
        f"afterwards) instead of SQLite files; workloads: {', '.join(POSTGRES_WORKLOADS)}",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where the temporary databases go (default: system temp)"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds allowed per workload phase"
    )
    parser.add_argument(
        "--inline",
        action="store_true",
        help="run workloads in this process (for profilers); memory numbers get noisier",
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also run the workloads on git revision REV's actorflow, interleaved with this "
        "checkout's, and print both side by side (see benchmarks/against.py)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per side with --against (medians shown)"
    )
    parser.add_argument("--list", action="store_true", help="list workloads and their sizes")
    return parser.parse_args(argv)


def load(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def configs(names: list[str], quick: bool, overrides: list[str]) -> dict[str, dict[str, Any]]:
    """Each workload's sizes: defaults (or quick ones), then `--set` overrides."""
    all_names = [*names, "compare_dbos"]
    cfgs = {n: dict(load(n).QUICK if quick else load(n).DEFAULTS) for n in all_names}
    for item in overrides:
        key, sep, raw = item.partition("=")
        name, dot, field = key.partition(".")
        if name == "dbos":
            name = "compare_dbos"
        if not sep or not dot or name not in cfgs:
            raise SystemExit(f"--set {item!r}: expected WORKLOAD.KEY=VALUE for a selected workload")
        cfg = cfgs[name]
        if field not in cfg:
            raise SystemExit(f"--set {item!r}: {name} has no size {field!r}; it has {sorted(cfg)}")
        cfg[field] = _coerce(raw, cfg[field])
    return cfgs


def _coerce(raw: str, like: Any) -> Any:
    if isinstance(like, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(raw.replace("_", ""))
    if isinstance(like, float):
        return float(raw)
    return raw


def run_phase(
    name: str,
    phase: str | None,
    cfg: dict[str, Any],
    args: argparse.Namespace,
    scratch: Path,
    root: Path = against.ROOT,
) -> dict[str, Any]:
    """One workload phase, in a subprocess (or inline) importing actorflow from `root`;
    returns its record."""
    out = scratch / f"{name}-{phase or 'all'}.json"
    if args.inline and root == against.ROOT:
        from ._worker import run_workload

        return run_workload(name, phase, cfg, out, args.workdir)
    command = [
        sys.executable,
        "-m",
        "benchmarks._worker",
        name,
        phase or "",
        json.dumps(cfg),
        str(out),
        str(args.workdir or ""),
    ]
    env = {**os.environ, "PYTHONPATH": _pythonpath(root)}
    # The working directory is first on `-m`'s path: it decides which actorflow is imported.
    proc = subprocess.Popen(command, env=env, cwd=root)
    try:
        code: int | str = proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        code = f"killed after {args.timeout:g} s"
    finally:
        if proc.poll() is None:  # timed out, or we are being stopped: take it down too
            proc.kill()
            proc.wait()
    record: dict[str, Any] = {"status": "error", "metrics": {}, "notes": []}
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(out.read_text())
    if code != 0 and record["status"] != "error":
        record["status"] = "incomplete"
    if code != 0:
        record["notes"].append(f"process exit: {code}")
    return record


def _pythonpath(root: Path) -> str:
    current = os.environ.get("PYTHONPATH")
    return str(root) if not current else f"{root}{os.pathsep}{current}"


def run_workload(
    name: str,
    cfg: dict[str, Any],
    args: argparse.Namespace,
    scratch: Path,
    root: Path = against.ROOT,
) -> dict[str, Any]:
    """All phases of a workload, merged into one record."""
    module = load(name)
    phases: list[str | None] = [None]
    if getattr(module, "PHASES", None):
        wanted = str(cfg.get("phases") or ",".join(module.PHASES)).split(",")
        phases = [p for p in module.PHASES if p in wanted]
    merged: dict[str, Any] = {
        "description": module.DESCRIPTION,
        "config": cfg,
        "status": "ok",
        "elapsed_s": 0.0,
        "load_average_at_start": load_average(),
        "metrics": {},
        "notes": [],
    }
    for phase in phases:
        log(f"[{name}{'' if phase is None else ' / ' + phase}]")
        record = run_phase(name, phase, cfg, args, scratch, root)
        merged["metrics"].update(record.get("metrics", {}))
        merged["notes"] += record.get("notes", [])
        merged["elapsed_s"] += record.get("elapsed_s", 0.0)
        merged["gc_threshold"] = record.get("gc_threshold")
        if record["status"] != "ok" and merged["status"] == "ok":
            merged["status"] = record["status"]
        if phase is not None:
            merged.setdefault("phases", {})[phase] = {
                "status": record["status"],
                "elapsed_s": record.get("elapsed_s"),
            }
    return merged


def derive(results: dict[str, Any]) -> None:
    """Cross-workload numbers: actorflow vs the SQLite ceiling."""
    through = results.get("throughput", {}).get("metrics", {})
    limit = results.get("limit", {}).get("metrics", {})
    floors = results.get("floors", {}).get("metrics", {})
    sustained = results.get("sustained", {}).get("metrics", {})
    if sustained.get("events_per_s") and limit.get("ceiling_events_per_s"):
        limit["actorflow_sustained_pct_of_ceiling"] = (
            100.0 * sustained["events_per_s"] / limit["ceiling_events_per_s"]
        )
    for floor in ("durable_floor", "hand_floor"):
        if floors.get(f"{floor}_events_per_s") and limit.get("ceiling_events_per_s"):
            limit[f"{floor}_pct_of_ceiling"] = (
                100.0 * floors[f"{floor}_events_per_s"] / limit["ceiling_events_per_s"]
            )
    if through.get("events_per_s") and limit.get("ceiling_events_per_s"):
        limit["actorflow_events_per_s"] = through["events_per_s"]
        limit["actorflow_pct_of_ceiling"] = (
            100.0 * through["events_per_s"] / limit["ceiling_events_per_s"]
        )
        if limit.get("at_actorflow_batch_events_per_s"):
            limit["actorflow_pct_at_batch"] = (
                100.0 * through["events_per_s"] / limit["at_actorflow_batch_events_per_s"]
            )
        if through.get("many_events_per_s"):
            limit["actorflow_many_pct_of_ceiling"] = (
                100.0 * through["many_events_per_s"] / limit["ceiling_events_per_s"]
            )


def sections(results: dict[str, Any], comparison: dict[str, Any] | None) -> list[Any]:
    out = []
    for name, record in results.items():
        metrics = record.get("metrics", {})
        rows = [(m, metrics.get(m.key)) for m in load(name).TABLE]
        status = f"{record['status']}, {record['elapsed_s']:.1f} s  ({record['description']})"
        out.append((name, status, rows))
    if comparison is not None:
        rows = []
        status = "ok" if comparison.get("available") else "not run"
        for mode, numbers in comparison.get("modes", {}).items():
            label = f"dbos [{mode}]"
            if "error" in numbers:
                rows.append((Metric(f"{mode}_error", f"{label} error"), numbers["error"][:60]))
                continue
            rows += [
                (Metric("", f"{label} latency p50", "ms"), numbers.get("latency_p50_ms")),
                (Metric("", f"{label} latency p99", "ms"), numbers.get("latency_p99_ms")),
                (Metric("", f"{label} workflows", "/s"), numbers.get("workflows_per_s")),
            ]
            ratios = numbers.get("ratios", {})
            rows += [
                (Metric(m.key, f"  {m.label}", m.unit), ratios.get(m.key)) for m in COMPARE_ROWS
            ]
        if not comparison.get("available"):
            rows.append((Metric("reason", "reason"), comparison.get("reason", "?")))
        out.append(("compare dbos", status, rows))
    return out


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """Every goal of every workload: target and whether it was met."""
    out: dict[str, Any] = {}
    for name, record in results.items():
        for m in load(name).TABLE:
            if m.goal is not None:
                value = record.get("metrics", {}).get(m.key)
                out[f"{name}.{m.key}"] = {
                    "target": fmt_goal(m.goal, m.unit),
                    "value": value,
                    "met": met(value, m.goal),
                }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # On SIGTERM, unwind (so that a running workload process is stopped too).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    names = [w for w in WORKLOADS if w in args.workloads] if args.workloads else list(WORKLOADS)
    store_note = "sqlite:///<fresh file> (WAL, synchronous=NORMAL: actorflow's default)"
    if args.store:
        if not args.store.startswith(("postgresql://", "postgres://")):
            raise SystemExit(f"--store takes a postgresql:// URL, got {args.store!r}")
        if args.workloads and set(names) - set(POSTGRES_WORKLOADS):
            raise SystemExit(f"on --store, the workloads are {', '.join(POSTGRES_WORKLOADS)}")
        names = [w for w in names if w in POSTGRES_WORKLOADS]
        os.environ[STORE_ENV] = args.store  # the workload processes inherit it
        from .postgres import server_settings

        settings = asyncio.run(server_settings(args.store))
        store_note = f"PostgreSQL, a fresh schema per engine; server settings {settings}"
    if "dbos" in args.compare:
        # The comparison is against actorflow's latency and throughput of this invocation.
        names = [w for w in WORKLOADS if w in {*names, "latency", "throughput"}]
    cfgs = configs(names, args.quick, args.set)
    if args.list:
        for name in [*WORKLOADS, "compare_dbos"]:
            module = load(name)
            sizes = module.QUICK if args.quick else module.DEFAULTS
            print(f"{name:<13} {module.DESCRIPTION}\n{'':<13} {sizes}")
        return 0
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    out_path = args.out or RESULTS_DIR / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    machine = machine_info(args.workdir or Path(tempfile.gettempdir()))
    busy = machine["load_average_at_start"]
    if busy and machine["cores"] and busy[0] > 0.5 * machine["cores"]:
        log(f"warning: load average {busy} on {machine['cores']} cores; numbers will be noisy")
    log(
        f"actorflow benchmarks on {machine['cpu_model']} ({machine['cores']} cores), "
        f"{machine['python']}, SQLite {machine['sqlite']}, {machine['event_loop']}; "
        f"actorflow {machine['actorflow_build']}"
    )

    if args.against:
        return side_by_side(args, names, cfgs, machine, out_path)
    begin = time.perf_counter()
    results: dict[str, Any] = {}
    comparison = None
    with tempfile.TemporaryDirectory(prefix="actorflow-bench-") as scratch:
        for name in names:
            cfg = cfgs[name]
            if name == "limit" and "throughput" in results:
                mean = results["throughput"]["metrics"].get("mean_batch_rows")
                if mean:
                    cfg["actorflow_batch_rows"] = round(mean)
            results[name] = run_workload(name, cfg, args, Path(scratch))
            derive(results)
            print(table(sections({name: results[name]}, None)), flush=True)
        if "dbos" in args.compare:
            from .compare_dbos import compare

            log("[compare dbos]")
            comparison = compare(cfgs["compare_dbos"], results, args, Path(scratch))
    elapsed = time.perf_counter() - begin

    report = {
        "machine": machine,
        "invocation": {
            "argv": sys.argv[1:] if argv is None else argv,
            "quick": args.quick,
            "workloads": names,
            "elapsed_s": elapsed,
            "load_average_at_end": load_average(),
            "isolation": "inline" if args.inline else "one process per workload phase",
            "store": store_note,
        },
        "workloads": results,
        "goals": goals(results),
    }
    if comparison is not None:
        report["compare"] = {"dbos": comparison}
    write_report(out_path, report)
    print(
        f"actorflow {machine['actorflow']} ({machine['actorflow_commit']}) on "
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['ram_gib']} GiB, "
        f"{machine['python']}, SQLite {machine['sqlite']}, {machine['event_loop']}, "
        f"{machine['os']}, {machine['date']}; load average {machine['load_average_at_start']}"
        f" at start, {report['invocation']['load_average_at_end']} at end"
    )
    print()
    print(f"store: {store_note}")
    print(table(sections(results, comparison)))
    print(f"total {elapsed:.1f} s; JSON: {out_path}")
    failed = [n for n, r in results.items() if r["status"] == "error"]
    return 1 if failed else 0


def write_report(out_path: Path, report: dict[str, Any]) -> None:
    """Write the JSON, then start the printed summary."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("=" * 100)


def side_by_side(
    args: argparse.Namespace,
    names: list[str],
    cfgs: dict[str, dict[str, Any]],
    machine: dict[str, Any],
    out_path: Path,
) -> int:
    """`--against REV`: every workload on REV and on this checkout, interleaved."""
    rev = against.describe(args.against)
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="actorflow-bench-") as scratch:
        tree = against.extract(args.against, Path(scratch))
        compiled = _build.COMPILED and against.compile_tree(args.against, tree)

        def run_side(name: str, root: Path) -> dict[str, Any]:
            return run_workload(name, dict(cfgs[name]), args, Path(scratch), root)

        results = against.compare(names, max(1, args.repeat), tree, run_side)
    report = {
        "machine": machine,
        "invocation": {
            "argv": sys.argv[1:],
            "against": rev,
            "against_build": "compiled (mypyc)" if compiled else "pure Python",
            "repeat": args.repeat,
            "elapsed_s": time.perf_counter() - begin,
            "load_average_at_end": load_average(),
        },
        "side_by_side": results,
    }
    write_report(out_path, report)
    print(
        f"{rev} against this checkout ({machine['actorflow_commit']}), medians of "
        f"{args.repeat} interleaved runs each, this checkout {machine['actorflow_build']}, "
        f"{rev} {report['invocation']['against_build']}, on "
        f"{machine['cpu_model']}, {machine['cores']} "
        f"cores, {machine['python']}; load average {machine['load_average_at_start']} at "
        f"start, {report['invocation']['load_average_at_end']} at end"
    )
    print()
    print(against.table(results, rev, lambda name: load(name).TABLE))
    print(f"JSON: {out_path}")
    failed = [n for n, r in results.items() if "error" in r["this"]["status"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
