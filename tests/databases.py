"""A store's database read (and altered) directly, beside the engine: SQLite or PostgreSQL.

Tests that look at rows, or plant a trigger that refuses inserts, take a `Database`
from the `database` fixture and run once per durable backend. SQL is written with
`?` placeholders (they become `$1, $2, ...` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from actorflow._store._postgres import split_url


class Database(Protocol):
    kind: str
    url: str

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of `sql`, as tuples."""

    def execute(self, sql: str) -> None:
        """Run one or more statements, committed."""


class SQLiteDatabase:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            conn.executescript(sql)


def _numbered(sql: str) -> str:
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class PostgresDatabase:
    """The store's schema on a PostgreSQL server, through a connection per call (on a
    thread with a loop of its own, so that sync helpers work inside async tests)."""

    kind = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self._dsn, self.schema = split_url(url)

    def _run(self, sql: str, params: tuple[Any, ...], fetch: bool) -> list[tuple[Any, ...]]:
        import asyncpg

        async def go() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self._dsn, server_settings={"search_path": self.schema})
            try:
                if not fetch:
                    await conn.execute(sql)
                    return []
                return [tuple(row) for row in await conn.fetch(_numbered(sql), *params)]
            finally:
                await conn.close()

        with ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, go()).result()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._run(sql, params, fetch=True)

    def execute(self, sql: str) -> None:
        self._run(sql, (), fetch=False)


class RefusedInserts:
    """A trigger that makes inserts into `table` matching `when` (SQL on NEW) fail, as a
    full disk would, with `message`, until `stop()`."""

    def __init__(
        self,
        db: Database,
        when: str,
        table: str = "events",
        message: str = "disk full (simulated)",
    ) -> None:
        self._db = db
        if db.kind == "sqlite":
            db.execute(
                f"""
                CREATE TABLE fail_switch (on_ INTEGER);
                INSERT INTO fail_switch VALUES (1);
                CREATE TRIGGER refuse BEFORE INSERT ON {table}
                WHEN ({when}) AND (SELECT on_ FROM fail_switch) = 1
                BEGIN SELECT RAISE(ABORT, '{message}'); END;
                """
            )
        else:
            db.execute(
                f"""
                CREATE TABLE fail_switch (on_ INTEGER);
                INSERT INTO fail_switch VALUES (1);
                CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF ({when}) AND (SELECT on_ FROM fail_switch) = 1 THEN
                        RAISE EXCEPTION '{message}';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON {table}
                FOR EACH ROW EXECUTE FUNCTION refuse();
                """
            )

    def stop(self) -> None:
        self._db.execute("UPDATE fail_switch SET on_ = 0")
