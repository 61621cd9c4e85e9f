"""The engine and run handles: start, result, status, info, events, list_runs, ids."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest

import actorflow as af

from .conftest import eventually
from .databases import Database, RefusedInserts

executions: dict[str, int] = {}


@af.step
async def core_double(x: int) -> int:
    return x * 2


@af.step(name="core.add_one")
def core_add_one(x: int) -> int:
    return x + 1


@af.workflow
async def core_pipeline(x: int) -> dict[str, int]:
    doubled = await core_double(x)
    plus = await core_add_one(doubled)
    return {"doubled": doubled, "plus": plus}


@af.workflow(name="core.info")
async def core_info_wf(tag: str) -> dict[str, Any]:
    info = af.workflow_info()
    return {"run_id": info.run_id, "workflow": info.workflow, "tag": tag}


@af.workflow
async def core_failing(message: str) -> None:
    await core_double(1)
    raise ValueError(message)


gates: dict[str, asyncio.Event] = {}


@af.step
async def core_block(key: str) -> str:
    await gates[key].wait()
    return key


@af.workflow
async def core_blocked(key: str) -> str:
    return await core_block(key)


async def test_start_and_result(engine: af.Engine) -> None:
    run = await engine.start(core_pipeline, 5)
    assert await run.result(timeout=5) == {"doubled": 10, "plus": 11}
    assert await run.status() == af.RunStatus.COMPLETED
    assert await run.exists()


async def test_start_by_registered_name(engine: af.Engine) -> None:
    run = await engine.start("core_pipeline", 1)
    assert await run.result(timeout=5) == {"doubled": 2, "plus": 3}


async def test_info_records_every_step(engine: af.Engine) -> None:
    run = await engine.start(core_pipeline, 3, metadata={"team": "ops"})
    await run.result(timeout=5)
    info = await run.info()
    assert info.id == run.id
    assert info.workflow == "core_pipeline"
    assert info.status == af.RunStatus.COMPLETED
    assert info.args == [3]
    assert info.result == {"doubled": 6, "plus": 7}
    assert info.error is None
    assert info.metadata == {"team": "ops"}
    assert info.created_at <= info.started_at <= info.completed_at  # type: ignore[operator]
    assert [(s.seq, s.name, s.status, s.attempts, s.result) for s in info.steps] == [
        (0, "core_double", "completed", 1, 6),
        (1, "core.add_one", "completed", 1, 7),
    ]
    assert all(s.started_at and s.completed_at for s in info.steps)


async def test_workflow_info_inside_workflow(engine: af.Engine) -> None:
    run = await engine.start(core_info_wf, "t")
    assert await run.result(timeout=5) == {"run_id": run.id, "workflow": "core.info", "tag": "t"}


async def test_failed_run_raises_run_failed_error(engine: af.Engine) -> None:
    run = await engine.start(core_failing, "boom")
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "ValueError"
    assert caught.value.error.message == "boom"
    assert "core_failing" in (caught.value.error.traceback or "")
    assert await run.status() == af.RunStatus.FAILED
    info = await run.info()
    assert info.error == caught.value.error


async def test_result_timeout(engine: af.Engine) -> None:
    gates["timeout"] = asyncio.Event()
    run = await engine.start(core_blocked, "timeout")
    with pytest.raises(TimeoutError, match=f"run '{run.id}' did not finish within 0.05 s"):
        await run.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        await run.result(timeout="10ms")
    with pytest.raises(ValueError, match="result timeout must be a finite, non-negative"):
        await run.result(timeout=-1)
    gates["timeout"].set()
    assert await run.result(timeout="5s") == "timeout"


async def test_result_of_many_waiters(engine: af.Engine) -> None:
    gates["many"] = asyncio.Event()
    run = await engine.start(core_blocked, "many")
    waiters = [asyncio.ensure_future(engine.get_run(run.id).result(timeout=5)) for _ in range(20)]
    await wait_running(run)
    gates["many"].set()
    assert await asyncio.gather(*waiters) == ["many"] * 20


async def wait_running(run: af.Run[Any]) -> None:
    await eventually(lambda: run.status(), timeout=5)


async def test_start_is_idempotent_by_id(engine: af.Engine) -> None:
    first = await engine.start(core_pipeline, 1, id="order-1")
    again = await engine.start(core_pipeline, 99, id="order-1")
    assert again.id == first.id == "order-1"
    assert await again.result(timeout=5) == {"doubled": 2, "plus": 3}
    with pytest.raises(af.RunAlreadyExistsError):
        await engine.start(core_pipeline, 1, id="order-1", if_exists="error")
    runs = await engine.list_runs(workflow=core_pipeline)
    assert [r.id for r in runs] == ["order-1"]


async def test_starting_again_a_finished_run_that_left_memory_returns_its_result(
    engine: af.Engine,
) -> None:
    first = await engine.start(core_pipeline, 1, id="order-done")
    assert await first.result(timeout=5) == {"doubled": 2, "plus": 3}
    await eventually(lambda: engine.live_actors() == 0)
    # The second start spawns an actor for a creation that turns out to be taken; a
    # result() caller registered meanwhile is answered from the stored run.
    again = await engine.start(core_pipeline, 99, id="order-done")
    assert await again.status() == af.RunStatus.COMPLETED
    assert await again.result(timeout=5) == {"doubled": 2, "plus": 3}
    await eventually(lambda: engine.live_actors() == 0)


async def test_concurrent_starts_with_one_id_make_one_run(engine: af.Engine) -> None:
    runs = await asyncio.gather(*(engine.start(core_pipeline, i, id="same") for i in range(10)))
    assert {r.id for r in runs} == {"same"}
    result = await runs[0].result(timeout=5)
    assert result["doubled"] in {2 * i for i in range(10)}
    assert len(await engine.list_runs(workflow="core_pipeline")) == 1


async def test_af_start_uses_the_innermost_engine(store_url: str) -> None:
    async with af.Engine(store_url):
        run = await af.start(core_pipeline, 2)
        assert await run.result(timeout=5) == {"doubled": 4, "plus": 5}
    with pytest.raises(af.EngineClosedError):
        await af.start(core_pipeline, 2)


async def test_get_run_is_lazy(engine: af.Engine) -> None:
    missing = engine.get_run("does-not-exist")
    assert not await missing.exists()
    with pytest.raises(af.RunNotFoundError):
        await missing.status()
    with pytest.raises(af.RunNotFoundError):
        await missing.result(timeout=1)
    with pytest.raises(af.RunNotFoundError):
        await missing.info()
    with pytest.raises(af.RunNotFoundError):
        await missing.terminate()
    with pytest.raises(af.RunNotFoundError):
        await missing.send_event("x", 1)


async def test_list_runs_filters(engine: af.Engine) -> None:
    done = [await engine.start(core_pipeline, i) for i in range(3)]
    for run in done:
        await run.result(timeout=5)
    failed = await engine.start(core_failing, "x")
    with pytest.raises(af.RunFailedError):
        await failed.result(timeout=5)
    all_runs = await engine.list_runs()
    assert {r.id for r in all_runs} >= {r.id for r in [*done, failed]}
    completed = await engine.list_runs(status="completed", workflow="core_pipeline")
    assert {r.id for r in completed} == {r.id for r in done}
    assert all(r.steps == () for r in completed)
    failures = await engine.list_runs(status=[af.RunStatus.FAILED])
    assert [r.id for r in failures] == [failed.id]
    assert failures[0].error is not None and failures[0].error.type == "ValueError"
    assert len(await engine.list_runs(workflow=core_pipeline, limit=2)) == 2
    page = await engine.list_runs(workflow=core_pipeline, limit=2, offset=2)
    assert len(page) == 1
    with pytest.raises(ValueError, match="unknown run status 'bogus'; valid: queued, running"):
        await engine.list_runs(status="bogus")
    with pytest.raises(ValueError, match="unknown run status 3"):
        await engine.list_runs(status=["completed", 3])  # type: ignore[list-item]


async def test_events_yield_the_log_then_end(engine: af.Engine) -> None:
    run = await engine.start(core_pipeline, 1)
    seen = [e async for e in run.events()]
    assert [e.kind for e in seen] == [
        "run_created",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "run_completed",
    ]
    assert [e.index for e in seen] == list(range(len(seen)))
    assert seen[2].data == 2 and seen[2].name == "core_double" and seen[2].seq == 0
    assert seen[-1].data == {"doubled": 2, "plus": 3}


async def test_events_live_subscriber_sees_everything(engine: af.Engine) -> None:
    gates["live"] = asyncio.Event()
    run = await engine.start(core_blocked, "live")
    collected: list[str] = []

    async def collect() -> None:
        async for event in run.events():
            collected.append(event.kind)

    reader = asyncio.ensure_future(collect())
    await eventually(lambda: "step_started" in collected)
    gates["live"].set()
    await asyncio.wait_for(reader, 5)
    assert collected == [
        "run_created",
        "step_started",
        "step_completed",
        "run_completed",
    ]


async def test_unknown_workflow_is_refused(engine: af.Engine) -> None:
    with pytest.raises(af.WorkflowNotRegisteredError):
        await engine.start("no.such.workflow")
    with pytest.raises(TypeError):
        await engine.start(core_double, 1)  # type: ignore[arg-type]


async def test_engine_restricted_to_listed_workflows(store_url: str) -> None:
    async with af.Engine(store_url, workflows=[core_pipeline]) as engine:
        assert await (await engine.start(core_pipeline, 1)).result(timeout=5)
        with pytest.raises(af.WorkflowNotRegisteredError):
            await engine.start(core_info_wf, "x")


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        af.Engine("mysql://nope")
    with pytest.raises(ValueError):
        af.Engine("sqlite://")
    with pytest.raises(ValueError):
        af.Engine("memory://", max_concurrency=0)
    with pytest.raises(ValueError):
        af.Engine("memory://", idle_timeout=-1)
    async with af.Engine("memory://") as engine:
        with pytest.raises(ValueError):
            await engine.start(core_pipeline, 1, id="")
        with pytest.raises(ValueError):
            await engine.start(core_pipeline, 1, if_exists="replace")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await engine.start(core_pipeline, 1, id="bad\nid")


async def test_closed_engine_refuses_calls() -> None:
    engine = af.Engine("memory://")
    with pytest.raises(af.EngineClosedError):
        await engine.start(core_pipeline, 1)
    async with engine:
        pass
    with pytest.raises(af.EngineClosedError):
        await engine.start(core_pipeline, 1)


async def test_default_url_is_embedded_sqlite(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with af.Engine() as engine:
        run = await engine.start(core_pipeline, 4)
        assert await run.result(timeout=5) == {"doubled": 8, "plus": 9}
    assert (tmp_path / "actorflow.db").exists()


async def test_completed_runs_leave_memory(engine: af.Engine) -> None:
    runs = [await engine.start(core_pipeline, i) for i in range(50)]
    for run in runs:
        await run.result(timeout=5)
    await eventually(lambda: engine.live_actors() == 0)


@af.workflow
async def core_mixed(x: int) -> list[int]:
    a, b = await asyncio.gather(core_double(x), core_add_one(x))
    await af.sleep("10ms")
    child = await af.start(core_pipeline, a)
    return [a, b, (await child.result())["plus"]]


def test_works_on_the_standard_asyncio_loop(tmp_path: Any) -> None:
    async def main() -> tuple[str, list[int]]:
        async with af.Engine(f"sqlite:///{tmp_path / 'plain.db'}") as engine:
            run = await engine.start(core_mixed, 3)
            return type(asyncio.get_running_loop()).__module__, await run.result(timeout=5)

    module, result = asyncio.run(main())
    assert module.startswith("asyncio")
    assert result == [6, 4, 13]


core_gate: asyncio.Event | None = None


@af.step
async def core_gated(x: int) -> int:
    assert core_gate is not None
    await core_gate.wait()
    return x


@af.workflow
async def core_gated_pair(x: int) -> int:
    return await core_gated(await core_double(x))


async def test_a_run_waiting_on_a_step_costs_one_task_its_steps(engine: af.Engine) -> None:
    global core_gate
    core_gate = asyncio.Event()
    before = len(asyncio.all_tasks())
    runs = [await engine.start(core_gated_pair, i) for i in range(20)]
    # Every run's second step is running, and its actor idles without a task.
    await eventually(lambda: sum(t.get_name() == "core_gated" for t in asyncio.all_tasks()) == 20)
    assert len(asyncio.all_tasks()) == before + 20
    core_gate.set()
    assert [await r.result(timeout=5) for r in runs] == [2 * i for i in range(20)]
    await eventually(lambda: engine.live_actors() == 0)


@pytest.mark.sources
async def test_a_turn_that_fails_in_a_step_task_leaves_the_run_to_rehydrate(
    engine: af.Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from actorflow._actor import RunActor

    global core_gate
    core_gate = asyncio.Event()
    run = await engine.start(core_gated_pair, 5)
    await eventually(lambda: any(t.get_name() == "core_gated" for t in asyncio.all_tasks()))
    settle = RunActor.settle
    failed: list[str] = []

    def fail_once(actor: RunActor) -> None:
        if not failed:
            failed.append(actor.run_id)
            raise RuntimeError("injected fault")
        settle(actor)

    monkeypatch.setattr(RunActor, "settle", fail_once)
    core_gate.set()  # the step's result is taken in its task: that turn fails
    await eventually(lambda: failed and engine.live_actors() == 0)
    assert "actor of run" in caplog.text and "injected fault" in caplog.text
    assert await run.status() == af.RunStatus.RUNNING  # the store holds what was committed
    # The next message rehydrates it; replay runs the step again, which now returns at once.
    await run.resume()
    assert await run.result(timeout=5) == 10


async def test_generated_run_ids_sort_by_creation_time(engine: af.Engine) -> None:
    from actorflow._ids import new_run_id

    first = (await engine.start(core_pipeline, 1)).id
    now_ms = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == now_ms:  # into the next millisecond
        pass
    second = (await engine.start(core_pipeline, 2)).id
    assert len(first) == len(second) == 32
    assert int(first[:12], 16) <= now_ms < int(second[:12], 16)
    assert first < second
    assert len({new_run_id() for _ in range(10_000)}) == 10_000


def test_a_forked_process_generates_other_run_ids_than_its_parent() -> None:
    """Generated ids take random bytes from a pool filled once per 400 ids: a forked
    child must not take the bytes its parent takes next."""
    from actorflow._ids import new_run_id

    new_run_id()  # the pool now holds the parent's next random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids, then out without pytest's teardown
        os.close(read)
        os.write(write, "".join(new_run_id()[12:] for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    child = {text[i : i + 20] for i in range(0, len(text), 20)}
    parent = {new_run_id()[12:] for _ in range(100)}
    assert len(child) == 100 and not child & parent


async def test_finished_runs_answer_result_and_status_from_the_store(engine: af.Engine) -> None:
    runs = [await engine.start(core_pipeline, i) for i in range(30)]
    for run in runs:
        await run.result(timeout=5)
    await eventually(lambda: engine.live_actors() == 0)  # now only the store has them
    ghost = engine.get_run("core-no-such-run")
    results = await asyncio.gather(
        *(r.result() for r in runs), ghost.result(), return_exceptions=True
    )
    assert results[:-1] == [{"doubled": 2 * i, "plus": 2 * i + 1} for i in range(30)]
    assert isinstance(results[-1], af.RunNotFoundError)
    statuses = await asyncio.gather(*(r.status() for r in runs))
    assert statuses == [af.RunStatus.COMPLETED] * 30
    assert not await ghost.exists()


@af.workflow
async def core_waits_for_go() -> Any:
    return await af.wait_for_event("core_go")


async def test_closing_right_after_a_message_woke_an_idle_run_stops_its_workflow(
    store_url: str,
) -> None:
    from actorflow._messages import WAKE
    from actorflow._sandbox import WorkflowLoop

    engine = af.Engine(store_url, idle_timeout=None)  # no eviction: it idles without a task
    await engine.open()
    run = await engine.start(core_waits_for_go)
    await eventually(lambda: engine.live_actors() == 1 and engine._runs.actors[run.id].task is None)
    actor = engine._runs.actors[run.id]
    sandbox = actor.loop
    assert isinstance(sandbox, WorkflowLoop) and not sandbox.is_closed()
    # A message starts the idle actor's task (as a timer's wake-up would); the engine
    # closes before that task ever runs, so it is cancelled without entering its body.
    engine._runs.deliver(run.id, WAKE)
    assert actor.task is not None
    await engine.close()
    assert sandbox.is_closed()  # the workflow was stopped, not left pending
    assert actor.loop is None and engine.live_actors() == 0


async def test_reads_of_runs_waiting_when_the_engine_closes_fail_instead_of_hanging(
    sqlite_url: str,
) -> None:
    engine = af.Engine(sqlite_url)
    await engine.open()
    runs = [await engine.start(core_pipeline, i) for i in range(20)]
    for run in runs:
        await run.result(timeout=5)
    await eventually(lambda: engine.live_actors() == 0)  # status() must read the store
    reading = asyncio.ensure_future(asyncio.gather(*(r.status() for r in runs)))
    for _ in range(3):  # the grouped read of all 20 is under way on the reader's thread
        await asyncio.sleep(0)
    await engine.close()
    try:
        statuses = await asyncio.wait_for(reading, 5)
    except af.EngineClosedError:
        return  # the read was cut short by the close
    assert statuses == [af.RunStatus.COMPLETED] * 20  # or it finished first


async def test_start_many_starts_every_run_in_order(engine: af.Engine) -> None:
    runs = await engine.start_many(core_pipeline, [(i,) for i in range(20)])
    assert len({run.id for run in runs}) == 20
    results = await asyncio.gather(*(run.result(timeout=5) for run in runs))
    assert results == [{"doubled": 2 * i, "plus": 2 * i + 1} for i in range(20)]
    listed = await engine.list_runs(workflow=core_pipeline, limit=100)
    assert {info.id for info in listed} >= {run.id for run in runs}
    info = await runs[7].info()
    assert info.args == [7]
    assert await engine.start_many("core_pipeline", []) == []


async def test_start_many_checks_every_input_before_recording_any(engine: af.Engine) -> None:
    with pytest.raises(af.SerializationError, match=r"inputs\[2\]\[0\]"):
        await engine.start_many(core_pipeline, [(1,), (2,), (object(),)])
    with pytest.raises(TypeError, match="index 1"):
        await engine.start_many(core_pipeline, [(1,), 2])  # type: ignore[list-item]
    with pytest.raises(af.WorkflowNotRegisteredError):
        await engine.start_many("core.nope", [(1,)])
    assert await engine.list_runs(workflow=core_pipeline) == []


async def test_start_many_records_all_runs_or_none(database: Database) -> None:
    async with af.Engine(database.url, workflows=[core_pipeline]) as engine:
        # The row of the run with the arguments [3] is refused.
        text = (
            "CAST(NEW.args AS TEXT)"
            if database.kind == "sqlite"
            else "convert_from(NEW.args, 'UTF8')"
        )
        refused = RefusedInserts(database, f"{text} = '[3]'", table="runs")
        with pytest.raises(af.StoreWriteError):
            await engine.start_many(core_pipeline, [(i,) for i in range(6)])
        assert database.query("SELECT count(*) FROM runs") == [(0,)]
        refused.stop()
        runs = await engine.start_many(core_pipeline, [(i,) for i in range(6)])
        assert [await run.result(timeout=5) for run in runs][3] == {"doubled": 6, "plus": 7}
        assert len(await engine.list_runs(workflow=core_pipeline)) == 6


_SWALLOWS_CANCELLATION = """
import asyncio, os, sys
import actorflow as af

@af.step(name="core.sub.block")
async def block() -> None:
    await asyncio.Event().wait()

@af.workflow(name="core.sub.swallow")
async def swallow() -> None:
    while True:
        try:
            await block()
        except BaseException:  # the unwinding too: the pattern under test
            continue

async def main() -> None:
    async with af.Engine(sys.argv[1], workflows=[swallow]) as engine:
        run = await engine.start(swallow)
        while await run.status() != af.RunStatus.RUNNING:
            await asyncio.sleep(0.01)
    print("closed", flush=True)
    # The parked coroutine still ignores everything: when Python frees it at exit,
    # its loop would call the step as a plain call forever. No runtime can stop that.
    os._exit(0)

af.run(main())
"""


def test_close_returns_when_workflow_code_swallows_its_unwinding(tmp_path: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SWALLOWS_CANCELLATION, f"sqlite:///{tmp_path}/swallow.db"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"


_engine_for_workflow: list[af.Engine] = []


@af.workflow(name="core.calls_engine")
async def core_calls_engine() -> str:
    try:
        await _engine_for_workflow[0].start(core_pipeline, 1)
    except af.WorkflowSandboxError as exc:
        return str(exc)
    return "started"


async def test_workflow_code_cannot_call_the_engine_directly(engine: af.Engine) -> None:
    _engine_for_workflow[:] = [engine]
    run = await engine.start(core_calls_engine)
    assert "use af.start()" in await run.result(timeout=5)
    assert await engine.list_runs(workflow=core_pipeline) == []


async def test_start_many_with_ids_is_idempotent(engine: af.Engine) -> None:
    first = await engine.start_many(core_pipeline, [(1,), (2,)], ids=["many-a", "many-b"])
    assert [run.id for run in first] == ["many-a", "many-b"]
    again = await engine.start_many(core_pipeline, [(20,), (3,)], ids=["many-b", "many-c"])
    assert [run.id for run in again] == ["many-b", "many-c"]
    results = [await run.result(timeout=5) for run in [*first, again[1]]]
    assert [r["doubled"] for r in results] == [2, 4, 6], "an existing run keeps its input"
    assert len(await engine.list_runs(workflow=core_pipeline)) == 3
    await eventually(lambda: engine.live_actors() == 0)  # finished: only the store has them
    [done] = await engine.start_many(core_pipeline, [(99,)], ids=["many-a"])
    assert (await done.result(timeout=5))["doubled"] == 2
    with pytest.raises(ValueError, match="distinct"):
        await engine.start_many(core_pipeline, [(1,), (2,)], ids=["many-d", "many-d"])
    with pytest.raises(ValueError, match="2 ids for 1 inputs"):
        await engine.start_many(core_pipeline, [(1,)], ids=["many-e", "many-f"])
    with pytest.raises(ValueError):
        await engine.start_many(core_pipeline, [(1,)], ids=[""])
    assert len(await engine.list_runs(workflow=core_pipeline)) == 3
