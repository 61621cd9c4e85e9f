"""The program the crash/recovery tests run in a subprocess and kill with SIGKILL.

    python tests/crash_program.py MODE STORE_URL SIDE_EFFECT_LOG [N]

It opens `af.Engine(STORE_URL)` (which recovers every unfinished
run), starts or waits for runs, and prints one line per thing that happened
to stdout; the tests read those lines to decide when to kill it. Lines are
written with one `os.write` each, so lines written from step threads never
interleave.

Every step appends `run_id seq attempt pid` to SIDE_EFFECT_LOG (O_APPEND, one
write per line) before it returns: that file is the record of which step
attempts actually ran, in which process.

The workflows are also imported by the tests, which recover some runs in the
test process itself; `gate` lets a step block: the subprocess sets it to an
event that is never set, so a step reaching it waits until the process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `actorflow` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actorflow as af

# A step that reaches `pass_gate()` waits here while this is an unset event.
gate: asyncio.Event | None = None
# `crash.die` kills its own process (SIGKILL) when this is True (in the subprocess only).
suicidal = False


def say(*parts: object) -> None:
    """Print one progress line (atomic even from step threads)."""
    os.write(1, (" ".join(str(p) for p in parts) + "\n").encode())


def record(log: str) -> None:
    """The step's side effect: append `run_id seq attempt pid` to the log, then report it."""
    info = af.step_info()
    line = f"{info.run_id} {info.seq} {info.attempt} {os.getpid()}\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    say("P", info.run_id, info.seq, info.attempt)


async def pass_gate() -> None:
    if gate is not None:
        info = af.step_info()
        say("gate", info.run_id, info.seq, info.attempt)
        await gate.wait()


def delay(i: int, seq: int) -> float:
    """A deterministic, varied step duration (2..13 ms)."""
    return ((i * 31 + seq * 17) % 12 + 2) / 1000


# -- 1. the core workflow: five steps, two of them in parallel, two of them sync ----------


@af.step(name="crash.prepare")
async def prepare(log: str, i: int) -> int:
    await asyncio.sleep(delay(i, 0))
    record(log)
    await asyncio.sleep(delay(i, 0))
    return i * 7 + 1


@af.step(name="crash.left")
async def left(log: str, i: int, a: int) -> int:
    await asyncio.sleep(delay(i, 1))
    record(log)
    await asyncio.sleep(delay(i, 1))
    return a + 100


@af.step(name="crash.right")
def right(log: str, i: int, a: int) -> int:
    time.sleep(delay(i, 2))
    record(log)
    time.sleep(delay(i, 2) / 2)
    return a * 2


@af.step(name="crash.combine")
def combine(log: str, i: int, left: int, right: int) -> int:
    time.sleep(delay(i, 3) / 2)
    record(log)
    time.sleep(delay(i, 3) / 2)
    return left + right


@af.step(name="crash.finish")
async def finish(log: str, i: int, value: int) -> dict[str, Any]:
    await asyncio.sleep(delay(i, 4))
    record(log)
    await asyncio.sleep(delay(i, 4))
    return {"i": i, "value": value, "digest": f"{i}:{value}"}


@af.workflow(name="crash.core")
async def core(log: str, i: int) -> dict[str, Any]:
    a = await prepare(log, i)
    b, c = await asyncio.gather(left(log, i, a), right(log, i, a))
    d = await combine(log, i, b, c)
    return await finish(log, i, d)


CORE_STEPS = ("crash.prepare", "crash.left", "crash.right", "crash.combine", "crash.finish")


def core_expected(i: int) -> dict[str, Any]:
    a = i * 7 + 1
    value = (a + 100) + a * 2
    return {"i": i, "value": value, "digest": f"{i}:{value}"}


def core_id(i: int) -> str:
    return f"core-{i:04d}"


# -- 2. durable waits ---------------------------------------------------------------------


@af.step(name="crash.mark")
async def mark(log: str, label: str) -> str:
    record(log)
    return label


@af.step(name="crash.blocking_mark")
async def blocking_mark(log: str, label: str) -> str:
    record(log)
    await pass_gate()
    return label


@af.workflow(name="crash.sleeper")
async def sleeper(log: str, seconds: float) -> dict[str, Any]:
    before = await mark(log, "before")
    await af.sleep(seconds)
    after = await mark(log, "after")
    return {"slept": seconds, "marks": [before, after]}


@af.workflow(name="crash.waiter")
async def waiter(log: str, timeout: float | None) -> dict[str, Any]:
    await mark(log, "before")
    try:
        payload = await af.wait_for_event("go", timeout=timeout)
    except af.EventTimeoutError:
        return {"timed_out": True}
    return {"got": payload, "after": await mark(log, "after")}


@af.workflow(name="crash.early_event")
async def early_event(log: str) -> dict[str, Any]:
    """Gets its event while a step runs, i.e. before it waits for it."""
    await blocking_mark(log, "busy")
    return {"got": await af.wait_for_event("go")}


@af.step(name="crash.die")
async def die(log: str, label: str) -> str:
    """Its task runs before the writer's next commit, and it does not await before the
    kill: nothing the actor appended after the input that led here (this step's start,
    the run's new status) is committed."""
    record(log)
    if suicidal:
        say("dying")
        os.kill(os.getpid(), signal.SIGKILL)
    return label


@af.workflow(name="crash.event_then_die")
async def event_then_die(log: str) -> dict[str, Any]:
    payload = await af.wait_for_event("go")
    return {"got": payload, "step": await die(log, "after event")}


@af.workflow(name="crash.sleep_then_die")
async def sleep_then_die(log: str) -> dict[str, Any]:
    await af.sleep(0.2)
    return {"step": await die(log, "after sleep")}


# -- 3. a child run -------------------------------------------------------------------------


@af.step(name="crash.double")
async def double(log: str, n: int) -> int:
    record(log)
    return n * 2


@af.step(name="crash.blocking_increment")
async def blocking_increment(log: str, n: int) -> int:
    record(log)
    await pass_gate()
    return n + 1


@af.workflow(name="crash.child")
async def child(log: str, n: int) -> dict[str, Any]:
    doubled = await double(log, n)
    return {"n": n, "value": await blocking_increment(log, doubled)}


@af.workflow(name="crash.parent")
async def parent(log: str, n: int) -> dict[str, Any]:
    first = await double(log, n)
    run = await af.start(child, log, first)
    value = await run.result()
    return {"child_id": run.id, "child": value, "last": await double(log, value["value"])}


# -- 4. streams -----------------------------------------------------------------------------

STREAM_TOTAL = 8  # chunks one attempt of `crash.stream_step` writes
STREAM_GATE_AT = 3  # it waits at the gate after writing this many


@af.step(name="crash.stream_step")
async def stream_step(log: str) -> int:
    record(log)
    attempt = af.step_info().attempt
    writer = af.get_writable()
    for i in range(STREAM_TOTAL):
        if i == STREAM_GATE_AT:
            await pass_gate()
        index = await writer.write({"i": i, "attempt": attempt})
        say("C", index, i, attempt)
    await writer.write(b"\x00end")
    return attempt


@af.workflow(name="crash.streamer")
async def streamer(log: str) -> dict[str, Any]:
    writer = af.get_writable()
    await writer.write("begin")
    attempt = await stream_step(log)
    await writer.write("end")
    await writer.close()
    return {"attempt": attempt}


# -- 5. a run that holds the database -------------------------------------------------------


@af.workflow(name="crash.hello")
async def hello(log: str, name: str) -> str:
    return await mark(log, f"hello {name}")


# -- the program ------------------------------------------------------------------------------


async def _wait_for_kind(
    run: af.Run[Any], kind: str, seq: int | None = None, timeout: float = 30.0
) -> af.RunEvent:
    """Until an event of `kind` (at `seq`, if given) of the run is committed."""
    async with asyncio.timeout(timeout), contextlib.aclosing(run.events()) as events:
        async for event in events:
            if event.kind == kind and (seq is None or event.seq == seq):
                return event
    raise AssertionError(f"run {run.id} ended without a {kind} event")


async def _core(engine: af.Engine, log: str, n: int, start: bool) -> None:
    if start:
        # Idempotent by id: in a recovering process this returns the recovered runs.
        runs = await asyncio.gather(*(engine.start(core, log, i, id=core_id(i)) for i in range(n)))
        assert [r.id for r in runs] == [core_id(i) for i in range(n)]
        say("started", n)
    say("ready")
    results = await asyncio.gather(
        *(engine.get_run(core_id(i)).result(timeout=60) for i in range(n))
    )
    for i, result in enumerate(results):
        if result != core_expected(i):
            say("WRONG", core_id(i), result)
    say("done", n)


async def _waits(engine: af.Engine, log: str) -> None:
    runs = {
        "sleep-overdue": await engine.start(sleeper, log, 0.3, id="sleep-overdue"),
        "sleep-future": await engine.start(sleeper, log, 4.0, id="sleep-future"),
        "event": await engine.start(waiter, log, None, id="event"),
        "event-timeout": await engine.start(waiter, log, 0.3, id="event-timeout"),
        "early-event": await engine.start(early_event, log, id="early-event"),
    }
    await _wait_for_kind(runs["sleep-overdue"], "sleep_started")
    await _wait_for_kind(runs["sleep-future"], "sleep_started")
    await _wait_for_kind(runs["event"], "wait_started")
    await _wait_for_kind(runs["event-timeout"], "wait_started")
    await _wait_for_kind(runs["early-event"], "step_started")
    await runs["early-event"].send_event("go", {"sent": "before the crash"})
    say("ready")


async def _child(engine: af.Engine, log: str) -> None:
    run = await engine.start(parent, log, 5, id="parent")
    started = await _wait_for_kind(run, "child_started")
    child_id = started.data["run_id"]
    # The child's second step is running (its start is committed): kill now.
    await _wait_for_kind(engine.get_run(child_id), "step_started", seq=1)
    say("ready", child_id)


async def _stream(engine: af.Engine, log: str) -> None:
    await engine.start(streamer, log, id="streamer")
    say("ready")


async def _strand_event(engine: af.Engine, log: str) -> None:
    run = await engine.start(event_then_die, log, id="strand")
    await _wait_for_kind(run, "wait_started")
    say("ready")
    await run.send_event("go", {"n": 1})  # the step this leads to kills the process


async def _strand_sleep(engine: af.Engine, log: str) -> None:
    await engine.start(sleep_then_die, log, id="strand")  # its step kills the process
    say("ready")


async def _hold(engine: af.Engine, log: str) -> None:
    run = await engine.start(hello, log, "world", id="hello")
    say("result", await run.result(timeout=30))
    say("ready")


async def main(mode: str, url: str, log: str, n: int) -> None:
    global gate, suicidal
    gate = asyncio.Event()  # never set: gated steps wait until the process is killed
    suicidal = True
    async with af.Engine(url, max_concurrency=32) as engine:
        say("open", os.getpid())
        if mode in ("core-start", "core-recover"):
            # core-start (re)starts every run by id, core-recover only waits for them.
            await _core(engine, log, n, start=mode == "core-start")
            return
        if mode == "waits":
            await _waits(engine, log)
        elif mode == "child":
            await _child(engine, log)
        elif mode == "stream":
            await _stream(engine, log)
        elif mode == "strand-event":
            await _strand_event(engine, log)
        elif mode == "strand-sleep":
            await _strand_sleep(engine, log)
        elif mode == "hold":
            await _hold(engine, log)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    mode, url, log = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    af.run(main(mode, url, log, n))
