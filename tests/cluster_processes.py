"""Engine processes for the many-engines tests and benchmarks (`tests/cluster_program.py`),
and checks of what they left in the database."""

from __future__ import annotations

import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.databases import PostgresDatabase

PROGRAM = Path(__file__).with_name("cluster_program.py")


def _die_with_parent() -> None:
    """The engine is killed when the test (or benchmark) that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class EngineProcess:
    """`cluster_program.py` in a subprocess: an executing engine on `url`."""

    def __init__(
        self,
        url: str,
        lease_timeout: float,
        max_runs: int | None = None,
        side_effects: Path | None = None,
    ) -> None:
        env = dict(os.environ)
        if side_effects is not None:
            env["ACTORFLOW_SIDE_EFFECTS"] = str(side_effects)
        args = [sys.executable, str(PROGRAM), url, str(lease_timeout)]
        if max_runs is not None:
            args.append(str(max_runs))
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, env=env, preexec_fn=_die_with_parent
        )
        self.engine_id = self._ready(30.0)

    def _ready(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.kill()
                raise AssertionError("the engine process did not start in time")
        line = self.proc.stdout.readline().decode().split()
        assert line and line[0] == "ready", f"unexpected output {line!r}"
        return line[1]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def close(self) -> dict[str, int]:
        """SIGTERM (a clean close), then SIGKILL if it has not ended in 15 s; the counters
        the engine printed as it closed (`ClusterNode.stats`), if it did."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        stats: dict[str, int] = {}
        if self.proc.stdout is None or self.proc.stdout.closed:
            return stats
        for line in self.proc.stdout.read().decode().splitlines():
            if line.startswith("stats "):
                stats = {k: int(v) for k, v in (p.split("=") for p in line.split()[1:])}
        self.proc.stdout.close()
        return stats


def check_logs(db: PostgresDatabase, runs: list[str]) -> None:
    """Every run completed, with a gap-free log, no step result recorded twice and no
    event received twice (the tests send each run distinct payloads)."""
    status = dict(db.query("SELECT id, status FROM runs WHERE id = ANY(?)", (runs,)))
    assert status == dict.fromkeys(runs, "completed")
    logs: dict[str, list[int]] = {}
    for run_id, idx in db.query(
        "SELECT run_id, idx FROM events WHERE run_id = ANY(?) ORDER BY run_id, idx", (runs,)
    ):
        logs.setdefault(run_id, []).append(idx)
    for run_id in runs:
        assert logs[run_id] == list(range(len(logs[run_id]))), f"{run_id}'s log has a hole"
    once = Counter(
        db.query(
            "SELECT run_id, kind, seq, data FROM events WHERE run_id = ANY(?)"
            " AND kind IN ('step_completed', 'event_received', 'child_finished')",
            (runs,),
        )
    )
    assert max(once.values(), default=1) == 1, [k for k, n in once.items() if n > 1]


def wait_until(check: object, timeout: float) -> None:
    """Wait (polling the database, in a test) until `check()` is truthy."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)
