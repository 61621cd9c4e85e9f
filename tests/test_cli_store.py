"""`--db`: the read commands on a store, with no engine on it and while `actorflow serve`
runs on it: a SQLite file and a PostgreSQL schema. They answer as the server does, and
never change a byte of a SQLite database, its `-wal` or its `-shm`, nor create a file
next to it (on PostgreSQL, the reader's connection is read-only)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import actorflow as af
from actorflow._errors import StoreReadError
from actorflow._store_reader import StoreReader
from tests import cli_workflows as flows
from tests._cli import (
    cli,
    cli_many,
    cli_process,
    doc,
    file_hashes,
    lines,
    ok,
    one_error_line,
    serving,
)
from tests.conftest import admin, with_query
from tests.databases import PostgresDatabase

PG = pytest.mark.postgres


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=PG)])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """A store with finished runs of each kind and two waiting ones, closed: (the
    directory of its file, or an empty one for PostgreSQL, and its URL)."""
    directory = tmp_path_factory.mktemp("store")
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'runs.db'}"
    else:
        server = request.getfixturevalue("pg_server")
        schema = f"test_cli_{uuid.uuid4().hex[:12]}"
        url = with_query(server, f"schema={schema}")
        request.addfinalizer(
            lambda: asyncio.run(admin(server, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        )

    async def populate() -> None:
        async with af.Engine(url) as engine:
            await (await engine.start(flows.cli_parent, 3, id="parent-3")).result(timeout=30)
            nightly = await engine.create_schedule(
                "nightly", flows.cli_summed, "0 3 * * *", args=(1, 1), paused=True
            )
            ticked = await nightly.trigger()
            await ticked.result(timeout=30)
            await nightly.delete()
            hourly = await engine.create_schedule(
                "hourly", flows.cli_summed, "0 * * * *", args=(2, 3), timezone="Europe/Berlin",
                overlap="buffer_one", metadata={"team": "ops"},
            )  # fmt: skip
            await (await hourly.trigger()).result(timeout=30)
            await engine.create_schedule(
                "weekly", flows.cli_summed, "@weekly", args=(1, 2), paused=True
            )
            failed = await engine.start(flows.cli_broken, "boom", id="broken-1")
            with pytest.raises(af.RunFailedError):
                await failed.result(timeout=30)
            streamed = await engine.start(flows.cli_approval, {"n": 1}, id="ap-1")
            await engine.start(flows.cli_approval, {"n": 2}, id="ap-2")
            await engine.start(flows.cli_approval, {"n": 3}, id="ap-3")
            async for event in streamed.events():
                if event.kind == "wait_started":
                    break
            await streamed.send_event("approve", "bob")
            await streamed.result(timeout=30)
            for waiting in ("ap-2", "ap-3"):
                async for event in engine.get_run(waiting).events():
                    if event.kind == "wait_started":
                        break

    asyncio.run(populate())
    yield directory, url


def test_reads_with_no_engine_running_change_nothing(store: tuple[Path, str]) -> None:
    directory, db = store
    before = file_hashes(directory)
    assert not any(name.endswith(("-wal", "-shm")) for name in before)  # no engine: no WAL
    (listed, summed, child, parent, result, failed, waiting, followed, streamed, counts,
     missing, ticked, schedules, hourly, schedule_table, no_schedule) = cli_many(
        ["runs", "list", "--db", db, "--json"],
        ["runs", "list", "--db", db, "--workflow", "cli_summed"],
        ["runs", "describe", "parent-3~0", "--db", db, "--json"],
        ["runs", "describe", "parent-3", "--db", db],
        ["runs", "result", "parent-3", "--db", db, "--json"],
        ["runs", "result", "broken-1", "--db", db],
        ["runs", "result", "ap-2", "--db", db, "--wait", "0.3", "--json"],
        ["runs", "events", "ap-1", "--db", db, "--follow", "--json"],
        ["runs", "stream", "ap-1", "--db", db],
        ["workflows", "list", "--db", db, "--json"],
        ["runs", "describe", "no-such", "--db", db],
        ["runs", "list", "--db", db, "--workflow", "cli_summed", "--json"],
        ["schedules", "list", "--db", db, "--json"],
        ["schedules", "describe", "hourly", "--db", db],
        ["schedules", "list", "--db", db],
        ["schedules", "describe", "nightly", "--db", db],
    )  # fmt: skip
    page = doc(listed)
    assert [r["id"] for r in page["runs"]][:4] == ["ap-3", "ap-2", "ap-1", "broken-1"]
    assert {r["id"] for r in page["runs"]} >= {"parent-3~0", "parent-3"}
    (tick,) = [r["id"] for r in doc(ticked)["runs"] if r["id"].startswith("nightly@")]
    described = ok(cli("runs", "describe", tick, "--db", db))
    assert "schedule" in described and "nightly (0 3 * * *) tick" in described
    statuses = {r["id"]: r["status"] for r in page["runs"]}
    assert statuses["ap-2"] == "waiting" and statuses["broken-1"] == "failed"
    assert "parent-3~0" in ok(summed) and "cli_parent" not in ok(summed)
    child_run = doc(child)
    assert child_run["parent_id"] == "parent-3"
    assert [s["name"] for s in child_run["steps"]] == ["cli_add", "cli_add"]
    human = ok(parent)
    assert "children" in human and "parent-3~0" in human and "completed" in human
    assert doc(result)["result"] == 7
    assert failed.returncode == 3 and "FatalError: boom" in failed.stdout
    assert doc(waiting) == {"status": "waiting"}
    events = lines(ok(followed))
    assert events[-1]["kind"] == "run_completed"
    assert [e["index"] for e in events] == list(range(len(events)))
    assert ok(streamed) == 'waiting for approval{"order":{"n":1}}\n\x00raw\n'
    by_name = {wf["name"]: wf["runs"] for wf in doc(counts)["workflows"]}
    assert by_name["cli_approval"]["waiting"] == 2 and by_name["cli_broken"]["failed"] == 1
    assert "no-such" in one_error_line(missing, "RunNotFoundError")
    listed_schedules = doc(schedules)["schedules"]
    assert [s["id"] for s in listed_schedules] == ["hourly", "weekly"]
    first = listed_schedules[0]
    assert (first["workflow"], first["cron"], first["args"], first["timezone"]) == (
        "cli_summed", "0 * * * *", [2, 3], "Europe/Berlin"
    )  # fmt: skip
    assert (first["overlap"], first["paused"], first["metadata"]) == (
        "buffer_one",
        False,
        {"team": "ops"},
    )
    assert first["next_time"] is not None and listed_schedules[1]["paused"] is True
    ((tick_run, outcome),) = [(t["run_id"], t["outcome"]) for t in first["recent"]]
    assert tick_run.startswith("hourly@") and outcome == "started"
    shown = ok(hourly)
    assert "0 * * * *" in shown and "Europe/Berlin" in shown and tick_run in shown
    assert "hourly" in ok(schedule_table) and "weekly" in ok(schedule_table)
    assert "nightly" in one_error_line(no_schedule, "ScheduleNotFoundError")
    assert file_hashes(directory) == before


def test_reads_while_an_engine_owns_the_file(store: tuple[Path, str]) -> None:
    directory, db = store
    # Opened with no engine on the file: it sees the run end once the server has started.
    result = cli_process("runs", "result", "ap-2", "--db", db, "--wait", "120", "--json")
    sqlite = db.startswith("sqlite:")
    with serving(db, token="s3cret") as url:
        assert (directory / "runs.db-wal").exists() or not sqlite
        key = ["--token", "s3cret"]
        unauthorized = cli("runs", "list", url=url)
        one_error_line(unauthorized, "Unauthorized")
        from_env = doc(cli("runs", "list", "--json", url=url, env={"ACTORFLOW_TOKEN": "s3cret"}))
        assert "ap-2" in [r["id"] for r in from_env["runs"]]
        follow = cli_process("runs", "events", "ap-3", "--db", db, "--follow", "--json")
        assert follow.stdout is not None
        while orjson.loads(follow.stdout.readline())["kind"] != "wait_started":
            pass
        ok(cli("runs", "send-event", "ap-2", "approve", '"ann"', *key, url=url))
        ok(cli("runs", "send-event", "ap-3", "approve", '"cy"', *key, url=url))
        answer, errors = result.communicate(timeout=60)
        assert result.returncode == 0, errors
        assert orjson.loads(answer) == {"status": "completed", "result": {"order": {"n": 2},
                                        "by": "ann"}, "error": None}  # fmt: skip
        rest, errors = follow.communicate(timeout=60)
        assert follow.returncode == 0, errors
        assert lines(rest)[-1]["kind"] == "run_completed"
        # The same documents from the file as from the server (the server read last, so
        # that its readers have seen the last commit before the files are hashed).
        commands = (["runs", "list"], ["runs", "describe", "ap-3"], ["runs", "result", "ap-3"],
                    ["runs", "events", "ap-3"], ["schedules", "list"],
                    ["schedules", "describe", "hourly"])  # fmt: skip
        from_file = cli_many(*([*c, "--db", db, "--json"] for c in commands))
        from_server = cli_many(*([*c, "--json", *key] for c in commands), url=url)
        for command, mine, theirs in zip(commands, from_file, from_server, strict=True):
            assert ok(mine) == ok(theirs), command
        before = file_hashes(directory)
        assert {"runs.db", "runs.db-wal", "runs.db-shm"} <= set(before) or not sqlite
        reads = cli_many(
            ["runs", "describe", "ap-2", "--db", db],
            ["runs", "stream", "ap-3", "--db", db, "--json"],
            ["workflows", "list", "--db", db],
            ["schedules", "list", "--db", db],
            ["schedules", "describe", "weekly", "--db", db, "--json"],
        )
        assert all(ok(read) for read in reads)
        assert file_hashes(directory) == before


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.db'}"

    async def create() -> None:
        async with af.Engine(db, workflows=[]):
            pass

    asyncio.run(create())
    runs, schedules, workflows, as_json = cli_many(
        ["runs", "list", "--db", db],
        ["schedules", "list", "--db", db],
        ["workflows", "list", "--db", db],
        ["schedules", "list", "--db", db, "--json"],
    )
    assert ok(runs) == "no runs\n" and ok(schedules) == "no schedules\n"
    assert ok(workflows) == "no workflows\n"
    assert doc(as_json) == {"schedules": []}


@PG
def test_the_postgresql_reader_reads_and_cannot_write(pg_url: str) -> None:
    async def populate() -> None:
        async with af.Engine(pg_url) as engine:
            await (await engine.start(flows.cli_summed, 1, 2, id="summed")).result(timeout=30)
            await engine.create_schedule("pg-nightly", flows.cli_summed, "0 3 * * *", args=(1, 1))

    with pytest.raises(StoreReadError, match="holds no actorflow store"):
        StoreReader(pg_url).__enter__()
    asyncio.run(populate())
    with StoreReader(pg_url) as reader:
        assert [run.id for run in reader.list_runs()] == ["summed"]
        assert reader.run_info("summed").result == 4
        (schedule,) = reader.list_schedules()
        assert (schedule.id, schedule.cron, schedule.args) == ("pg-nightly", "0 3 * * *", [1, 1])
        assert reader.schedule("pg-nightly") == schedule
        with pytest.raises(af.ScheduleNotFoundError):
            reader.schedule("nope")
        with pytest.raises(StoreReadError, match="read-only transaction"):
            reader._db._fetchall("DELETE FROM runs")  # type: ignore[attr-defined]
    assert PostgresDatabase(pg_url).query("SELECT id FROM runs") == [("summed",)]
