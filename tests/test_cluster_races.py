"""Many engines on one PostgreSQL database: what two engines do at the same instant is
decided by the database, as one engine decides it. Each race is forced by holding a
transaction open from the test until both engines' commits wait on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

import actorflow as af
from actorflow._store._postgres import PostgresStore, split_url
from tests.conftest import eventually, wait_for_status
from tests.databases import PostgresDatabase
from tests.test_cluster_routing import WORKFLOWS, hooked

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def held(url: str, sql: str) -> AsyncIterator[None]:
    """A transaction that ran `sql` and stays open (uncommitted) until the block ends,
    when it rolls back."""
    dsn, schema = split_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(sql)
        yield
    finally:
        await transaction.rollback()
        await conn.close()


def writers_waiting(db: PostgresDatabase, *engines: af.Engine) -> int:
    """How many of the engines' writer connections wait for a lock."""
    pids = []
    for engine in engines:
        store = engine.store
        assert isinstance(store, PostgresStore)
        pids.append(store.transactions.server_pid())
    found = db.query(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(?) AND wait_event_type = 'Lock'",
        (pids,),
    )
    return int(found[0][0])


async def test_two_engines_taking_one_hook_token_at_once_one_is_refused(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with (
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=5) as one,
        af.Engine(pg_url, workflows=WORKFLOWS, lease_timeout=5) as other,
    ):
        # An uncommitted row of the token holds both engines' commits taking it until
        # both have checked that no run holds it (the check cannot see this row).
        async with held(pg_url, "INSERT INTO hooks VALUES ('same-instant', 'no-run', 0)"):
            first = asyncio.create_task(one.start(hooked, "same-instant"))
            await eventually(lambda: writers_waiting(db, one) == 1, timeout=10)
            second = asyncio.create_task(other.start(hooked, "same-instant"))
            await eventually(lambda: writers_waiting(db, one, other) == 2, timeout=10)
        winner, loser = await asyncio.wait_for(first, 10), await asyncio.wait_for(second, 10)
        await wait_for_status(winner, af.RunStatus.WAITING, timeout=10)
        with pytest.raises(af.RunFailedError, match="HookConflictError"):
            await loser.result(timeout=10)
        assert db.query("SELECT run_id FROM hooks WHERE token = 'same-instant'") == [(winner.id,)]
        await other.resume_hook("same-instant", "to the winner")
        assert await winner.result(timeout=10) == "to the winner"
