"""Count the CPU instructions one workflow costs, with valgrind: exact where timings are noisy.

    python -m benchmarks.instructions [--steps 3] [--small 1000] [--large 3000]
                                      [--shape int|dict|dataclass] [--otel [--sample R]]
                                      [--otel-pipe]

Runs the throughput workload (N concurrent workflows of `--steps` trivial
steps, after a warm-up) under `valgrind --tool=callgrind` at two sizes and
prints (instructions(large) - instructions(small)) / (large - small): the
instructions per workflow, with start-up and warm-up cancelled out. The
group-commit writer runs every batch on the event loop's thread here, so the
count covers all the work (SQLite's included) and does not depend on how
threads were scheduled: repeated counts agree within about 0.2 %, where
wall-clock runs on a shared VM vary by 10 to 30 %. Use it to compare two
versions of the code; instructions are not time (cache misses, and the GC's
in particular, cost more per instruction), so confirm a gain with
`python -m benchmarks throughput`.

It also prints the count without SQLite's statement preparation: each
multi-row INSERT shape (rows per statement) is prepared once per process and
cached, and preparing one of thousands of rows costs millions of
instructions; the larger size meets more shapes than the smaller, so the
first number carries a one-time cost that moves with batch sizes. Compare
changes by the second (valgrind's callgrind tool counts it, by function).

`--shape` passes a dict or a dataclass (typed values, see the `typed`
workload) through the steps instead of an int. `--otel` counts with
`actorflow.otel` instrumented (spans to the SDK's in-memory exporter, metrics
to its in-memory reader): the cost of telemetry, exactly; with `--sample R`, the
tracer samples a fraction R of the runs (`ParentBased(TraceIdRatioBased(R))`).
`--otel-pipe` counts the prototype of `benchmarks/otel_pipe.py`: every
committed batch's rows pickled to a pipe for another process (not counted) to
make the telemetry from.
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_IR = re.compile(r"refs:\s+([\d,]+)")
_PREPARE = re.compile(r"^\s*([\d,]+) .*:pysqlite_statement_create\b", re.MULTILINE)


def count(
    size: int, steps: int, shape: str = "int", sample: float | None = None, pipe: bool = False
) -> tuple[int, int]:
    """Instructions of one child process running `size` workflows, and those of them
    spent preparing SQL statements."""
    valgrind = shutil.which("valgrind")
    annotate = shutil.which("callgrind_annotate")
    if valgrind is None or annotate is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        command = [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--child",
            str(size),
            "--steps",
            str(steps),
            "--shape",
            shape,
            *([] if sample is None else ["--otel", "--sample", str(sample)]),
            *(["--otel-pipe"] if pipe else []),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        found = _IR.search(done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr}")
        functions = subprocess.run(
            [annotate, "--inclusive=yes", out], capture_output=True, text=True, check=True
        ).stdout
    prepared = _PREPARE.search(functions)
    total = int(found.group(1).replace(",", ""))
    return total, 0 if prepared is None else int(prepared.group(1).replace(",", ""))


def child(size: int, steps: int, shape: str, sample: float | None, pipe: bool) -> None:
    """The measured program: `size` concurrent workflows, the writer inline; `sample`: the
    fraction of runs traced, with actorflow.otel instrumented (None: not instrumented);
    `pipe`: committed rows shipped to another process instead."""
    import actorflow as af

    if sample is not None:
        _instrument(sample)
    if pipe:
        from .otel_pipe import install

        install()
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


def _instrument(sample: float) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from actorflow.otel import ActorflowInstrumentor

    sampled = sample < 1  # else the SDK's default sampler (every run)
    tracer_provider = TracerProvider(ParentBased(TraceIdRatioBased(sample)) if sampled else None)
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
    parser.add_argument(
        "--sample", type=float, default=1.0, help="with --otel: the fraction of runs traced (1)"
    )
    parser.add_argument(
        "--otel-pipe", action="store_true", help="committed rows pickled to another process"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sample = args.sample if args.otel else None
    if args.child is not None:
        child(args.child, args.steps, args.shape, sample, args.otel_pipe)
        return
    if args.large <= args.small:
        parser.error("--large must be greater than --small")
    with ThreadPoolExecutor(2) as pool:  # counts do not depend on what else runs
        sizes, steps, shapes = (args.small, args.large), [args.steps] * 2, [args.shape] * 2
        small, large = pool.map(count, sizes, steps, shapes, [sample] * 2, [args.otel_pipe] * 2)
    runs = args.large - args.small
    per_run = (large[0] - small[0]) / runs
    unprepared = (large[0] - large[1] - small[0] + small[1]) / runs
    telemetry = ""
    if sample is not None:
        telemetry = ", otel on" + ("" if sample >= 1 else f" ({sample:g} of runs traced)")
    if args.otel_pipe:
        telemetry += ", committed rows piped to another process"
    print(
        f"{args.steps}-step workflow on {args.shape}{telemetry}: {per_run:,.0f} instructions "
        f"per workflow, {unprepared:,.0f} without preparing SQL statements"
    )


if __name__ == "__main__":
    main()
