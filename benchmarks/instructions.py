"""Count the CPU instructions one workflow costs, with valgrind: exact where timings are noisy.

    python -m benchmarks.instructions [--steps 3] [--small 1000] [--large 3000]
                                      [--shape int|dict|dataclass] [--otel]

Runs the throughput workload (N concurrent workflows of `--steps` trivial
steps, after a warm-up) under `valgrind --tool=cachegrind` at two sizes and
prints (instructions(large) - instructions(small)) / (large - small): the
instructions per workflow, with start-up and warm-up cancelled out. The
group-commit writer runs every batch on the event loop's thread here, so the
count covers all the work (SQLite's included) and does not depend on how
threads were scheduled: repeated counts agree within about 0.2 %, where
wall-clock runs on a shared VM vary by 10 to 30 %. Use it to compare two
versions of the code; instructions are not time (cache misses, and the GC's
in particular, cost more per instruction), so confirm a gain with
`python -m benchmarks throughput`. `--shape` passes a dict or a dataclass (typed
values, see the `typed` workload) through the steps instead of an int. `--otel`
counts with `actorflow.otel` instrumented (spans to the SDK's in-memory exporter,
metrics to its in-memory reader): the cost of telemetry, exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

_IR = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(size: int, steps: int, shape: str = "int", otel: bool = False) -> int:
    """Instructions of one child process running `size` workflows."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    command = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        str(size),
        "--steps",
        str(steps),
        "--shape",
        shape,
        *(["--otel"] if otel else []),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = _IR.search(done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def child(size: int, steps: int, shape: str, otel: bool) -> None:
    """The measured program: `size` concurrent workflows, the writer inline."""
    import actorflow as af

    if otel:
        _instrument()
    from actorflow._store._sqlite_writer import SQLiteTransactions

    from .shapes import add_one
    from .typed import Item, chain_dataclass, chain_dict

    @af.workflow(name="bench.instructions")
    async def chain(x: int) -> int:
        for _ in range(steps):
            x = await add_one(x)
        return x

    def arguments(i: int) -> tuple[Any, ...]:
        if shape == "dict":
            return ({"sku": "sku", "qty": i, "price": 9.5}, steps)
        return (Item("sku", i, 9.5), steps) if shape == "dataclass" else (i,)

    workflows: dict[str, af.WorkflowFunction[Any, int]] = {
        "int": chain,
        "dict": chain_dict,
        "dataclass": chain_dataclass,
    }
    workflow = workflows[shape]

    original = SQLiteTransactions.__init__

    def inline(self: SQLiteTransactions, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self._inline_limit = sys.maxsize  # every batch on the loop thread

    SQLiteTransactions.__init__ = inline  # type: ignore[method-assign]

    async def main() -> None:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{directory}/instructions.db"
            async with af.Engine(url, workflows=[workflow]) as engine:
                for n in (200, size):  # warm-up, then the measured part
                    runs = await asyncio.gather(
                        *(engine.start(workflow, *arguments(i)) for i in range(n))
                    )
                    results = await asyncio.gather(*(r.result() for r in runs))
                    assert results == [i + steps for i in range(n)]

    af.run(main())


def _instrument() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from actorflow.otel import ActorflowInstrumentor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ActorflowInstrumentor().instrument(tracer_provider, meter_provider)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="steps per workflow (3)")
    parser.add_argument("--small", type=int, default=1000, help="workflows, first count")
    parser.add_argument("--large", type=int, default=3000, help="workflows, second count")
    parser.add_argument(
        "--shape",
        choices=["int", "dict", "dataclass"],
        default="int",
        help="what the workflow's argument and step results are (int)",
    )
    parser.add_argument("--otel", action="store_true", help="with actorflow.otel instrumented")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.steps, args.shape, args.otel)
        return
    if args.large <= args.small:
        parser.error("--large must be greater than --small")
    small = count(args.small, args.steps, args.shape, args.otel)
    large = count(args.large, args.steps, args.shape, args.otel)
    per_run = (large - small) / (args.large - args.small)
    telemetry = ", otel on" if args.otel else ""
    print(
        f"{args.steps}-step workflow on {args.shape}{telemetry}: "
        f"{per_run:,.0f} instructions per workflow"
    )


if __name__ == "__main__":
    main()
