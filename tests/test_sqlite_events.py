"""The SQLite store does not write a run's plain `run_created` entry (its row implies it);
every read of a log puts it back, so readers see the log the memory store keeps."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import actorflow as af
from actorflow._store._sqlite_reader import SQLiteReader

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@af.step
async def implied_double(x: int) -> int:
    return 2 * x


@af.workflow
async def implied_flow(x: int) -> int:
    return await implied_double(x) + await implied_double(x + 1)


@af.workflow
async def implied_waiter() -> Any:
    return await af.wait_for_event("go")


@af.workflow
async def implied_parent(x: int) -> int:
    child = await af.start(implied_flow, x)
    result: int = await child.result()
    return result


def stored(path: Path, run_id: str) -> list[tuple[int, str, bytes | None]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT idx, kind, data FROM events WHERE run_id=? ORDER BY idx", (run_id,)
        ).fetchall()
    return [(idx, kind, data) for idx, kind, data in rows]


async def log_of(run: af.Run[Any]) -> list[tuple[int, str, str | None]]:
    return [(e.index, e.kind, e.name) async for e in run.events(follow=False)]


async def memory_log(workflow: Any, *args: Any) -> list[tuple[int, str, str | None]]:
    async with af.Engine("memory://") as engine:
        run = await engine.start(workflow, *args, id="same")
        await run.result()
        return await log_of(run)


async def test_a_plain_creation_is_not_stored_and_every_read_puts_it_back(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with af.Engine(f"sqlite:///{path}") as engine:
        run = await engine.start(implied_flow, 3, id="same")
        assert await run.result() == 14
        live = await log_of(run)
        info = await run.info()
    raw = stored(path, "same")
    assert [kind for _, kind, _ in raw] == [
        "step_started", "step_completed", "step_started", "step_completed", "run_completed",
    ]  # fmt: skip
    assert [idx for idx, _, _ in raw] == [1, 2, 3, 4, 5]
    expected = await memory_log(implied_flow, 3)
    assert expected[0] == (0, "run_created", "implied_flow")
    assert live == expected

    async with af.Engine(f"sqlite:///{path}") as engine:  # read back from the file
        reopened = engine.get_run("same")
        assert await log_of(reopened) == expected
        tail = [(e.index, e.kind) async for e in reopened.events(after=0, follow=False)]
        assert tail == [(idx, kind) for idx, kind, _ in expected[1:]]

    reader = SQLiteReader(str(path))  # the command line's reads
    reader.open()
    try:
        events = reader.load_events("same")
    finally:
        reader.close()
    assert [(e.idx, e.kind, e.name) for e in events] == expected
    created = events[0]
    assert (created.generation, created.seq, created.data) == (0, None, None)
    assert abs(created.at - info.created_at.timestamp()) < 1e-5


async def test_an_unfinished_run_replays_from_its_implied_creation(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with af.Engine(f"sqlite:///{path}") as engine:
        run = await engine.start(implied_waiter, id="waiting")
        await run.send_event("early", None)  # a stored entry beside the wait, none at 0
    assert 0 not in {idx for idx, _, _ in stored(path, "waiting")}
    async with af.Engine(f"sqlite:///{path}") as engine:
        run = engine.get_run("waiting")
        await run.send_event("go", {"n": 1})
        assert await run.result() == {"n": 1}
        kinds = [kind for _, kind, _ in await log_of(run)]
    assert kinds[0] == "run_created" and kinds.count("run_created") == 1
    assert kinds[-1] == "run_completed"
    assert stored(path, "waiting")[0][0] == 1


async def test_a_creation_with_data_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with af.Engine(f"sqlite:///{path}") as engine:
        run = await engine.start(implied_flow, 1, id="traced", trace_context=TRACE)
        await run.result()
        log = await log_of(run)
    raw = stored(path, "traced")
    assert raw[0][:2] == (0, "run_created") and raw[0][2] is not None
    assert TRACE["traceparent"].encode() in raw[0][2]
    assert [kind for _, kind, _ in log].count("run_created") == 1


async def test_a_child_creation_is_implied_and_the_parents_entry_stored(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with af.Engine(f"sqlite:///{path}") as engine:
        parent = await engine.start(implied_parent, 2, id="parent")
        assert await parent.result() == 10
        with contextlib.closing(sqlite3.connect(path)) as conn:
            [(child_id,)] = conn.execute("SELECT id FROM runs WHERE parent_id='parent'")
        child_log = await log_of(engine.get_run(child_id))
    assert "child_started" in [kind for _, kind, _ in stored(path, "parent")]
    assert stored(path, child_id)[0][1] == "step_started"
    assert child_log[0] == (0, "run_created", "implied_flow")
    assert child_log == await memory_log(implied_flow, 2)


async def test_a_stored_creation_of_an_earlier_version_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with af.Engine(f"sqlite:///{path}") as engine:
        run = await engine.start(implied_flow, 3, id="old")
        await run.result()
        expected = await log_of(run)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        workflow, created_at = conn.execute(
            "SELECT workflow, created_at FROM runs WHERE id='old'"
        ).fetchone()
        conn.execute(
            "INSERT INTO events VALUES ('old', 0, 0, 'run_created', NULL, ?, NULL, ?)",
            (workflow, created_at),
        )
    async with af.Engine(f"sqlite:///{path}") as engine:
        assert await log_of(engine.get_run("old")) == expected


def schema_version(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return str(version)


async def test_files_are_marked_version_2_which_earlier_versions_refuse(tmp_path: Path) -> None:
    """An actorflow from before the implied entry checks for version 1 and refuses any
    other (it would read logs without their entry 0 and write a second one): a new file
    is version 2, a version 1 file is read as it is and marked 2, a later one refused."""
    path = tmp_path / "runs.db"
    async with af.Engine(f"sqlite:///{path}") as engine:
        run = await engine.start(implied_flow, 3, id="v1")
        await run.result()
        expected = await log_of(run)
    assert schema_version(path) == "2"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    async with af.Engine(f"sqlite:///{path}") as engine:
        assert await log_of(engine.get_run("v1")) == expected
    assert schema_version(path) == "2"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    refused = pytest.raises(af.StoreFileError, match="schema version 3; this actorflow reads")
    with refused:
        async with af.Engine(f"sqlite:///{path}"):
            pass
    assert schema_version(path) == "3"
