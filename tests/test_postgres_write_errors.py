"""The PostgreSQL writer tells a lost connection from a call asyncpg cannot make: it raises
`InterfaceError` for both (a closed connection; a statement given the wrong number of
arguments, an operation while another is in progress). Only the first is for
reconnecting; the second fails the batch at once, as any failed commit (README, "Failed
writes"), instead of reconnecting and writing it again forever. Likewise for its
`InternalClientError`, raised both for a connection the server ended mid-operation
(before asyncpg has seen it close) and for a fault of its own on one that works."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

import actorflow as af
from actorflow._store._postgres import PostgresStore
from actorflow._store._postgres_statements import Parts
from actorflow._store._postgres_writer import connection_lost
from tests.databases import PostgresDatabase

pytestmark = pytest.mark.postgres

INT_MAX = 2**31 - 1


@af.step(name="pg_write_errors.double")
async def double(x: int) -> int:
    return 2 * x


@af.workflow(name="pg_write_errors.doubles")
async def doubles(x: int) -> int:
    return await double(x)


async def test_a_batch_asyncpg_cannot_send_fails_without_reconnecting(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement one argument short (a bug in building it) makes asyncpg raise
    `InterfaceError` on a connection that is fine: the start whose commit it was gets
    `StoreWriteError`, the writer keeps its connection, and later commits go through."""
    async with af.Engine(pg_url, workflows=[doubles]) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        statement = Parts.statement

        def one_short(self: Parts) -> tuple[str, list[Any]]:
            sql, args = statement(self)
            return sql, args[:-1]

        monkeypatch.setattr(Parts, "statement", one_short)
        async with asyncio.timeout(20):
            with pytest.raises(af.StoreWriteError, match="InterfaceError"):
                await engine.start(doubles, 1, id="refused")
        monkeypatch.undo()

        assert store.transactions.reconnects == 0
        run = await engine.start(doubles, 21)
        assert await run.result(timeout=10) == 42
        assert store.transactions.reconnects == 0
        assert [r.id for r in await engine.list_runs()] == [run.id]


async def test_a_value_the_server_refuses_leaves_the_stored_run_as_it_was(pg_url: str) -> None:
    """A restart of a run at the last generation an INTEGER holds: its next generation
    cannot be stored. The restart gets `StoreWriteError`, the stored run is unchanged."""
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[doubles]) as engine:
        run = await engine.start(doubles, 1)
        assert await run.result(timeout=10) == 2
        db.execute(f"UPDATE runs SET generation = {INT_MAX} WHERE id = '{run.id}'")
        events = db.query("SELECT count(*) FROM events WHERE run_id = ?", (run.id,))

        async with asyncio.timeout(20):
            with pytest.raises(af.StoreWriteError, match="int32"):
                await run.restart()

        assert db.query("SELECT status, generation FROM runs WHERE id = ?", (run.id,)) == [
            ("completed", INT_MAX)
        ]
        assert db.query("SELECT count(*) FROM events WHERE run_id = ?", (run.id,)) == events


async def test_interface_errors_are_a_lost_connection_only_on_a_closed_one(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url.split("?")[0])
    try:
        with pytest.raises(asyncpg.InterfaceError, match="expects 1 argument") as wrong:
            await conn.fetchval("SELECT $1::int")
        assert not connection_lost(wrong.value, conn)
        assert await conn.fetchval("SELECT 1") == 1  # still usable
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InterfaceError, match="closed") as closed:
        await conn.fetchval("SELECT 1")
    assert connection_lost(closed.value, conn)


def _end_writer_connection(db: PostgresDatabase, store: PostgresStore) -> None:
    """End the server's side of the writer's connection, and wait until it is gone (a
    blocking call: the loop does not see the connection close meanwhile)."""
    pid = store.transactions.server_pid()
    assert db.query("SELECT pg_terminate_backend(?, 10000)", (pid,)) == [(True,)]


async def test_an_internal_error_on_a_connection_that_answers_fails_the_batch(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer lost its connection mid-commit and asks, on a new one, whether the
    batch committed; asyncpg raises `InternalClientError` there (a fault of its own,
    injected here) on a connection that still answers: the batch fails (asked again, it
    would fail again, for ever), and the writer carries on with that connection."""
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[doubles]) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        transactions = store.transactions
        asked: list[asyncpg.Connection] = []

        async def faulty(conn: asyncpg.Connection, batch: Any) -> bool:
            asked.append(conn)
            raise asyncpg.InternalClientError("a fault of asyncpg's own")

        monkeypatch.setattr(transactions, "_committed", faulty)
        _end_writer_connection(db, store)
        async with asyncio.timeout(20):
            with pytest.raises(af.StoreWriteError, match="InternalClientError"):
                await engine.start(doubles, 1, id="in-doubt")
        monkeypatch.undo()

        assert len(asked) == 1 and not asked[0].is_closed()
        assert transactions.reconnects == 1
        run = await engine.start(doubles, 21)
        assert await run.result(timeout=10) == 42
        assert transactions.reconnects == 1  # on the connection the error came from


async def test_an_internal_error_on_a_connection_the_server_ended_is_a_lost_one(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg reports a connection the server ended mid-operation as an internal error,
    before the connection says it is closed: the writer asks again on a new one."""
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[doubles]) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        transactions = store.transactions
        committed = transactions._committed
        asked: list[bool] = []

        async def ended_meanwhile(conn: asyncpg.Connection, batch: Any) -> bool:
            if not asked:
                _end_writer_connection(db, store)
                asked.append(conn.is_closed())
                raise asyncpg.InternalClientError("the connection ended mid-operation")
            asked.append(conn.is_closed())
            return await committed(conn, batch)

        monkeypatch.setattr(transactions, "_committed", ended_meanwhile)
        _end_writer_connection(db, store)
        async with asyncio.timeout(20):
            run = await engine.start(doubles, 21, id="in-doubt")
        monkeypatch.undo()

        assert asked == [False, False]  # not yet seen closed; asked again on another
        assert transactions.reconnects == 2
        assert await run.result(timeout=10) == 42
        assert db.query("SELECT count(*) FROM runs WHERE id = 'in-doubt'") == [(1,)]


async def test_a_commit_whose_connection_the_server_ended_mid_operation_is_written_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same internal error raised by the commit itself: the writer reconnects, finds
    the batch not committed, and writes it again."""
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[doubles]) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        transactions = store.transactions
        send = transactions._send
        closed: list[bool] = []

        async def ended_meanwhile(conn: asyncpg.Connection, *args: Any) -> Any:
            if not closed:
                _end_writer_connection(db, store)
                closed.append(conn.is_closed())
                raise asyncpg.InternalClientError("the connection ended mid-operation")
            return await send(conn, *args)

        monkeypatch.setattr(transactions, "_send", ended_meanwhile)
        async with asyncio.timeout(20):
            run = await engine.start(doubles, 21, id="written-again")
        monkeypatch.undo()

        assert closed == [False]
        assert transactions.reconnects == 1
        assert await run.result(timeout=10) == 42
        assert db.query(
            "SELECT count(*) FROM events WHERE run_id = 'written-again' AND kind = 'run_created'"
        ) == [(1,)]
