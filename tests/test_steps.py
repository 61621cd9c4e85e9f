"""Steps: retries, fatal errors, timeouts, sync steps, step_info, parallel steps."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import defaultdict
from typing import Any

import orjson
import pytest

import actorflow as af

attempts: dict[str, list[af.StepInfo]] = defaultdict(list)
quick = af.Retry(limit=3, delay=0.001, backoff="constant")


@af.step(retry=quick)
async def steps_flaky(key: str, failures: int) -> str:
    info = af.step_info()
    attempts[key].append(info)
    if len(attempts[key]) <= failures:
        raise RuntimeError(f"attempt {info.attempt} failed")
    return f"ok after {info.attempt}"


@af.workflow
async def steps_flaky_wf(key: str, failures: int) -> str:
    return await steps_flaky(key, failures)


@af.step(retry=quick)
async def steps_fatal(key: str) -> None:
    attempts[key].append(af.step_info())
    raise af.FatalError("do not retry")


@af.workflow
async def steps_fatal_wf(key: str) -> str:
    try:
        await steps_fatal(key)
    except af.StepFailedError as exc:
        return f"caught {exc.error.type}: {exc.error.message}"
    return "unreachable"


@af.workflow
async def steps_fatal_uncaught(key: str) -> None:
    await steps_fatal(key)


@af.step(retry=af.Retry(limit=2, delay=30.0))
async def steps_retry_after(key: str) -> int:
    attempts[key].append(af.step_info())
    if len(attempts[key]) == 1:
        raise af.RetryableError("busy", retry_after=0.01)
    return len(attempts[key])


@af.workflow
async def steps_retry_after_wf(key: str) -> int:
    return await steps_retry_after(key)


@af.step(timeout=0.05, retry=af.Retry(limit=1, delay=0.0))
async def steps_slow(key: str) -> str:
    attempts[key].append(af.step_info())
    if len(attempts[key]) == 1:
        await asyncio.sleep(10)
    return "fast the second time"


@af.workflow
async def steps_timeout_wf(key: str) -> str:
    return await steps_slow(key)


@af.step
async def steps_two_params(a: int, b: int = 0) -> int:
    calls_of_two_params.append((a, b))
    return a + b


calls_of_two_params: list[tuple[int, int]] = []


@af.workflow
async def steps_miscalled(how: str) -> Any:
    if how == "keywords":
        first = await steps_two_params(1, b=2)
        again = await steps_two_params(a=3, b=4)
        try:
            await steps_two_params(b=5)  # type: ignore[call-arg]
        except TypeError as exc:
            return [first, again, str(exc)]
    try:
        if how == "positional":
            await steps_two_params(1, 2, 3)  # type: ignore[call-arg]
        else:
            await steps_two_params(1, c=2)  # type: ignore[call-arg]
    except TypeError as exc:
        return str(exc)
    return "called"


# Per key: released by the test to let a timed-out sync attempt end, and set by it as it ends.
sync_release: dict[str, threading.Event] = defaultdict(threading.Event)
sync_ended: dict[str, threading.Event] = defaultdict(threading.Event)


# The first attempt blocks until released, so it times out however long the timeout;
# 0.5 s leaves the second attempt (a thread hop) room on a loaded machine.
@af.step(timeout=0.5, retry=af.Retry(limit=1, delay=0.0))
def steps_sync_slow(key: str) -> str:
    attempts[key].append(af.step_info())
    if len(attempts[key]) > 1:
        return "second attempt"
    sync_release[key].wait(10)
    sync_ended[key].set()
    return "late first attempt"


@af.workflow
async def steps_sync_timeout_wf(key: str) -> str:
    return await steps_sync_slow(key)


@af.step
def steps_sync(key: str) -> dict[str, Any]:
    info = af.step_info()
    return {"thread": threading.current_thread().name, "seq": info.seq, "key": key}


@af.workflow
async def steps_sync_wf(key: str) -> dict[str, Any]:
    return await steps_sync(key)


order: list[str] = []


@af.step
async def steps_tagged(tag: str, delay: float) -> str:
    await asyncio.sleep(delay)
    order.append(tag)
    return tag


@af.workflow
async def steps_parallel_wf() -> list[str]:
    first = await asyncio.gather(
        steps_tagged("a", 0.03), steps_tagged("b", 0.0), steps_tagged("c", 0.01)
    )
    async with asyncio.TaskGroup() as group:
        later = [group.create_task(steps_tagged_twice(t)) for t in ("x", "y")]
    return [*first, *(t.result() for t in later)]


async def steps_tagged_twice(tag: str) -> str:
    one = await steps_tagged(tag + "1", 0.0)
    two = await steps_tagged(tag + "2", 0.0)
    return one + two


@af.workflow
async def steps_unawaited_wf() -> str:
    steps_tagged("fire-and-forget", 0.0)
    return "returned before the step finished"


async def test_retries_until_success(engine: af.Engine) -> None:
    key = f"flaky-{engine.url}"
    run = await engine.start(steps_flaky_wf, key, 2)
    assert await run.result(timeout=5) == "ok after 3"
    assert [i.attempt for i in attempts[key]] == [1, 2, 3]
    assert len({i.step_id for i in attempts[key]}) == 1, "step_id is stable across retries"
    assert attempts[key][0].step_id == f"{run.id}:0"
    step = (await run.info()).steps[0]
    assert (step.status, step.attempts, step.result) == ("completed", 3, "ok after 3")
    kinds = [e.kind async for e in run.events()]
    assert kinds.count("step_retrying") == 2


async def test_retries_exhausted_fail_the_run(engine: af.Engine) -> None:
    key = f"exhausted-{engine.url}"
    run = await engine.start(steps_flaky_wf, key, 10)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "RuntimeError"
    assert caught.value.error.message == "attempt 4 failed"
    assert len(attempts[key]) == 4
    step = (await run.info()).steps[0]
    assert (step.status, step.attempts) == ("failed", 4)


async def test_fatal_error_is_not_retried_and_can_be_caught(engine: af.Engine) -> None:
    key = f"fatal-{engine.url}"
    run = await engine.start(steps_fatal_wf, key)
    assert await run.result(timeout=5) == "caught FatalError: do not retry"
    assert len(attempts[key]) == 1


async def test_uncaught_step_failure_fails_the_run_with_the_step_error(
    engine: af.Engine,
) -> None:
    run = await engine.start(steps_fatal_uncaught, f"uncaught-{engine.url}")
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert (caught.value.error.type, caught.value.error.message) == ("FatalError", "do not retry")


async def test_retryable_error_sets_the_delay(engine: af.Engine) -> None:
    key = f"after-{engine.url}"
    run = await engine.start(steps_retry_after_wf, key)
    assert await run.result(timeout=5) == 2
    events = [e async for e in run.events()]
    retrying = [e for e in events if e.kind == "step_retrying"]
    assert len(retrying) == 1
    assert retrying[0].data["retry_at"] - retrying[0].at.timestamp() < 1.0


async def test_step_timeout_counts_as_a_failed_attempt(engine: af.Engine) -> None:
    key = f"timeout-{engine.url}"
    run = await engine.start(steps_timeout_wf, key)
    assert await run.result(timeout=5) == "fast the second time"
    events = [e async for e in run.events()]
    retry = next(e for e in events if e.kind == "step_retrying")
    assert retry.data["error"]["type"] == "StepTimeoutError"


async def test_a_timed_out_sync_step_is_retried_and_its_late_result_dropped(
    engine: af.Engine,
) -> None:
    """Python cannot stop a thread: the timed-out attempt runs on while the retry runs,
    and what it returns in the end changes nothing."""
    key = f"sync-timeout-{engine.url}"
    run = await engine.start(steps_sync_timeout_wf, key)
    assert await run.result(timeout=5) == "second attempt"
    assert not sync_ended[key].is_set()  # the first attempt still runs in its thread
    sync_release[key].set()
    assert await asyncio.to_thread(sync_ended[key].wait, 5)
    assert await run.result() == "second attempt"
    events = [e async for e in run.events()]
    retry = next(e for e in events if e.kind == "step_retrying")
    assert retry.data["error"]["type"] == "StepTimeoutError"
    assert [e.data for e in events if e.kind == "step_completed"] == ["second attempt"]
    assert [s.attempts for s in (await run.info()).steps] == [2]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("positional", "step 'steps_two_params' takes 1 to 2 positional arguments, got 3"),
        ("keyword", "step 'steps_two_params': got an unexpected keyword argument 'c'"),
    ],
)
async def test_a_step_called_with_arguments_it_cannot_take_raises_at_the_call(
    engine: af.Engine, how: str, message: str
) -> None:
    """As a plain call would, at once: a bug no retry can mend, so nothing is attempted."""
    calls_of_two_params.clear()
    run = await engine.start(steps_miscalled, how)
    assert await run.result(timeout=5) == message
    assert (await run.info()).steps == ()
    assert calls_of_two_params == []


async def test_a_step_called_with_keywords_it_takes_runs(engine: af.Engine) -> None:
    """Shapes of arguments that bound once are remembered; a new shape is checked."""
    run = await engine.start(steps_miscalled, "keywords")
    assert await run.result(timeout=5) == [
        3,
        7,
        "step 'steps_two_params': missing a required argument: 'a'",
    ]


async def test_sync_steps_run_in_a_thread(engine: af.Engine) -> None:
    run = await engine.start(steps_sync_wf, "k")
    result = await run.result(timeout=5)
    assert result["thread"] != threading.current_thread().name
    assert (result["seq"], result["key"]) == (0, "k")


async def test_parallel_steps_are_journaled_in_call_order(engine: af.Engine) -> None:
    order.clear()
    run = await engine.start(steps_parallel_wf)
    assert await run.result(timeout=5) == ["a", "b", "c", "x1x2", "y1y2"]
    assert order[:3] == ["b", "c", "a"], "the steps really ran concurrently"
    steps = (await run.info()).steps
    assert [(s.seq, s.name, s.result) for s in steps] == [
        (0, "steps_tagged", "a"),
        (1, "steps_tagged", "b"),
        (2, "steps_tagged", "c"),
        (3, "steps_tagged", "x1"),
        (4, "steps_tagged", "y1"),
        (5, "steps_tagged", "x2"),
        (6, "steps_tagged", "y2"),
    ]


async def test_workflow_may_return_with_steps_in_flight(engine: af.Engine) -> None:
    run = await engine.start(steps_unawaited_wf)
    assert await run.result(timeout=5) == "returned before the step finished"


seen_in_log: dict[str, list[tuple[int, list[int]]]] = defaultdict(list)


@af.step(retry=quick)
async def steps_reads_own_start(db: str, key: str) -> int:
    """Looks in the database (its own connection) for its attempt's `step_started`, before
    it yields to the loop even once."""
    info = af.step_info()

    def committed_attempts() -> list[int]:
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute(
                "SELECT data FROM events WHERE run_id=? AND seq=? AND kind='step_started'",
                (info.run_id, info.seq),
            ).fetchall()
        finally:
            conn.close()
        return [orjson.loads(data)["attempt"] for (data,) in rows]

    seen_in_log[key].append((info.attempt, committed_attempts()))
    if info.attempt < 3:
        raise RuntimeError("retry me")
    return info.attempt


@af.workflow
async def steps_reads_own_start_wf(db: str, key: str) -> int:
    first = await steps_reads_own_start(db, key)
    return first + await steps_reads_own_start(db, key + "/second")


async def test_an_attempt_starts_only_once_its_number_is_committed(sqlite_url: str) -> None:
    db = sqlite_url.removeprefix("sqlite:///")
    async with af.Engine(sqlite_url) as engine:
        run = await engine.start(steps_reads_own_start_wf, db, "own-start")
        assert await run.result(timeout=10) == 6
    for key in ("own-start", "own-start/second"):
        seen = seen_in_log[key]
        assert [attempt for attempt, _ in seen] == [1, 2, 3]
        for attempt, committed in seen:
            assert committed == list(range(1, attempt + 1)), (key, attempt, committed)


writers_seen: dict[str, list[tuple[int, object, object]]] = defaultdict(list)


@af.step(retry=quick)
async def steps_writer_per_attempt(key: str) -> int:
    info = af.step_info()
    writers_seen[key].append((info.attempt, af.get_writable("w"), af.get_writable("w")))
    if info.attempt == 1:
        raise RuntimeError("first attempt fails")
    return info.attempt


@af.workflow
async def steps_writer_per_attempt_wf(key: str) -> int:
    return await steps_writer_per_attempt(key)


async def test_step_context_is_one_per_attempt(engine: af.Engine) -> None:
    key = f"writers-{engine.url}"
    run = await engine.start(steps_writer_per_attempt_wf, key)
    assert await run.result(timeout=5) == 2
    [(first, a, b), (second, c, d)] = writers_seen[key]
    assert (first, second) == (1, 2)
    assert a is b and c is d  # the same writer within an attempt
    assert a is not c  # a new one for the retry


@af.step
async def steps_task_name() -> str:
    task = asyncio.current_task()
    assert task is not None
    return task.get_name()


@af.workflow
async def steps_task_name_wf() -> str:
    return await steps_task_name()


def coroutine_name(coro: Any) -> str:
    """A coroutine function's name; a compiled one's coroutine has no `__qualname__`,
    only its type, named `<function>_gen` (mypyc)."""
    return getattr(coro, "__qualname__", None) or type(coro).__name__.removesuffix("_gen")


async def test_a_step_attempt_is_a_task_named_after_the_step_made_by_the_loop_factory(
    engine: af.Engine,
) -> None:
    """Without a task factory the attempt's task is built directly, named by its
    constructor; with one, through the factory (an instrumentation may count on it)."""
    run = await engine.start(steps_task_name_wf)
    assert await run.result(timeout=5) == "steps_task_name"
    loop = asyncio.get_running_loop()
    made: list[str] = []

    # Loops pass what they were given (name, context, and on Python 3.13 uvloop
    # also eager_start) as keywords; a factory must accept them all.
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(coroutine_name(coro))
        return task

    loop.set_task_factory(factory)
    try:
        run = await engine.start(steps_task_name_wf)
        assert await run.result(timeout=5) == "steps_task_name"
    finally:
        loop.set_task_factory(None)
    assert "_run_attempt" in made


async def test_a_task_factory_that_refuses_a_step_attempt_fails_the_run_instead_of_hanging(
    engine: af.Engine,
) -> None:
    """The attempt cannot start, so it fails for good, named by the factory's error."""
    loop = asyncio.get_running_loop()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        if coroutine_name(coro) == "_run_attempt":
            raise RuntimeError("no tasks for steps here")
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        run = await engine.start(steps_task_name_wf)
        with pytest.raises(af.RunFailedError) as caught:
            await run.result(timeout=5)
    finally:
        loop.set_task_factory(None)
    assert "no tasks for steps here" in str(caught.value)
    assert (await run.status()) is af.RunStatus.FAILED
