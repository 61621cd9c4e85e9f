"""Streams: `af.get_writable()` in steps and workflow bodies, `Run.stream()` readers.

Runs in process on memory:// and SQLite. Crash (SIGKILL) recovery of streams is
covered by the subprocess tests, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

import actorflow as af
from actorflow._channels import Hub
from actorflow._store import ChunkKind, ChunkRow, open_store

from .conftest import eventually

TIMEOUT = 5.0

# -- per-test state shared with steps (steps run in this process and event loop) ----------

events: dict[str, asyncio.Event] = {}
executions: dict[str, int] = {}


def event(name: str) -> asyncio.Event:
    """The event called `name`, created on first use."""
    return events.setdefault(name, asyncio.Event())


def new_key() -> str:
    return uuid.uuid4().hex


async def wait_event(ev: asyncio.Event, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        await ev.wait()


class Script:
    """Drives `strm_scripted_step`: the test tells the running step what to write, when."""

    def __init__(self) -> None:
        self.commands: asyncio.Queue[tuple[str, Any, str]] = asyncio.Queue()
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        self.started = asyncio.Event()

    async def _ask(self, op: str, value: Any, namespace: str) -> Any:
        self.commands.put_nowait((op, value, namespace))
        async with asyncio.timeout(TIMEOUT):
            reply = await self.replies.get()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def write(self, value: Any, namespace: str = "default") -> int:
        index: int = await self._ask("write", value, namespace)
        return index

    async def close(self, namespace: str = "default") -> None:
        await self._ask("close", None, namespace)

    def finish(self) -> None:
        """Let the step (and so the run) complete."""
        self.commands.put_nowait(("return", None, ""))

    def fail(self) -> None:
        """Make the step raise FatalError (so the run fails)."""
        self.commands.put_nowait(("fail", None, ""))


scripts: dict[str, Script] = {}


@af.step(retry=af.Retry(limit=0))
async def strm_scripted_step(key: str) -> int:
    script = scripts[key]
    script.started.set()
    done = 0
    while True:
        op, value, namespace = await script.commands.get()
        if op == "return":
            return done
        if op == "fail":
            raise af.FatalError("the script said so")
        reply: Any = None
        try:
            writer = af.get_writable(namespace)
            if op == "write":
                reply = await writer.write(value)
            else:
                await writer.close()
        except Exception as exc:
            reply = exc
        done += 1
        script.replies.put_nowait(reply)


@af.workflow
async def strm_scripted(key: str) -> int:
    done: int = await strm_scripted_step(key)
    return done


async def start_scripted(engine: af.Engine) -> tuple[af.Run[int], Script]:
    """A run whose only step writes what the test tells it to; returns once the step runs."""
    key = new_key()
    script = scripts[key] = Script()
    run = await engine.start(strm_scripted, key)
    await wait_event(script.started)
    return run, script


class Reader:
    """Reads `run.stream(...)` in a task, collecting what it gets."""

    def __init__(
        self,
        run: af.Run[Any],
        namespace: str = "default",
        start: int = 0,
        *,
        with_info: bool = False,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.items: list[Any] = []
        self.gate = gate
        self.task = asyncio.create_task(
            self._read(run.stream(namespace, start, with_info=with_info))
        )

    async def _read(self, stream: AsyncIterator[Any]) -> list[Any]:
        async with contextlib.aclosing(stream) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                if self.gate is not None:
                    await self.gate.wait()
                self.items.append(chunk)
        return self.items

    async def has(self, count: int, timeout: float = TIMEOUT) -> list[Any]:
        """Wait until at least `count` chunks arrived."""
        await eventually(lambda: len(self.items) >= count or self.task.done(), timeout)
        assert len(self.items) >= count, f"reader ended with {self.items!r}"
        return self.items

    async def done(self, timeout: float = TIMEOUT) -> list[Any]:
        """Wait until the stream ends; return everything read."""
        return await asyncio.wait_for(asyncio.shield(self.task), timeout)

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def subscribers(engine: af.Engine, run: af.Run[Any], namespace: str = "default") -> int:
    return len(engine._runs.chunk_hub.subscriptions.get((run.id, namespace), []))


async def live(engine: af.Engine, run: af.Run[Any], count: int, namespace: str = "default") -> None:
    """Wait until `count` readers are subscribed to live chunks of `run`'s `namespace`."""
    await eventually(lambda: subscribers(engine, run, namespace) >= count)


async def read_all(run: af.Run[Any], *args: Any, **kwargs: Any) -> list[Any]:
    """Everything `run.stream(*args, **kwargs)` yields, until it ends."""
    async with asyncio.timeout(TIMEOUT):
        return [chunk async for chunk in run.stream(*args, **kwargs)]


# -- live readers ----------------------------------------------------------------------------


async def test_two_live_readers_get_identical_full_sequences(engine: af.Engine) -> None:
    run, script = await start_scripted(engine)
    first, second = Reader(run), Reader(run)
    await live(engine, run, 2)
    expected = [{"i": i} if i % 3 else f"s{i}".encode() for i in range(60)]
    for i, value in enumerate(expected):
        assert await script.write(value) == i
    await script.close()
    assert await first.done() == expected
    assert await second.done() == expected
    script.finish()
    assert await run.result(timeout=TIMEOUT) == 61


async def test_many_readers_joining_at_any_time_get_the_same_sequence(
    engine: af.Engine,
) -> None:
    run, script = await start_scripted(engine)
    readers = []
    for i in range(100):
        if i % 4 == 0:
            readers.append(Reader(run))
        await script.write(i)
    await script.close()
    readers.append(Reader(run))
    for reader in readers:
        assert await reader.done() == list(range(100))
    script.finish()
    await run.result(timeout=TIMEOUT)


async def test_reader_joining_midway_with_start_0_gets_everything(engine: af.Engine) -> None:
    run, script = await start_scripted(engine)
    early = Reader(run)
    for i in range(10):
        await script.write(i)
    await early.has(10)
    late = Reader(run, start=0)
    assert await late.has(10) == list(range(10))
    for i in range(10, 20):
        await script.write(i)
    await script.close()
    assert await early.done() == list(range(20))
    assert await late.done() == list(range(20))
    script.finish()
    await run.result(timeout=TIMEOUT)


async def test_chunk_reaches_reader_while_the_writing_step_still_runs(engine: af.Engine) -> None:
    key = new_key()
    run = await engine.start(strm_two_phase, key)
    reader = Reader(run, with_info=True)
    await wait_event(event(f"{key}:written"))
    [chunk] = await reader.has(1)
    assert chunk.value == "first" and chunk.index == 0 and chunk.attempt == 1
    # The step is still blocked: no result, run still running, nothing more written.
    assert await run.status() == af.RunStatus.RUNNING
    info = await run.info()
    assert [s.status for s in info.steps] == ["running"]
    assert not reader.task.done()
    event(f"{key}:release").set()
    chunks = await reader.done()
    assert [c.value for c in chunks] == ["first", "second"]
    assert await run.result(timeout=TIMEOUT) == "released"


@af.step
async def strm_two_phase_step(key: str) -> str:
    writer = af.get_writable()
    await writer.write("first")
    event(f"{key}:written").set()
    await event(f"{key}:release").wait()
    await writer.write("second")
    return "released"


@af.workflow
async def strm_two_phase(key: str) -> str:
    return await strm_two_phase_step(key)


async def test_readers_before_during_and_after_the_run_agree(engine: af.Engine) -> None:
    run, script = await start_scripted(engine)
    before = Reader(run)  # nothing written yet
    await live(engine, run, 1)
    assert before.items == [] and not before.task.done()
    for i in range(5):
        await script.write(i)
    during = Reader(run)
    for i in range(5, 10):
        await script.write(i)
    script.finish()  # no close: the streams end with the run
    await run.result(timeout=TIMEOUT)
    after = Reader(run)
    assert await before.done() == list(range(10))
    assert await during.done() == list(range(10))
    assert await after.done() == list(range(10))


async def test_reconnecting_with_the_reached_index_loses_and_duplicates_nothing(
    engine: af.Engine,
) -> None:
    run, script = await start_scripted(engine)
    total = 40

    async def produce() -> None:
        for i in range(total):
            await script.write({"n": i})
        await script.close()

    producer = asyncio.create_task(produce())
    got: list[Any] = []
    sessions = 0
    async with asyncio.timeout(TIMEOUT):
        while True:
            sessions += 1
            cut = False
            async with contextlib.aclosing(run.stream(start=len(got), with_info=True)) as chunks:
                taken = 0
                async for chunk in chunks:
                    assert chunk.index == len(got)
                    got.append(chunk.value)
                    taken += 1
                    if taken == 3:
                        cut = True
                        break
            if not cut:
                break
    await producer
    assert got == [{"n": i} for i in range(total)]
    assert sessions >= total // 3
    script.finish()
    await run.result(timeout=TIMEOUT)


# -- offsets -------------------------------------------------------------------------------


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "open-then-completed"])
async def test_start_offsets_and_negative_offsets(engine: af.Engine, closed: bool) -> None:
    run, script = await start_scripted(engine)
    for i in range(10):
        await script.write(i)
    if closed:
        await script.close()
    script.finish()
    await run.result(timeout=TIMEOUT)
    assert await read_all(run) == list(range(10))
    assert await read_all(run, start=3) == list(range(3, 10))
    assert await read_all(run, start=9) == [9]
    assert await read_all(run, start=10) == []
    assert await read_all(run, start=25) == []
    assert await read_all(run, start=-1) == [9]
    assert await read_all(run, start=-3) == [7, 8, 9]
    assert await read_all(run, start=-10) == list(range(10))
    assert await read_all(run, start=-11) == list(range(10))  # beyond the start
    assert await read_all(run, start=-1000) == list(range(10))
    chunks = await read_all(run, start=-2, with_info=True)
    assert [c.index for c in chunks] == [8, 9]
    with pytest.raises(TypeError):
        await read_all(run, start="3")


async def test_negative_offset_on_a_live_stream_then_follows_it(engine: af.Engine) -> None:
    run, script = await start_scripted(engine)
    for i in range(6):
        await script.write(i)
    tail = Reader(run, start=-2)
    assert await tail.has(2) == [4, 5]
    for i in range(6, 9):
        await script.write(i)
    await script.close()
    assert await tail.done() == [4, 5, 6, 7, 8]
    script.finish()
    await run.result(timeout=TIMEOUT)


async def test_start_beyond_the_end_of_a_live_stream_waits_for_that_index(
    engine: af.Engine,
) -> None:
    run, script = await start_scripted(engine)
    for i in range(2):
        await script.write(i)
    ahead = Reader(run, start=5)
    await live(engine, run, 1)
    for i in range(2, 5):
        await script.write(i)
    assert ahead.items == [] and not ahead.task.done()
    for i in range(5, 7):
        await script.write(i)
    assert await ahead.has(2) == [5, 6]
    script.finish()
    await run.result(timeout=TIMEOUT)
    assert await ahead.done() == [5, 6]


# -- namespaces ------------------------------------------------------------------------------


async def test_namespaces_are_independent(engine: af.Engine) -> None:
    run, script = await start_scripted(engine)
    a, b = Reader(run, "a"), Reader(run, "b")
    silent = Reader(run, "never-written")
    assert await script.write("a0", "a") == 0
    assert await script.write("b0", "b") == 0
    assert await script.write("a1", "a") == 1
    assert await script.write("d0") == 0
    await script.close("a")
    assert await a.done() == ["a0", "a1"]
    # Closing "a" neither ends nor blocks "b" or "default".
    assert await b.has(1) == ["b0"]
    assert not b.task.done() and not silent.task.done()
    assert await script.write("b1", "b") == 1
    with pytest.raises(af.StreamClosedError):
        await script.write("a2", "a")
    assert await b.has(2) == ["b0", "b1"]
    script.finish()
    await run.result(timeout=TIMEOUT)
    assert await b.done() == ["b0", "b1"]
    assert await silent.done() == []
    assert await read_all(run) == ["d0"]
    assert await read_all(run, "a") == ["a0", "a1"]
    assert await read_all(run, "a", start=-1) == ["a1"]


# -- how streams end -------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["close", "complete", "fail", "terminate"])
async def test_stream_ends_on_close_and_on_every_final_status(
    engine: af.Engine, ending: str
) -> None:
    run, script = await start_scripted(engine)
    reader = Reader(run)
    await live(engine, run, 1)
    await script.write("x")
    await script.write(b"y")
    await reader.has(2)
    if ending == "close":
        await script.close()
    elif ending == "complete":
        script.finish()
    elif ending == "fail":
        script.fail()
    else:
        await run.terminate()
    assert await reader.done() == ["x", b"y"]
    if ending == "close":
        # The namespace ended; the run did not.
        assert await run.status() == af.RunStatus.RUNNING
        script.finish()
    expected = {
        "close": af.RunStatus.COMPLETED,
        "complete": af.RunStatus.COMPLETED,
        "fail": af.RunStatus.FAILED,
        "terminate": af.RunStatus.TERMINATED,
    }[ending]
    with contextlib.suppress(af.RunFailedError, af.RunTerminatedError):
        await run.result(timeout=TIMEOUT)
    assert await run.status() == expected
    # A reader joining after the end gets the recorded chunks and ends too.
    assert await read_all(run) == ["x", b"y"]
    assert await read_all(run, "other") == []


async def test_stream_of_unknown_run_raises(engine: af.Engine) -> None:
    with pytest.raises(af.RunNotFoundError):
        await read_all(engine.get_run("strm-no-such-run"))


# -- values ----------------------------------------------------------------------------------


async def test_bytes_and_json_values_round_trip(engine: af.Engine) -> None:
    run, script = await start_scripted(engine)
    reader = Reader(run)
    values: list[Any] = [
        b"\x00\xffraw",
        bytearray(b"array"),
        memoryview(b"view"),
        b"",
        {"nested": {"list": [1, 2.5, None, True, "x"]}},
        "text ✓",
        "",
        42,
        -1.5,
        None,
        [],
        ("tuple", 1),
        '"already json"',
        b'{"looks": "like json"}',
    ]
    for value in values:
        await script.write(value)
    await script.close()
    expected: list[Any] = [
        b"\x00\xffraw",
        b"array",
        b"view",
        b"",
        {"nested": {"list": [1, 2.5, None, True, "x"]}},
        "text ✓",
        "",
        42,
        -1.5,
        None,
        [],
        ["tuple", 1],
        '"already json"',
        b'{"looks": "like json"}',
    ]
    got = await reader.done()
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert await read_all(run) == expected
    script.finish()
    await run.result(timeout=TIMEOUT)


async def test_unserializable_chunks_and_bad_namespaces_are_refused(engine: af.Engine) -> None:
    run, script = await start_scripted(engine)
    with pytest.raises(af.SerializationError):
        await script.write(object())
    with pytest.raises(af.SerializationError, match="inner"):
        await script.write({"outer": {"inner": object()}})
    with pytest.raises(af.InvalidNameError):
        await script.write("x", "")
    with pytest.raises(af.InvalidNameError, match="at most 255"):
        await script.write("x", "n" * 256)
    # Nothing refused took an index.
    assert await script.write("ok") == 0
    await script.close()
    script.finish()
    await run.result(timeout=TIMEOUT)
    assert await read_all(run) == ["ok"]
    with pytest.raises(ValueError):
        await read_all(run, "")
    with pytest.raises(ValueError):
        af.get_writable(123)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        af.get_writable()  # outside a step or workflow


# -- retries and the workflow body -----------------------------------------------------------


@af.step(retry=af.Retry(limit=2, delay=0))
async def strm_flaky_step(key: str) -> str:
    attempt = af.step_info().attempt
    writer = af.get_writable()
    await writer.write(f"try{attempt}-a")
    await writer.write(f"try{attempt}-b")
    if attempt == 1:
        raise RuntimeError("the first attempt fails after writing")
    return "ok"


@af.workflow
async def strm_flaky(key: str) -> list[Any]:
    writer = af.get_writable()
    before = await writer.write("body-before")
    outcome = await strm_flaky_step(key)
    after = await writer.write("body-after")
    return [before, outcome, after]


async def test_chunks_of_a_failed_attempt_stay_tagged_with_their_attempt(
    engine: af.Engine,
) -> None:
    run = await engine.start(strm_flaky, new_key())
    live_reader = Reader(run, with_info=True)
    assert await run.result(timeout=TIMEOUT) == [0, "ok", 5]
    chunks = await read_all(run, with_info=True)
    assert await live_reader.done() == chunks
    assert all(isinstance(c, af.StreamChunk) for c in chunks)
    assert [c.index for c in chunks] == list(range(6))
    assert [c.value for c in chunks] == [
        "body-before",
        "try1-a",
        "try1-b",
        "try2-a",
        "try2-b",
        "body-after",
    ]
    assert [c.attempt for c in chunks] == [0, 1, 1, 2, 2, 0]
    step_seq = chunks[1].seq
    assert step_seq is not None
    assert {c.seq for c in chunks[1:5]} == {step_seq}
    assert chunks[0].seq is not None and chunks[0].seq < step_seq
    assert chunks[5].seq is not None and chunks[5].seq > step_seq
    assert all(isinstance(c.at, datetime) for c in chunks)
    assert [c.at for c in chunks] == sorted(c.at for c in chunks)
    [step] = (await run.info()).steps
    assert step.attempts == 2 and step.status == "completed"


@af.step
async def strm_hold_step(key: str) -> str:
    event(f"{key}:started").set()
    await event(f"{key}:release").wait()
    return "held"


@af.workflow
async def strm_body_writes(key: str) -> list[int]:
    writer = af.get_writable()
    first = await writer.write({"body": 1})
    await strm_hold_step(key)
    second = await writer.write({"body": 2})
    await writer.close()
    return [first, second]


async def test_body_writes_are_journaled_and_not_repeated_on_replay(durable_url: str) -> None:
    key = new_key()
    async with af.Engine(durable_url) as engine:
        run = await engine.start(strm_body_writes, key)
        await wait_event(event(f"{key}:started"))
        assert await run.status() == af.RunStatus.RUNNING
        async with contextlib.aclosing(run.stream(with_info=True)) as stream:
            first = await asyncio.wait_for(anext(stream), TIMEOUT)
        assert (first.index, first.value, first.attempt) == (0, {"body": 1}, 0)
    # The engine closed mid-run; the next one replays the body write without repeating it.
    event(f"{key}:release").set()
    async with af.Engine(durable_url) as engine:
        run = engine.get_run(run.id)
        assert await run.result(timeout=TIMEOUT) == [0, 1]
        chunks = await read_all(run, with_info=True)
        assert [(c.index, c.value, c.attempt) for c in chunks] == [
            (0, {"body": 1}, 0),
            (1, {"body": 2}, 0),
        ]
        assert chunks[0].seq is not None and chunks[1].seq is not None
        assert chunks[0].seq < chunks[1].seq


@af.workflow
async def strm_waits_between_writes(key: str) -> list[int]:
    writer = af.get_writable()
    first = await writer.write("before the wait")
    payload = await af.wait_for_event("more")
    second = await writer.write(payload)
    return [first, second]


async def test_body_writes_survive_eviction_and_rehydration(store_url: str) -> None:
    async with af.Engine(store_url, idle_timeout=0) as engine:
        run = await engine.start(strm_waits_between_writes, new_key())
        reader = Reader(run, with_info=True)
        await reader.has(1)
        # The run waits for its event and is evicted from memory.
        await eventually(lambda: engine.live_actors() == 0)
        assert await run.status() == af.RunStatus.WAITING
        await run.send_event("more", {"after": "the wait"})
        assert await run.result(timeout=TIMEOUT) == [0, 1]
        chunks = await reader.done()
        assert [(c.index, c.value, c.attempt) for c in chunks] == [
            (0, "before the wait", 0),
            (1, {"after": "the wait"}, 0),
        ]
        assert await read_all(run) == ["before the wait", {"after": "the wait"}]


@af.step
async def strm_parallel_part(part: str, count: int) -> int:
    writer = af.get_writable()
    for i in range(count):
        await writer.write(f"{part}{i}")
        await asyncio.sleep(0)  # let the other step write in between
    return count


@af.workflow
async def strm_parallel(count: int) -> list[int]:
    return list(
        await asyncio.gather(strm_parallel_part("a", count), strm_parallel_part("b", count))
    )


async def test_parallel_steps_share_one_contiguous_index_sequence(engine: af.Engine) -> None:
    count = 50
    run = await engine.start(strm_parallel, count)
    reader = Reader(run, with_info=True)
    assert await run.result(timeout=TIMEOUT) == [count, count]
    chunks = await reader.done()
    assert chunks == await read_all(run, with_info=True)
    assert [c.index for c in chunks] == list(range(2 * count))
    by_seq: dict[int | None, list[str]] = {}
    for c in chunks:
        by_seq.setdefault(c.seq, []).append(c.value)
    assert sorted(by_seq.values()) == [
        [f"a{i}" for i in range(count)],
        [f"b{i}" for i in range(count)],
    ]
    values = [c.value for c in chunks]
    assert values[:count] != [f"a{i}" for i in range(count)]  # they did interleave


# -- slow readers ----------------------------------------------------------------------------


@af.step
async def strm_bulk_step(key: str, count: int) -> int:
    await event(f"{key}:go").wait()
    writer = af.get_writable()
    for i in range(count):
        await writer.write(i)
    return count


@af.workflow
async def strm_bulk(key: str, count: int) -> int:
    return await strm_bulk_step(key, count)


async def test_slow_reader_neither_slows_the_run_nor_loses_chunks(engine: af.Engine) -> None:
    count = 5_000
    key = new_key()
    run = await engine.start(strm_bulk, key, count)
    hold = asyncio.Event()
    slow = Reader(run, gate=hold)  # takes its first chunk, then stops consuming
    fast = Reader(run)
    await live(engine, run, 2)
    event(f"{key}:go").set()
    # The run finishes, and the fast reader reads everything, while the slow one is stuck.
    assert await run.result(timeout=30) == count
    assert await fast.done(timeout=30) == list(range(count))
    assert slow.items == []
    [sub] = engine._runs.chunk_hub.subscriptions[(run.id, "default")]
    # Its buffer stayed bounded: it overflowed (lagged) instead of holding anyone up.
    assert len(sub.items) <= sub.maxsize < count
    if engine.url.startswith("sqlite"):
        # (memory:// commits without yielding, so there the reader only wakes once the
        # step is done, finds itself lagged and catches up from the store at once.)
        assert sub.lagged
    hold.set()
    got = await slow.done(timeout=30)
    assert got == list(range(count))  # every chunk exactly once, in order
    assert (run.id, "default") not in engine._runs.chunk_hub.subscriptions


# -- errors ----------------------------------------------------------------------------------


@af.step(retry=af.Retry(limit=0))
async def strm_limit_step(key: str) -> list[Any]:
    writer = af.get_writable()
    other = af.get_writable("other")
    outcomes: list[Any] = [await writer.write(b"x" * 60)]
    try:
        await other.write(b"y" * 41)  # the limit is per run, across namespaces
    except af.StreamLimitError as exc:
        outcomes.append(["limit", "max_stream_bytes=100" in str(exc)])
    outcomes.append(await other.write(b"y" * 40))  # exactly at the limit
    try:
        await writer.write(b"z")
    except af.StreamLimitError:
        outcomes.append("limit")
    return outcomes


@af.workflow
async def strm_limited(key: str) -> list[Any]:
    outcomes: list[Any] = await strm_limit_step(key)
    try:
        await af.get_writable().write(b"w")
    except af.StreamLimitError:
        outcomes.append("body limit")
    return outcomes


async def test_stream_size_limit_raises_at_write(store_url: str) -> None:
    with pytest.raises(ValueError):
        af.Engine(store_url, max_stream_bytes=0)
    async with af.Engine(store_url, max_stream_bytes=100) as engine:
        run = await engine.start(strm_limited, new_key())
        outcomes = await run.result(timeout=TIMEOUT)
        assert outcomes[0] == 0
        assert outcomes[1] == ["limit", True]  # the error says which limit
        assert outcomes[2:] == [0, "limit", "body limit"]
        assert await read_all(run) == [b"x" * 60]
        assert await read_all(run, "other") == [b"y" * 40]
        # Another run has its own budget.
        second = await engine.start(strm_limited, new_key())
        assert await second.result(timeout=TIMEOUT) == outcomes


@af.step(retry=af.Retry(limit=0))
async def strm_closing_step(key: str) -> list[str]:
    writer = af.get_writable()
    await writer.write("last")
    await writer.close()
    refused = []
    try:
        await writer.write("too late")
    except af.StreamClosedError:
        refused.append("write")
    try:
        await af.get_writable().close()
    except af.StreamClosedError:
        refused.append("close")
    await af.get_writable("side").write("side ok")
    return refused


@af.workflow
async def strm_closing(key: str) -> list[str]:
    refused: list[str] = await strm_closing_step(key)
    try:
        await af.get_writable().write("body too late")
    except af.StreamClosedError:
        refused.append("body write")
    return refused


async def test_writing_after_close_raises(engine: af.Engine) -> None:
    run = await engine.start(strm_closing, new_key())
    assert await run.result(timeout=TIMEOUT) == ["write", "close", "body write"]
    assert await read_all(run) == ["last"]
    assert await read_all(run, start=-1) == ["last"]
    assert await read_all(run, "side") == ["side ok"]


# -- engine close and reopen -----------------------------------------------------------------


@af.step
async def strm_resumable_step(key: str) -> int:
    executions[key] = executions.get(key, 0) + 1
    writer = af.get_writable()
    if executions[key] == 1:
        for i in range(3):
            await writer.write(f"old{i}")
        event(f"{key}:wrote-old").set()
        await asyncio.Event().wait()  # until the engine closes
    await event(f"{key}:go-new").wait()
    for i in range(2):
        await writer.write(f"new{i}")
    return executions[key]


@af.workflow
async def strm_resumable(key: str) -> int:
    return await strm_resumable_step(key)


async def test_streams_survive_engine_close_and_reopen(durable_url: str) -> None:
    key = new_key()
    async with af.Engine(durable_url) as engine:
        run = await engine.start(strm_resumable, key)
        old_reader = Reader(run)
        await wait_event(event(f"{key}:wrote-old"))
        assert await old_reader.has(3) == ["old0", "old1", "old2"]
    with pytest.raises(af.EngineClosedError):
        await old_reader.done()
    async with af.Engine(durable_url) as engine:
        run = engine.get_run(run.id)
        reader = Reader(run, with_info=True)
        resumed = Reader(run, start=len(old_reader.items))
        assert [c.value for c in await reader.has(3)] == ["old0", "old1", "old2"]
        assert resumed.items == []
        event(f"{key}:go-new").set()
        assert await run.result(timeout=TIMEOUT) == 2
        chunks = await reader.done()
        assert [c.value for c in chunks] == ["old0", "old1", "old2", "new0", "new1"]
        assert [c.index for c in chunks] == list(range(5))
        # The interrupted attempt's chunks stay; the re-run is the next attempt.
        assert [c.attempt for c in chunks] == [1, 1, 1, 2, 2]
        assert await resumed.done() == ["new0", "new1"]


# -- the channel itself ----------------------------------------------------------------------


async def test_hub_marks_an_overflowing_subscriber_lagged_without_affecting_others() -> None:
    hub: Hub[int] = Hub(maxsize=3)
    assert not hub
    slow = hub.subscribe("k")
    fast = hub.subscribe("k")
    other = hub.subscribe("other-key")
    assert hub and hub.has("k") and hub.has("other-key")
    for i in range(3):
        hub.publish("k", i)
    assert fast.take() == [0, 1, 2]
    assert list(slow.items) == [0, 1, 2] and not slow.lagged
    hub.publish("k", 3)  # the fourth item overflows slow's buffer of 3
    assert slow.lagged and list(slow.items) == []
    assert fast.take() == [3] and not fast.lagged
    hub.publish("k", 4)  # a lagged subscriber buffers nothing until it catches up
    assert slow.lagged and list(slow.items) == []
    assert list(fast.items) == [4]
    assert list(other.items) == []
    await asyncio.wait_for(slow.wait(), 1)  # lag wakes the reader at once
    assert slow.take() == [] and not slow.lagged  # taking clears the flag
    hub.publish("k", 5)
    assert slow.take() == [5]
    assert fast.take() == [4, 5]

    # A waiting reader is woken by a publish, by end and by failure.
    waiter = asyncio.create_task(slow.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish("k", 6)
    await asyncio.wait_for(waiter, 1)
    assert slow.take() == [6]
    waiter = asyncio.create_task(other.wait())
    await asyncio.sleep(0)
    hub.end("other-key")
    await asyncio.wait_for(waiter, 1)
    assert other.ended and not slow.ended
    boom = RuntimeError("closing")
    fast.take()
    waiter = asyncio.create_task(fast.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.fail_all(boom)
    await asyncio.wait_for(waiter, 1)
    with pytest.raises(RuntimeError, match="closing"):
        fast.raise_if_failed()

    with slow:
        pass
    fast.close()
    assert not hub.has("k")
    other.close()
    assert not hub and hub.subscribed_keys() == []


async def test_sqlite_reads_see_every_commit_while_other_reads_are_in_flight(
    sqlite_url: str,
) -> None:
    """A reader catching up after a live chunk must find that chunk in the store.

    Regression: the SQLite reader connection ran `execute` and `fetchall` as two
    thread hops, so concurrent reads interleaved and an unfinished statement
    kept an old WAL snapshot open for the next read, which then missed rows
    already committed (and published): stream readers hung short of the end.
    """
    store = open_store(sqlite_url)
    await store.open()
    stop = asyncio.Event()

    async def keep_reading() -> None:
        while not stop.is_set():
            await store.load_chunks("strm-run", "default", 0, 1000)

    others = [asyncio.create_task(keep_reading()) for _ in range(4)]
    stale = []
    try:
        for i in range(800):
            chunk = ChunkRow("strm-run", "default", i, 1, 1, ChunkKind.JSON, b"1", 0.0)
            store.batch().chunks.append(chunk)
            await store.commit()
            seen = len(await store.load_chunks("strm-run", "default", 0, 1000))
            if seen != i + 1:
                stale.append((i + 1, seen))
    finally:
        stop.set()
        await asyncio.gather(*others)
        await store.close()
    assert stale == []
