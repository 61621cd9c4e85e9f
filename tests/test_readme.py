"""The README's quickstart works when pasted, when run again, and when killed and rerun."""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _quickstart(directory: Path) -> Path:
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "README has a Quickstart code block"
    script = directory / "quickstart.py"
    script.write_text(code.group(1))
    return script


def _run_to_the_end(script: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "'approved_by': 'alice'" in done.stdout
    assert "('charge', 'completed', " in done.stdout
    return done.stdout


def test_quickstart_runs_and_runs_again(tmp_path: Path) -> None:
    script = _quickstart(tmp_path)
    first = _run_to_the_end(script)
    assert "('charge', 'completed', 1)" in first
    assert (tmp_path / "orders.db").exists()
    assert _run_to_the_end(script) == first  # the recorded run, not a crash


def test_types_example_survives_a_crash(tmp_path: Path) -> None:
    code = re.search(r"## Types\n.*?```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "README has a Types code block"
    script = tmp_path / "types_example.py"
    script.write_text(code.group(1))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    crashed = run("crash")
    assert crashed.returncode == -9, crashed.stderr
    assert crashed.stdout == "quoting o-1\n"
    replayed = run()
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == (  # the step did not run again; its result is a Quote again
        "Quote(order_id='o-1 approved by alice', ship_by=datetime.datetime(2026, 12, 3, 0, 0, "
        "tzinfo=datetime.timezone.utc), tier=<Tier.EXPRESS: 'express'>)\n"
    )


def _order_status(db: Path) -> str | None:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = 'order-o-1'").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def test_quickstart_killed_at_random_moments_and_rerun(tmp_path: Path) -> None:
    """SIGKILL at a random moment after the run is recorded, then rerun: every rerun
    prints the result. Rounds whose kill came after the run had finished do not
    count: at least three kills must land while it was unfinished."""
    rng = random.Random()
    mid_work = 0
    for round_ in range(30):
        directory = tmp_path / f"round-{round_}"
        directory.mkdir()
        script = _quickstart(directory)
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while _order_status(directory / "orders.db") is None and proc.poll() is None:
            assert time.monotonic() < deadline, "the quickstart never recorded its run"
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.08))  # the rest of the run takes about 60-100 ms
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if _order_status(directory / "orders.db") != "completed":
            mid_work += 1
        _run_to_the_end(script)
        if mid_work >= 3:
            break
    assert mid_work >= 3, f"only {mid_work} of 30 kills landed before the run finished"


def test_readme_and_run_status_define_queued_alike() -> None:
    """Issue 15 item 18: `status()` right after `start()` says `queued` with no cap; the
    README and `RunStatus` say so instead of tying `queued` to the cap alone."""
    import actorflow as af

    readme = " ".join(README.read_text().split())
    assert "every run starts queued, without a # concurrency cap only until its first turn" in (
        readme
    )
    doc = " ".join((af.RunStatus.__doc__ or "").split())
    assert "Every run starts `queued`: without a concurrency cap only until its actor's" in doc
