"""Crash/recovery: an engine in a subprocess is killed with SIGKILL, the same store (a SQLite
file, a PostgreSQL schema) is reopened in a fresh process, and every run must finish as if
nothing had happened.

The subprocess runs `tests/crash_program.py`, which prints one line per step
attempt (and other milestones); the tests read those lines to decide when to
kill. Every step also appends `run_id seq attempt pid` to a side-effect log,
so the tests know which attempts really ran, and in which process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import actorflow as af

from . import crash_program as cp
from .conftest import eventually
from .databases import Database, SQLiteDatabase

PROGRAM = Path(cp.__file__).resolve()
LINE_TIMEOUT = 60.0  # seconds to wait for any expected line (generous for slow CI)


class Program:
    """One `crash_program.py` process; its stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr = stderr
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def diagnosis(self) -> str:
        err = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        return (
            f"\n--- last stdout lines of pid {self.pid} ---\n"
            + "\n".join(self.lines[-20:])
            + f"\n--- stderr ---\n{err[-4000:]}"
        )

    async def next_line(self, timeout: float = LINE_TIMEOUT) -> str:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise AssertionError(f"no output for {timeout}s{self.diagnosis()}") from None
        if not raw:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
            raise AssertionError(f"program exited (rc={rc}) unexpectedly{self.diagnosis()}")
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        if line.startswith("WRONG"):
            raise AssertionError(f"the program saw a wrong result: {line}{self.diagnosis()}")
        return line

    async def expect(
        self, predicate: str | Callable[[str], bool], timeout: float = LINE_TIMEOUT
    ) -> str:
        """Read lines until one matches (`str`: the line's first word equals it)."""
        deadline = time.monotonic() + timeout
        while True:
            line = await self.next_line(max(0.0, deadline - time.monotonic()))
            if (line.split(" ")[0] == predicate) if isinstance(predicate, str) else predicate(line):
                return line

    async def expect_all(self, *firsts: str, timeout: float = LINE_TIMEOUT) -> dict[str, str]:
        """Read lines until one starting with each of `firsts` (whole words) came, in any
        order; returns the first such line for each."""
        deadline = time.monotonic() + timeout
        found: dict[str, str] = {}
        while len(found) < len(firsts):
            line = await self.next_line(max(0.0, deadline - time.monotonic()))
            for first in firsts:
                if first not in found and (line + " ").startswith(first + " "):
                    found[first] = line
        return found

    async def kill(self) -> None:
        """SIGKILL, and reap the process."""
        self.proc.send_signal(signal.SIGKILL)
        rc = await asyncio.wait_for(self.proc.wait(), LINE_TIMEOUT)
        assert rc == -signal.SIGKILL, f"rc={rc}{self.diagnosis()}"

    async def exit_code(self, timeout: float = LINE_TIMEOUT) -> int:
        """Read stdout to its end, then wait for the exit."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while line := await self.proc.stdout.readline():
                self.lines.append(line.decode().rstrip("\n"))
            return await self.proc.wait()


@contextlib.asynccontextmanager
async def program(
    tmp_path: Path, mode: str, db: Database, log: Path, n: int = 0
) -> AsyncIterator[Program]:
    """Start `crash_program.py MODE URL LOG N`; it is killed on the way out if still alive."""
    stderr = tmp_path / f"stderr-{mode}-{time.monotonic_ns()}.txt"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROGRAM),
            mode,
            db.url,
            str(log),
            str(n),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    prog = Program(proc, stderr)
    try:
        line = await prog.expect("open")
        assert int(line.split()[1]) == proc.pid
        yield prog
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


# -- reading what happened -----------------------------------------------------------------


def query(db: Database, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Read the database directly (no engine open on it)."""
    return db.query(sql, params)


def completed_steps(db: Database) -> dict[tuple[str, int, int], bytes]:
    """(run_id, generation, seq) -> result of every committed `step_completed`."""
    rows = query(db, "SELECT run_id, generation, seq, data FROM events WHERE kind='step_completed'")
    return {(run_id, gen, seq): data for run_id, gen, seq, data in rows}


def side_effects(log: Path) -> list[tuple[str, int, int, int]]:
    """Every step attempt that ran: (run_id, seq, attempt, pid)."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        run_id, seq, attempt, pid = line.split()
        out.append((run_id, int(seq), int(attempt), int(pid)))
    return out


def attempts_of(log: Path, run_id: str, seq: int) -> list[tuple[int, int]]:
    """(attempt, pid) of every recorded attempt of one step."""
    return [(a, p) for r, s, a, p in side_effects(log) if r == run_id and s == seq]


# -- 1. several hundred runs, killed at several points -------------------------------------

N_RUNS = 300
N_STEPS = len(cp.CORE_STEPS)


async def test_sigkill_mid_flight_loses_nothing_and_never_reruns_committed_steps(
    tmp_path: Path, database: Database
) -> None:
    db, log = database, tmp_path / "effects.log"
    total = N_RUNS * N_STEPS
    # Each kill lands once a random fraction of the side effects has happened (so on a
    # fast machine too, the kill comes mid-work, not after a fixed time); a round whose
    # kill came after all the work fails the test. The seed is in the labels.
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    fractions = [rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.65), rng.uniform(0.7, 0.95)]
    # (label, mode, kill once this many distinct steps ran in all processes | None, or once
    # this process ran this many step attempts | None). "core-start" starts all runs by id
    # (in a recovering process, idempotently: it gets the recovered runs back);
    # "core-recover" only waits for the recovered runs.
    kill_points: list[tuple[str, str, int | None, int | None]] = [
        (f"{fractions[0]:.1%} (seed {seed})", "core-start", int(total * fractions[0]), None),
        (f"{fractions[1]:.1%} (seed {seed})", "core-recover", int(total * fractions[1]), None),
        (f"right after recovery (seed {seed})", "core-start", None, rng.randint(1, 20)),
        (f"{fractions[2]:.1%} (seed {seed})", "core-recover", int(total * fractions[2]), None),
    ]
    pids: list[int] = []
    snapshots: list[dict[tuple[str, int, int], bytes]] = []

    for k, (label, mode, distinct_target, own_target) in enumerate(kill_points):
        seen = {(r, s) for r, s, _, _ in side_effects(log)}
        async with program(tmp_path, mode, db, log, N_RUNS) as prog:
            pids.append(prog.pid)
            if k == 0:
                await prog.expect("started")
            own = 0
            while True:
                line = await prog.next_line()
                assert not line.startswith("done"), f"finished before the {label} kill point"
                if line.startswith("P "):
                    _, run_id, seq, _ = line.split()
                    seen.add((run_id, int(seq)))
                    own += 1
                if (distinct_target is not None and len(seen) >= distinct_target) or (
                    own_target is not None and own >= own_target
                ):
                    break
            await prog.kill()
        snapshot = completed_steps(db)
        assert len(snapshot) < total, f"every step was already committed at the {label} kill"
        snapshots.append(snapshot)

    async with program(tmp_path, "core-recover", db, log, N_RUNS) as prog:
        pids.append(prog.pid)
        await prog.expect("done", timeout=60)
        assert await prog.exit_code() == 0, prog.diagnosis()

    assert len(set(pids)) == len(pids)
    order = {pid: k for k, pid in enumerate(pids)}
    effects = side_effects(log)
    assert {p for *_, p in effects} <= set(pids)
    final = completed_steps(db)

    # Every run completed with the right result, with one log entry per step.
    runs = sorted(query(db, "SELECT id, status, result FROM runs"))
    assert [r[0] for r in runs] == [cp.core_id(i) for i in range(N_RUNS)]
    for i, (run_id, status, result) in enumerate(runs):
        assert status == "completed", run_id
        assert orjson.loads(result) == cp.core_expected(i), run_id

    # Each step has exactly one committed result, under the right name.
    names = Counter(
        (run_id, seq, name)
        for run_id, seq, name in query(
            db, "SELECT run_id, seq, name FROM events WHERE kind='step_completed'"
        )
    )
    expected_names = Counter(
        (cp.core_id(i), seq, name) for i in range(N_RUNS) for seq, name in enumerate(cp.CORE_STEPS)
    )
    assert names == expected_names
    assert {(r, g) for r, g, _ in final} == {(cp.core_id(i), 0) for i in range(N_RUNS)}

    # Each log is gap-free, starts with run_created and ends with its one run_completed.
    # SQLite does not store a plain run_created (its run's row implies it): its logs
    # start at entry 1.
    first = 1 if db.kind == "sqlite" else 0
    logs: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for run_id, idx, kind in query(db, "SELECT run_id, idx, kind FROM events ORDER BY run_id, idx"):
        logs[run_id].append((idx, kind))
    assert set(logs) == {cp.core_id(i) for i in range(N_RUNS)}
    for run_id, entries in logs.items():
        assert [idx for idx, _ in entries] == list(range(first, first + len(entries))), run_id
        kinds = ["run_created"] * first + [kind for _, kind in entries]
        assert kinds[0] == "run_created" and kinds[-1] == "run_completed", (run_id, kinds)
        assert kinds.count("run_created") == 1 and kinds.count("run_completed") == 1, run_id

    # What was committed before a kill is still there, unchanged.
    for (label, *_), snapshot in zip(kill_points, snapshots, strict=True):
        lost = {key for key, data in snapshot.items() if final.get(key) != data}
        assert not lost, f"committed before the {label} kill, lost or changed after: {lost}"
    sizes = [len(s) for s in snapshots]
    assert sizes == sorted(sizes), sizes

    # No step whose result was committed before a kill ran again in a later process.
    for k, snapshot in enumerate(snapshots):
        reran = sorted(
            (run_id, seq, attempt, pid)
            for run_id, seq, attempt, pid in effects
            if order[pid] > k and (run_id, 0, seq) in snapshot
        )
        assert not reran, f"committed before the {kill_points[k][0]} kill, ran again: {reran[:10]}"

    # A committed result comes from an attempt that ran no later than the process that
    # committed it; and no process ran a step twice (no step failed, so no retries).
    first_ran: dict[tuple[str, int], int] = {}
    for run_id, seq, _, pid in effects:
        key = (run_id, seq)
        first_ran[key] = min(first_ran.get(key, order[pid]), order[pid])
    for k, snapshot in enumerate(snapshots):
        for run_id, _, seq in snapshot:
            assert first_ran[(run_id, seq)] <= k, (run_id, seq)
    assert set(first_ran) == {(r, s) for r, _, s in final}
    per_process = Counter((run_id, seq, pid) for run_id, seq, _, pid in effects)
    assert max(per_process.values()) == 1, per_process.most_common(3)

    # Attempt numbers: an attempt runs only once its number is committed, a recorded number
    # is never handed out again, and a step that ran again in a later process got a higher one.
    recorded: dict[tuple[str, int], list[int]] = defaultdict(list)
    for run_id, seq, data in query(
        db, "SELECT run_id, seq, data FROM events WHERE kind='step_started' ORDER BY run_id, idx"
    ):
        recorded[(run_id, seq)].append(orjson.loads(data)["attempt"])
    assert set(recorded) == set(first_ran)
    for key, attempts in recorded.items():
        assert attempts == sorted(set(attempts)), (key, attempts)
    ran: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for run_id, seq, attempt, pid in effects:
        ran[(run_id, seq)].append((order[pid], attempt))
    for key, attempts in ran.items():
        in_order = [attempt for _, attempt in sorted(attempts)]
        assert in_order == sorted(set(in_order)), (key, attempts)
        assert set(in_order) <= set(recorded[key]), (key, attempts, recorded[key])
    if db.kind == "sqlite":
        assert query(db, "PRAGMA integrity_check") == [("ok",)]


# -- 2. durable sleeps and event waits -----------------------------------------------------


async def test_sleeps_and_event_waits_survive_sigkill(tmp_path: Path, database: Database) -> None:
    db, log = database, tmp_path / "effects.log"
    async with program(tmp_path, "waits", db, log) as prog:
        await prog.expect_all("ready", "gate early-event 0 1")
        await prog.kill()

    status = dict(query(db, "SELECT id, status FROM runs"))
    assert status == {
        "sleep-overdue": "waiting",
        "sleep-future": "waiting",
        "event": "waiting",
        "event-timeout": "waiting",
        "early-event": "running",
    }

    def timer_of(run_id: str, kind: str, key: str) -> float:
        rows = query(db, "SELECT data FROM events WHERE run_id=? AND kind=?", (run_id, kind))
        assert len(rows) == 1, (run_id, kind, rows)
        return float(orjson.loads(rows[0][0])[key])

    overdue_at = timer_of("sleep-overdue", "sleep_started", "fire_at")
    future_at = timer_of("sleep-future", "sleep_started", "fire_at")
    timeout_at = timer_of("event-timeout", "wait_started", "timeout_at")
    # Let the short timers fall due while no process runs them.
    await eventually(lambda: time.time() > max(overdue_at, timeout_at), timeout=5)
    assert time.time() < future_at - 1.0, "precondition: the long sleep is not due yet"

    opened = time.time()
    async with af.Engine(db.url) as engine:
        # Overdue timers fire at once at start-up.
        assert await engine.get_run("sleep-overdue").result(timeout=5) == {
            "slept": 0.3,
            "marks": ["before", "after"],
        }
        assert await engine.get_run("event-timeout").result(timeout=5) == {"timed_out": True}
        # The event sent to the killed process (before the run waited for it) was kept.
        assert await engine.get_run("early-event").result(timeout=5) == {
            "got": {"sent": "before the crash"}
        }
        # The event wait resumes when the event comes.
        event_run = engine.get_run("event")
        assert await event_run.status() == af.RunStatus.WAITING
        await event_run.send_event("go", {"n": 1})
        assert await event_run.result(timeout=5) == {"got": {"n": 1}, "after": "after"}
        # The long sleep fires on time, not earlier.
        assert await engine.get_run("sleep-future").result(timeout=10) == {
            "slept": 4.0,
            "marks": ["before", "after"],
        }

    fired = dict(query(db, "SELECT run_id, at FROM events WHERE kind='sleep_fired'"))
    assert opened <= fired["sleep-overdue"] < opened + 2.0
    assert fired["sleep-future"] >= future_at
    # The sleeps were not begun again: same single sleep_started, same fire_at.
    assert timer_of("sleep-future", "sleep_started", "fire_at") == future_at
    # Steps committed before the kill did not run again; the rest ran once.
    killed_pid = prog.pid
    for run_id in ("sleep-overdue", "sleep-future", "event"):
        assert attempts_of(log, run_id, 0) == [(1, killed_pid)], run_id
    for run_id, seq in (("sleep-overdue", 2), ("sleep-future", 2), ("event", 2)):
        assert attempts_of(log, run_id, seq) == [(1, os.getpid())], run_id
    assert attempts_of(log, "event-timeout", 0) == [(1, killed_pid)]
    # The step that was running when the process died ran again, as attempt 2.
    assert attempts_of(log, "early-event", 0) == [(1, killed_pid), (2, os.getpid())]


# -- 3. a child's result reaches its parent across a restart --------------------------------


async def test_child_result_reaches_parent_after_sigkill(
    tmp_path: Path, database: Database
) -> None:
    db, log = database, tmp_path / "effects.log"

    async with program(tmp_path, "child", db, log) as prog:
        # Once the child's second step waits at the gate and its start is committed.
        lines = await prog.expect_all("ready", "gate")
        child_id = lines["ready"].split()[1]
        assert lines["gate"] == f"gate {child_id} 1 1"
        await prog.kill()

    assert dict(query(db, "SELECT id, status FROM runs")) == {
        "parent": "waiting",
        child_id: "running",
    }

    async with af.Engine(db.url) as engine:
        result = await engine.get_run("parent").result(timeout=10)
        assert result == {"child_id": child_id, "child": {"n": 10, "value": 21}, "last": 42}
        assert await engine.get_run(child_id).result(timeout=5) == {"n": 10, "value": 21}
        children = await engine.list_runs(parent_id="parent")
        assert [c.id for c in children] == [child_id]

    assert sorted(query(db, "SELECT id, status, parent_id FROM runs")) == [
        ("parent", "completed", None),
        (child_id, "completed", "parent"),
    ]
    kinds = Counter(query(db, "SELECT run_id, kind FROM events"))
    assert kinds[("parent", "child_started")] == 1
    assert kinds[("parent", "child_finished")] == 1
    assert kinds[(child_id, "run_completed")] == 1
    assert kinds[("parent", "run_completed")] == 1
    killed, here = prog.pid, os.getpid()
    assert attempts_of(log, "parent", 0) == [(1, killed)]
    assert attempts_of(log, child_id, 0) == [(1, killed)]
    # The child's step that the kill interrupted ran again; nothing else did.
    assert attempts_of(log, child_id, 1) == [(1, killed), (2, here)]
    assert attempts_of(log, "parent", 3) == [(1, here)]


# -- 4. stream chunks keep their indexes across a crash -------------------------------------


async def test_stream_survives_sigkill_without_shifting_or_duplicating(
    tmp_path: Path, database: Database
) -> None:
    db, log = database, tmp_path / "effects.log"
    before_gate = cp.STREAM_GATE_AT

    async with program(tmp_path, "stream", db, log) as prog:
        await prog.expect("ready")
        # The killed attempt committed `before_gate` chunks, then waits at the gate.
        await prog.expect(lambda line: line == f"C {before_gate} {before_gate - 1} 1")
        await prog.kill()

    rows = query(db, "SELECT idx, seq, attempt FROM chunks ORDER BY idx")
    assert rows == [(0, 0, 0)] + [(i + 1, 1, 1) for i in range(before_gate)]

    def present(chunk: af.StreamChunk) -> tuple[int, Any, int | None, int]:
        return (chunk.index, chunk.value, chunk.seq, chunk.attempt)

    expected = (
        [(0, "begin", 0, 0)]
        + [(1 + i, {"i": i, "attempt": 1}, 1, 1) for i in range(before_gate)]
        + [(1 + before_gate + i, {"i": i, "attempt": 2}, 1, 2) for i in range(cp.STREAM_TOTAL)]
    )
    expected += [
        (len(expected), b"\x00end", 1, 2),
        (len(expected) + 1, "end", 2, 0),
    ]

    gate = cp.gate = asyncio.Event()
    try:
        async with af.Engine(db.url) as engine:
            run = engine.get_run("streamer")
            got: list[af.StreamChunk] = []

            async def read() -> None:
                async for chunk in run.stream(with_info=True):
                    got.append(chunk)

            reader = asyncio.create_task(read())
            try:
                # The old chunks, then the new attempt's first ones (it waits at the gate).
                await eventually(lambda: len(got) >= 1 + 2 * before_gate, timeout=10)
                assert [present(c) for c in got] == expected[: 1 + 2 * before_gate]
                assert await run.status() == af.RunStatus.RUNNING
                gate.set()
                await asyncio.wait_for(reader, 10)
            finally:
                reader.cancel()
            assert [present(c) for c in got] == expected
            assert await run.result(timeout=5) == {"attempt": 2}
            # A reader that comes afterwards sees exactly the same stream.
            again = [present(c) async for c in run.stream(with_info=True)]
            assert again == expected
            assert [v async for v in run.stream(start=-2)] == [b"\x00end", "end"]
    finally:
        cp.gate = None

    assert attempts_of(log, "streamer", 1) == [(1, prog.pid), (2, os.getpid())]
    rows = query(db, "SELECT idx, seq, attempt, kind FROM chunks ORDER BY idx")
    assert [r[0] for r in rows] == list(range(len(expected) + 1))  # + the close marker


# -- 5. one engine per SQLite file ----------------------------------------------------------


async def test_second_engine_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    db, log = SQLiteDatabase(tmp_path / "locked.db"), tmp_path / "effects.log"
    url = db.url
    async with program(tmp_path, "hold", db, log) as prog:
        assert (await prog.expect("result")) == "result hello world"
        await prog.expect("ready")
        for _ in range(2):  # a refused open leaves the holder's lock alone
            with pytest.raises(af.StoreLockedError, match="open in another actorflow engine"):
                async with af.Engine(url):
                    pass
        assert prog.proc.returncode is None
        await prog.kill()

    async with af.Engine(url) as engine:
        assert await engine.get_run("hello").result(timeout=5) == "hello world"
        # ... and now this engine is the one that holds the file.
        with pytest.raises(af.StoreLockedError):
            async with af.Engine(url):
                pass
    assert attempts_of(log, "hello", 0) == [(1, prog.pid)]


# -- 6. a run killed right after an input that woke it was committed -----------------------


@pytest.mark.parametrize("mode", ["strand-event", "strand-sleep"])
async def test_run_woken_just_before_sigkill_is_recovered(
    tmp_path: Path, database: Database, mode: str
) -> None:
    """The event (or fired sleep) is committed, the workflow goes on to a step, and the
    process dies before the step's start is committed: the log holds an input the workflow
    has not consumed, so the run must be picked up again on open."""
    db, log = database, tmp_path / "effects.log"
    async with program(tmp_path, mode, db, log) as prog:
        await prog.expect("dying")
        assert await prog.exit_code() == -signal.SIGKILL, prog.diagnosis()

    woke = "event_received" if mode == "strand-event" else "sleep_fired"
    kinds = [k for (k,) in query(db, "SELECT kind FROM events WHERE run_id='strand' ORDER BY idx")]
    assert woke in kinds, kinds
    assert "run_completed" not in kinds
    # Recovery parks `waiting` runs until their timer or a message: recorded like that,
    # with no timer, this run would never be picked up again.
    [(status, wake_at)] = query(db, "SELECT status, wake_at FROM runs WHERE id='strand'")
    assert (status, wake_at) != ("waiting", None), "stranded: waiting for an input it has"

    async with af.Engine(db.url) as engine:
        expected = (
            {"got": {"n": 1}, "step": "after event"}
            if mode == "strand-event"
            else {"step": "after sleep"}
        )
        assert await engine.get_run("strand").result(timeout=5) == expected
    assert [p for _, p in attempts_of(log, "strand", 1)] == [prog.pid, os.getpid()]
