"""Schedules on a real engine: ticks, catchup after downtime, overlap, control, reconciliation.

Timing that matters runs in real time on every-second schedules, waiting on
conditions; DST and long downtimes move the scheduler's injectable clock (to
dates after today, so that no real timer fires for them during the test).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import actorflow as af
from actorflow import _definitions as definitions
from actorflow._definitions import WorkflowFunction, workflow_registry

from .conftest import eventually, wait_for_status
from .databases import Database

BERLIN = ZoneInfo("Europe/Berlin")


@af.workflow(name="sched.tick")
async def tick_wf(label: str) -> dict[str, Any]:
    tick = af.workflow_info().schedule
    assert tick is not None
    return {"label": label, "tick": [tick.schedule_id, tick.cron, tick.scheduled_time.isoformat()]}


@af.workflow(name="sched.held")
async def held() -> list[str] | None:
    """Stays unfinished until it gets the event "go"; then returns its tick."""
    await af.wait_for_event("go")
    tick = af.workflow_info().schedule
    return None if tick is None else [tick.schedule_id, tick.cron, tick.scheduled_time.isoformat()]


def ts(*parts: int, tz: Any = UTC) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()


def engine_at(url: str, when: float, **options: Any) -> af.Engine:
    """An engine whose scheduler believes it is `when`."""
    engine = af.Engine(url, **options)
    engine.schedules.clock = lambda: when
    return engine


async def ticks_recorded(sched: af.Schedule, n: int, timeout: float = 10.0) -> af.ScheduleInfo:
    async def check() -> af.ScheduleInfo | None:
        info = await sched.info()
        return info if len(info.recent) >= n else None

    found: af.ScheduleInfo = await eventually(check, timeout)
    return found


async def test_every_second_ticks_start_runs_that_know_their_tick(engine: af.Engine) -> None:
    sched = await engine.create_schedule("s1", tick_wf, "* * * * * *", args=("x",))
    info = await ticks_recorded(sched, 2)
    first, second = info.recent[:2]
    assert (second.scheduled_time - first.scheduled_time).total_seconds() == 1
    for when, run_id, outcome in (first, second):
        assert outcome == "started" and when.tzinfo is UTC and when.microsecond == 0
        assert run_id == f"s1@{when.isoformat()}"
        result = await engine.get_run(run_id).result(timeout=5)
        assert result == {"label": "x", "tick": ["s1", "* * * * * *", when.isoformat()]}
    assert info.next_time is not None and info.next_time > second.scheduled_time
    assert (info.workflow, info.args, info.declared, info.paused) == (
        "sched.tick",
        ["x"],
        False,
        False,
    )
    await sched.pause()


@pytest.mark.parametrize(
    ("catchup", "hours"), [("latest", [5]), ("all", [1, 2, 3, 4, 5]), ("skip", [])]
)
async def test_reopen_after_downtime_under_each_catchup(
    durable_url: str, catchup: str, hours: list[int]
) -> None:
    closed_at = ts(2031, 1, 1, 0, 30)
    async with engine_at(durable_url, closed_at) as engine:
        await engine.create_schedule("h", tick_wf, "0 * * * *", args=("h",), catchup=catchup)  # type: ignore[arg-type]
    async with engine_at(durable_url, closed_at + 5 * 3600) as engine:  # five hours later
        info = await engine.get_schedule("h").info()
        assert [r.scheduled_time.hour for r in info.recent if r.outcome == "started"] == hours
        assert info.next_time == datetime(2031, 1, 1, 6, tzinfo=UTC)
        runs = await engine.list_runs(workflow=tick_wf)
        assert sorted(r.id for r in runs) == sorted(r.run_id or "" for r in info.recent)
        for run in runs:
            result = await engine.get_run(run.id).result(timeout=5)
            assert run.id == f"h@{result['tick'][2]}"


async def test_catchup_all_starts_at_most_100_runs(durable_url: str) -> None:
    closed_at = ts(2031, 1, 1)
    async with engine_at(durable_url, closed_at) as engine:
        await engine.create_schedule("m", tick_wf, "* * * * *", args=("m",), catchup="all")
    async with engine_at(durable_url, closed_at + 3 * 3600) as engine:  # 180 ticks missed
        runs = await engine.list_runs(workflow=tick_wf, limit=1000)
        assert len(runs) == 100
        assert min(r.id for r in runs) == "m@2031-01-01T01:21:00+00:00"  # the 100 latest
        assert max(r.id for r in runs) == "m@2031-01-01T03:00:00+00:00"


async def test_a_tick_fired_twice_starts_one_run(database: Database) -> None:
    closed_at = ts(2031, 1, 1, 0, 30)
    async with engine_at(database.url, closed_at) as engine:
        await engine.create_schedule("twice", tick_wf, "0 * * * *", args=("t",), catchup="all")
    for _ in range(2):
        # The second open fires the same three ticks again, as if the schedule's row
        # change had been lost after its runs were committed.
        database.execute(f"UPDATE schedules SET watermark={closed_at!r} WHERE id='twice'")
        async with engine_at(database.url, closed_at + 3 * 3600) as engine:
            info = await engine.get_schedule("twice").info()
            runs = await engine.list_runs(workflow=tick_wf)
            assert len(runs) == 3
            assert {r.run_id for r in info.recent} == {r.id for r in runs}
    # Live, twice in one turn, and by two concurrent backfills of the same hours:
    async with engine_at(database.url, closed_at + 3 * 3600) as engine:
        sched = engine.get_schedule("twice")
        scheduler = engine.schedules
        tick = ts(2031, 1, 1, 5)
        async with scheduler.lock:
            row = scheduler.rows["twice"]
            assert scheduler.start(row, tick) == scheduler.start(row, tick)
            scheduler.write(row)
            await scheduler.settle()
        start, end = datetime(2031, 1, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, 5, tzinfo=UTC)
        first, second = await asyncio.gather(sched.backfill(start, end), sched.backfill(start, end))
        assert [r.id for r in first] == [r.id for r in second]
        runs = await engine.list_runs(workflow=tick_wf)
        assert sorted(r.id for r in runs) == [
            f"twice@2031-01-01T0{h}:00:00+00:00" for h in (1, 2, 3, 4, 5)
        ]


async def test_callers_cannot_take_the_run_id_of_a_tick() -> None:
    async with af.Engine("memory://") as engine:
        sched = await engine.create_schedule("mine", tick_wf, "0 3 * * *", args=("t",))
        tick = datetime(2031, 1, 1, 3, tzinfo=UTC)
        tick_id = f"mine@{tick.isoformat()}"
        for taken in (tick_id, f"mine@{tick.replace(microsecond=5).isoformat()}"):
            with pytest.raises(af.InvalidNameError, match="reserved for the runs of schedule"):
                await engine.start(tick_wf, "caller", id=taken)
            with pytest.raises(af.InvalidNameError, match="reserved for the runs of schedule"):
                await engine.start_many(tick_wf, [("caller",)], ids=[taken])
        assert not await engine.get_run(tick_id).exists()
        for free in ("mine@2031-01-01", "mine@2031-01-01T03:00:00+01:00", "a@b"):
            assert (await engine.start(held, id=free)).id == free
        # The tick still starts its one run, with the schedule's arguments.
        (run,) = await sched.backfill(tick, datetime(2031, 1, 1, 4, tzinfo=UTC))
        assert run.id == tick_id
        assert (await run.result(timeout=10))["label"] == "t"


@pytest.mark.parametrize("month", [3, 10])
async def test_dst_transitions_through_the_engine(durable_url: str, month: int) -> None:
    # Berlin 2031: clocks go forward on March 30 (02:30 does not exist) and back on
    # October 26 (02:30 happens twice).
    day = 30 if month == 3 else 26
    assert (
        datetime(2031, month, day, 4, tzinfo=BERLIN).dst()
        != datetime(2031, month, day, 1, tzinfo=BERLIN).dst()
    )
    before = ts(2031, month, day - 1, 12, tz=BERLIN)
    async with engine_at(durable_url, before) as engine:
        await engine.create_schedule(
            "dst", tick_wf, "30 2 * * *", args=("d",), timezone="Europe/Berlin", catchup="all"
        )
    async with engine_at(durable_url, before + 2 * 86400) as engine:
        info = await engine.get_schedule("dst").info()
        local = [r.scheduled_time.astimezone(BERLIN).isoformat() for r in info.recent]
        if month == 3:
            assert local == ["2031-03-30T03:00:00+02:00", "2031-03-31T02:30:00+02:00"]
        else:
            assert local == ["2031-10-26T02:30:00+02:00", "2031-10-27T02:30:00+01:00"]
        assert len(await engine.list_runs(workflow=tick_wf)) == 2


async def test_overlap_skip() -> None:
    async with af.Engine("memory://") as engine:
        sched = await engine.create_schedule("o", held, "* * * * * *")
        info = await ticks_recorded(sched, 3)
        assert [r.outcome for r in info.recent[:3]] == ["started", "skipped", "skipped"]
        assert info.recent[1].run_id is None
        await sched.pause()


async def test_overlap_buffer_one() -> None:
    async with af.Engine("memory://") as engine:
        sched = await engine.create_schedule("o", held, "* * * * * *", overlap="buffer_one")
        info = await ticks_recorded(sched, 3)
        first, waiting, extra = info.recent[:3]
        assert [first.outcome, waiting.outcome, extra.outcome] == ["started", "buffered", "skipped"]
        assert info.buffered == (waiting.scheduled_time,)
        await sched.pause()
        assert first.run_id is not None
        await engine.get_run(first.run_id).send_event("go")
        # The buffered tick starts when the earlier run ends, under its own tick's id.
        info = await eventually(lambda: _outcome_of(sched, waiting.scheduled_time, "started"))
        assert info.buffered == ()
        run_id = f"o@{waiting.scheduled_time.isoformat()}"
        await wait_for_status(engine.get_run(run_id), af.RunStatus.WAITING)
        await engine.get_run(run_id).send_event("go")
        assert (await engine.get_run(run_id).result(timeout=5))[
            2
        ] == waiting.scheduled_time.isoformat()


async def test_overlap_buffer_all() -> None:
    async with af.Engine("memory://") as engine:
        sched = await engine.create_schedule("o", held, "* * * * * *", overlap="buffer_all")
        info = await ticks_recorded(sched, 3)
        await sched.pause()
        info = await sched.info()
        assert info.recent[0].outcome == "started"
        assert all(r.outcome == "buffered" for r in info.recent[1:])
        assert list(info.buffered) == [r.scheduled_time for r in info.recent[1:]]
        run_id = info.recent[0].run_id
        for r in info.recent[1:]:  # each buffered tick starts once the one before it ends
            assert run_id is not None
            await engine.get_run(run_id).send_event("go")
            await eventually(lambda r=r: _outcome_of(sched, r.scheduled_time, "started"))
            run_id = f"o@{r.scheduled_time.isoformat()}"
        assert (await sched.info()).buffered == ()


async def test_overlap_terminate_other() -> None:
    async with af.Engine("memory://") as engine:
        sched = await engine.create_schedule("o", held, "* * * * * *", overlap="terminate_other")
        info = await ticks_recorded(sched, 2)
        await sched.pause()
        first, second = info.recent[:2]
        assert first.outcome == second.outcome == "started"
        assert first.run_id is not None and second.run_id is not None
        assert await engine.get_run(first.run_id).status() == af.RunStatus.TERMINATED
        assert not (await engine.get_run(second.run_id).status()).is_final or len(info.recent) > 2


async def test_overlap_allow() -> None:
    async with af.Engine("memory://") as engine:
        sched = await engine.create_schedule("o", held, "* * * * * *", overlap="allow")
        info = await ticks_recorded(sched, 2)
        await sched.pause()
        runs = [engine.get_run(r.run_id) for r in info.recent if r.run_id is not None]
        assert len(runs) == len(info.recent) >= 2
        for run in runs:
            await wait_for_status(run, af.RunStatus.WAITING)


async def _outcome_of(sched: af.Schedule, when: datetime, outcome: str) -> af.ScheduleInfo | None:
    info = await sched.info()
    return (
        info
        if any(r.scheduled_time == when and r.outcome == outcome for r in info.recent)
        else None
    )


async def test_pause_resume_trigger_delete(engine: af.Engine) -> None:
    sched = await engine.create_schedule("p", tick_wf, "@every 1s", args=("p",), paused=True)
    info = await sched.info()
    assert info.paused and info.next_time is None and info.recent == ()
    run = await sched.trigger()  # one run now, outside the cron
    result = await run.result(timeout=5)
    assert result["label"] == "p" and run.id == f"p@{result['tick'][2]}"
    assert [(r.run_id, r.outcome) for r in (await sched.info()).recent] == [(run.id, "started")]
    await sched.resume()
    info = await ticks_recorded(sched, 2)
    assert info.recent[1].outcome == "started" and info.recent[1].run_id != run.id
    await sched.pause()
    paused = await sched.info()
    assert paused.paused and paused.next_time is None
    # A second schedule's ticks show time passing; the paused one records none meanwhile.
    clock = await engine.create_schedule("clock", tick_wf, "* * * * * *", args=("c",))
    await ticks_recorded(clock, 2)
    assert (await sched.info()).recent == paused.recent
    await sched.delete()
    with pytest.raises(af.ScheduleNotFoundError):
        await sched.info()
    assert not await sched.exists()
    assert [i.id for i in await engine.list_schedules()] == ["clock"]
    assert await engine.get_run(run.id).status() == af.RunStatus.COMPLETED
    await clock.delete()


async def test_create_again_updates_in_place(engine: af.Engine) -> None:
    first = await engine.create_schedule("u", tick_wf, "0 0 1 1 *", args=("a",))
    created = (await first.info()).created_at
    again = await engine.create_schedule(
        "u", tick_wf, "0 12 * * MON", args=("b",), timezone="Europe/Berlin", overlap="allow",
        catchup="skip", metadata={"team": "ops"},
    )  # fmt: skip
    info = await again.info()
    assert (info.cron, info.args, info.timezone, info.overlap, info.catchup, info.metadata) == (
        "0 12 * * MON", ["b"], "Europe/Berlin", "allow", "skip", {"team": "ops"},
    )  # fmt: skip
    assert info.created_at == created and info.next_time is not None
    assert info.next_time.astimezone(BERLIN).hour == 12
    assert [i.id for i in await engine.list_schedules()] == ["u"]


async def test_an_update_with_the_same_next_tick_fires_it_as_updated(engine: af.Engine) -> None:
    # The next tick is prepared when its timer is armed: an update that keeps the tick
    # (same instants, other expression and arguments) must prepare it again.
    sched = await engine.create_schedule("same", tick_wf, "* * * * * *", args=("old",))
    await engine.create_schedule("same", tick_wf, "*/1 * * * * *", args=("new",))
    info = await ticks_recorded(sched, 1)
    await sched.pause()
    when, run_id, outcome = info.recent[0]
    assert outcome == "started" and run_id is not None
    result = await engine.get_run(run_id).result(timeout=5)
    assert result == {"label": "new", "tick": ["same", "*/1 * * * * *", when.isoformat()]}


async def test_backfill_starts_the_ticks_in_the_range_once(engine: af.Engine) -> None:
    sched = await engine.create_schedule("b", tick_wf, "0 * * * *", args=("b",), paused=True)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 3, tzinfo=UTC)
    runs = await sched.backfill(start, end)
    assert [r.id for r in runs] == [f"b@2026-01-01T0{h}:00:00+00:00" for h in (0, 1, 2)]
    for run in runs:
        assert (await run.result(timeout=5))["tick"][2] == run.id.split("@")[1]
    assert [r.id for r in await sched.backfill(start, end)] == [r.id for r in runs]
    assert len(await engine.list_runs(workflow=tick_wf)) == 3
    with pytest.raises(af.ScheduleError, match="more than 1000"):
        await sched.backfill(start, datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(af.ScheduleError, match="timezone-aware"):
        await sched.backfill(datetime(2026, 1, 1), end)


async def test_schedule_tick_survives_reopen(durable_url: str) -> None:
    async with af.Engine(durable_url) as engine:
        sched = await engine.create_schedule("r", held, "0 0 1 1 *", paused=True)
        run = await sched.trigger()
        await wait_for_status(run, af.RunStatus.WAITING)
    async with af.Engine(durable_url) as engine:
        run = engine.get_run(run.id)
        await run.send_event("go")
        schedule_id, cron, when = await run.result(timeout=5)
        assert (schedule_id, cron) == ("r", "0 0 1 1 *") and run.id == f"r@{when}"
        assert (await engine.get_schedule("r").info()).paused


async def _noop() -> None:
    return None


async def test_declared_schedules_are_reconciled_on_open(durable_url: str) -> None:
    # Built directly (not registered): other tests' engines must not see these schedules.
    wf = WorkflowFunction(
        _noop, name="recon", concurrency=None, deadline=None, schedules=("0 0 1 1 *", "@daily")
    )
    async with af.Engine(durable_url, workflows=[wf]) as engine:
        infos = await engine.list_schedules()
        assert [(i.id, i.declared, i.cron, i.args) for i in infos] == [
            ("recon:0 0 1 1 *", True, "0 0 1 1 *", []),
            ("recon:@daily", True, "@daily", []),
        ]
        await engine.create_schedule("runtime", wf, "@weekly")
        # A runtime schedule under the id the next version of the code declares:
        await engine.create_schedule(
            "recon:@weekly", wf, "@weekly", timezone="Europe/Berlin", overlap="allow"
        )
        await engine.get_schedule("recon:@daily").pause()
    wf.schedules = ("@daily", "@weekly")  # the code changed
    async with af.Engine(durable_url, workflows=[wf]) as engine:
        infos = {i.id: i for i in await engine.list_schedules()}
        assert sorted(infos) == ["recon:@daily", "recon:@weekly", "runtime"]
        assert infos["recon:@daily"].paused and not infos["runtime"].declared
        taken_over = infos["recon:@weekly"]
        assert taken_over.declared and (taken_over.timezone, taken_over.overlap) == ("UTC", "skip")
        with pytest.raises(af.ScheduleError, match="declared"):
            await engine.create_schedule("recon:@daily", wf, "@hourly")
        with pytest.raises(af.ScheduleError, match="declared"):
            await engine.get_schedule("recon:@weekly").delete()
    wf.schedules = ()
    async with af.Engine(durable_url, workflows=[wf]) as engine:
        assert [i.id for i in await engine.list_schedules()] == ["runtime"]


async def test_a_schedule_declared_with_the_decorator_fires(
    monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    # A registry of this test's own: other tests' engines run every registered workflow.
    monkeypatch.setattr(definitions, "_registry", dict(definitions.registered_workflows()))

    @af.workflow(name="sched.declared", schedules=["* * * * * *", "* * * * * *"])
    async def declared() -> str:
        tick = af.workflow_info().schedule
        assert tick is not None
        return tick.scheduled_time.isoformat()

    assert declared.schedules == ("* * * * * *",)
    async with af.Engine(store_url) as engine:  # workflows=None: every registered one
        sched = engine.get_schedule("sched.declared:* * * * * *")
        info = await ticks_recorded(sched, 1)
        assert info.declared and info.workflow == "sched.declared"
        when, run_id, outcome = info.recent[0]
        assert outcome == "started" and run_id is not None
        assert await engine.get_run(run_id).result(timeout=5) == when.isoformat()
        await sched.pause()


def test_the_decorator_refuses_a_bad_expression() -> None:
    with pytest.raises(af.ScheduleError, match="Bad minute"):

        @af.workflow(name="sched.bad", schedules=["61 * * * *"])
        async def bad() -> None: ...

    assert "sched.bad" not in workflow_registry()
    with pytest.raises(af.ScheduleError, match="list of cron expressions"):
        af.workflow(name="sched.bad", schedules="0 * * * *")


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "@sometimes"}, "unknown schedule expression"),
        ({"timezone": "Europe/Atlantis"}, "unknown timezone 'Europe/Atlantis'"),
        ({"overlap": "queue"}, "unknown overlap policy 'queue'"),
        ({"catchup": "never"}, "unknown catchup policy 'never'"),
        ({"workflow": "sched.nope"}, "no workflow named 'sched.nope'"),
        ({"args": ()}, "takes 1 positional argument, got 0"),
        ({"args": ("a", "b")}, "takes 1 positional argument, got 2"),
        ({"args": (object(),)}, "schedule args\\[0\\] cannot be serialized"),
        ({"args": "abc"}, "tuple or list"),
        ({"id": ""}, "schedule id"),
        ({"paused": "yes"}, "paused must be a bool"),
    ],
)
async def test_bad_input_raises_schedule_error_and_stores_nothing(
    engine: af.Engine, call: dict[str, Any], needle: str
) -> None:
    options: dict[str, Any] = {"id": "bad", "workflow": tick_wf, "cron": "0 * * * *"}
    options["args"] = ("ok",)
    options.update(call)
    schedule_id, workflow, cron = options.pop("id"), options.pop("workflow"), options.pop("cron")
    with pytest.raises(af.ScheduleError, match=needle) as caught:
        await engine.create_schedule(schedule_id, workflow, cron, **options)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, af.ActorflowError)
    assert await engine.list_schedules() == []
    with pytest.raises(af.ScheduleNotFoundError):
        await engine.get_schedule("bad").info()


async def test_buffered_ticks_and_unfinished_runs_survive_reopen(durable_url: str) -> None:
    async with af.Engine(durable_url) as engine:
        sched = await engine.create_schedule("keep", held, "* * * * * *", overlap="buffer_all")
        await ticks_recorded(sched, 2)
        await sched.pause()
        before = await sched.info()
    assert before.buffered and before.recent[0].outcome == "started"
    async with af.Engine(durable_url) as engine:
        sched = engine.get_schedule("keep")
        info = await sched.info()
        assert info.buffered == before.buffered and info.recent == before.recent
        first = info.recent[0].run_id
        assert first is not None
        await engine.get_run(first).send_event("go")
        waiting = info.buffered[0]
        await eventually(lambda: _outcome_of(sched, waiting, "started"))
        await wait_for_status(engine.get_run(f"keep@{waiting.isoformat()}"), af.RunStatus.WAITING)


async def test_ticks_of_a_workflow_this_engine_lacks_are_skipped(
    durable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed_at = ts(2031, 1, 1, 0, 30)
    async with engine_at(durable_url, closed_at, workflows=[tick_wf]) as engine:
        await engine.create_schedule("gone", tick_wf, "0 * * * *", args=("g",))
    async with engine_at(durable_url, closed_at + 2 * 3600, workflows=[held]) as engine:
        info = await engine.get_schedule("gone").info()
        assert [(r.scheduled_time.hour, r.run_id, r.outcome) for r in info.recent] == [
            (2, None, "skipped")
        ]
        assert await engine.list_runs() == []
    assert "workflow 'sched.tick' is not registered in this engine" in caplog.text
