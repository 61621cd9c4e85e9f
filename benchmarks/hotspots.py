"""Profile a workload with py-spy and print where the time goes.

    python -m benchmarks.hotspots latency [--set latency.samples=5000] [--rate 200]

Runs `python -m benchmarks WORKLOAD --inline` under `py-spy record` (collapsed
stacks, idle time excluded), then prints the share of samples per thread (the
event loop's main thread, the group-commit writer, aiosqlite's reader, ...)
and the functions with the most samples, by self time and by inclusive time,
as a percentage of all samples. The raw file (`--keep PATH`) opens in
speedscope.app or flamegraph.pl. The setup (warm-up, engine open) is included:
raise the workload's size so that the measured part dominates.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
_THREAD_ID = re.compile(r"^thread \(\d+\):?")


def py_spy() -> str:
    """py-spy next to this interpreter (a venv), else on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    return found


def summarize(raw: Path, top: int) -> str:
    """Threads, then top functions by self and inclusive samples, from py-spy's
    collapsed stacks (recorded with `--threads`: each stack starts with its thread)."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        thread, *frames = stack.split(";")
        threads[_THREAD_ID.sub("", thread).strip() or "?"] += n
        frames = [_LINE.sub(")", f) for f in frames] or ["(no Python frames)"]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if total == 0:
        return "no samples\n"
    lines = [f"{total:,} samples", "", "thread %  thread"]
    lines += [f"{100 * n / total:6.1f}   {t}" for t, n in threads.most_common()]
    lines += ["", "self %   function"]
    lines += [f"{100 * n / total:6.1f}   {f}" for f, n in own.most_common(top)]
    lines += ["", "total %  function (inclusive)"]
    lines += [f"{100 * n / total:6.1f}   {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotspots")
    parser.add_argument("workload")
    parser.add_argument("--set", action="append", default=[], metavar="W.KEY=VALUE")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="keep the collapsed stacks here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="actorflow-profile-") as tmp:
        raw = args.keep or Path(tmp) / "stacks.txt"
        command = [
            py_spy(),
            "record",
            "--threads",
            "--format",
            "raw",
            "--rate",
            str(args.rate),
            "--output",
            str(raw),
            "--",
            sys.executable,
            "-m",
            "benchmarks",
            args.workload,
            "--inline",
            "--out",
            str(Path(tmp) / "results.json"),
        ]
        for item in args.set:
            command += ["--set", item]
        subprocess.run(command, check=True)
        print(summarize(raw, args.top))


if __name__ == "__main__":
    main()
