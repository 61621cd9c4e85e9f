"""Runs one workload (one phase of it) in this process: `python -m benchmarks._worker
NAME PHASE CFG_JSON OUT [WORKDIR]`. The orchestrator (`python -m benchmarks`) starts one
per workload phase and reads OUT; `--inline` calls `run_workload` directly instead."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

import actorflow as af

from .common import Context


def run_workload(
    name: str, phase: str | None, cfg: dict[str, Any], out: Path | None, workdir: Path | None
) -> dict[str, Any]:
    """Run the workload on uvloop (`af.run`) in a fresh temporary directory."""
    module = importlib.import_module(f"benchmarks.{name}")
    with tempfile.TemporaryDirectory(prefix=f"actorflow-bench-{name}-", dir=workdir) as tmp:
        ctx = Context(Path(tmp), out)
        try:
            if phase is None:
                af.run(module.run(cfg, ctx))
            else:
                af.run(module.run(cfg, ctx, phase))
            ctx.status = "ok"
        except (Exception, asyncio.CancelledError):
            ctx.status = "error"
            ctx.notes.append(traceback.format_exc(limit=-6))
            traceback.print_exc()
        if ctx.store is not None:
            from .postgres import drop_schemas

            asyncio.run(drop_schemas(ctx.store, ctx.schemas))
        ctx.checkpoint()
        return ctx.record()


def main() -> None:
    name, phase, cfg, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])
    workdir = Path(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None
    record = run_workload(name, phase or None, cfg, out, workdir)
    # Threads left running would keep the interpreter from exiting (e.g. a database
    # connection an engine failed to close): note them, then exit regardless.
    stray = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    stray = [n for n in stray if not n.startswith("asyncio_")]
    if stray:
        record["notes"].append(f"threads still running at exit: {', '.join(stray)}")
        out.write_text(json.dumps(record, indent=1))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if record["status"] == "ok" else 1)


if __name__ == "__main__":
    main()
