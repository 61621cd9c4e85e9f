"""`--against REV`: the same workloads on the actorflow of git revision REV, side by side.

On a shared machine two invocations minutes apart differ by 10 to 30 % for the
same code; runs interleaved in one invocation see the same load. REV's
`actorflow/` package is extracted (`git archive`, the repository is not
touched) into a scratch directory next to a link to these benchmarks, so both
sides run the same workload code, and each workload phase runs on REV, then on
this checkout, `--repeat` times. The table shows each metric's median on both
sides and their ratio (this / REV).

When this checkout runs its compiled build (`actorflow._build.COMPILED`), REV
is compiled the same way first (its own `setup.py`, mypyc, in place in the
scratch directory: about 90 s), so that both sides are the same kind of build.
A REV from before the compiled build (no `setup.py`) runs as the sources it
was, which is what "the code before the change" meant then; the header says
which build each side is.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Metric, fmt_value, log

ROOT = Path(__file__).resolve().parent.parent

RunSide = Callable[[str, Path], dict[str, Any]]


def extract(rev: str, scratch: Path) -> Path:
    """A directory holding REV's `actorflow` package and these benchmarks; raises
    SystemExit if git cannot read REV."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "actorflow"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"--against {rev}: {done.stderr.decode().strip()}")
    tree = scratch / "against"
    tree.mkdir()
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(tree, filter="data")
    (tree / "benchmarks").symlink_to(ROOT / "benchmarks", target_is_directory=True)
    return tree


def compile_tree(rev: str, tree: Path) -> bool:
    """Build REV's hot path with mypyc in `tree` (extracted by `extract`); False if REV
    predates the compiled build (it has no `setup.py`) and runs as its sources. Raises
    SystemExit if REV has a compiled build that does not compile."""
    has_setup = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}:setup.py"],
        capture_output=True,
        check=False,
    )
    if has_setup.returncode != 0:
        log(f"[{rev} predates the compiled build: it runs as its sources]")
        return False
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "setup.py", "pyproject.toml"],
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(tree, filter="data")
    (tree / "README.md").write_text("")  # what pyproject.toml names as the readme
    log(f"[compiling {rev}'s hot path with mypyc]")
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    check = subprocess.run(
        [sys.executable, "-c", "import actorflow._build as b; print(b.COMPILED)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0 or check.stdout.strip() != "True":
        raise SystemExit(f"--against {rev}: its hot path did not compile:\n{build.stderr[-2000:]}")
    return True


def describe(rev: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or rev


def compare(names: list[str], repeat: int, tree: Path, run_side: RunSide) -> dict[str, Any]:
    """Each workload `repeat` times on each side, interleaved; medians and ratios."""
    out: dict[str, Any] = {}
    for name in names:
        samples: dict[str, list[dict[str, Any]]] = {"against": [], "this": []}
        for i in range(repeat):
            for side, root in (("against", tree), ("this", ROOT)):
                log(f"[{name} on {side}, {i + 1}/{repeat}]")
                samples[side].append(run_side(name, root))
        out[name] = {
            side: {
                "status": [r["status"] for r in records],
                "metrics": _medians([r.get("metrics", {}) for r in records]),
                "samples": [r.get("metrics", {}) for r in records],
            }
            for side, records in samples.items()
        }
    return out


def _medians(records: list[dict[str, Any]]) -> dict[str, Any]:
    keys = {k for r in records for k, v in r.items() if isinstance(v, int | float)}
    medians: dict[str, Any] = {}
    for key in sorted(keys):
        values = [r[key] for r in records if isinstance(r.get(key), int | float)]
        medians[key] = statistics.median(values)
    return medians


def table(results: dict[str, Any], rev: str, rows_of: Callable[[str], list[Metric]]) -> str:
    """Metric, REV's median, this checkout's median, and this / REV."""
    lines: list[str] = []
    width = max([len(m.label) for name in results for m in rows_of(name)] + [20])
    head = f"  {'':<{width}} {rev:>16} {'this':>16} {'this/' + rev[:10]:>16}"
    for name, sides in results.items():
        lines.append(f"{name}  ({', '.join(sides['this']['status'])})")
        lines.append(head)
        before, after = sides["against"]["metrics"], sides["this"]["metrics"]
        for m in rows_of(name):
            a, b = before.get(m.key), after.get(m.key)
            ratio = f"{b / a:.3f}" if isinstance(a, int | float) and a and b is not None else "-"
            lines.append(
                f"  {m.label:<{width}} {fmt_value(a, m.unit):>16} {fmt_value(b, m.unit):>16}"
                f" {ratio:>16}"
            )
        lines.append("")
    return "\n".join(lines)
