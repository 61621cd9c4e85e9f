"""Shared fixtures: every engine test runs on memory://, on a SQLite file and on PostgreSQL,
under uvloop.

PostgreSQL: `ACTORFLOW_TEST_PG` unset, the tests start a throwaway server of their own
(tests/pg_cluster.py; the machine needs the server binaries, which `.ci/run` installs),
so `pytest` alone tests PostgreSQL wherever they are installed, and fails loudly where
they are not. `ACTORFLOW_TEST_PG=postgresql://...` uses that server instead;
`ACTORFLOW_TEST_PG=0` leaves PostgreSQL out (its tests are deselected, and said so).
Each test gets a schema of its own on the one server, dropped after it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

import actorflow as af
from actorflow import _build
from tests.databases import Database, PostgresDatabase, SQLiteDatabase
from tests.pg_cluster import Cluster

PG_SETTING = os.environ.get("ACTORFLOW_TEST_PG", "")
POSTGRES_OFF = PG_SETTING == "0"
STORES = ["memory", "sqlite"] if POSTGRES_OFF else ["memory", "sqlite", "postgres"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server")
    config.addinivalue_line(
        "markers",
        "sources: injects a fault by patching the engine's Python code, which a compiled "
        "build does not run: there, the test runs in a pytest of its own on the sources "
        "(ACTORFLOW_PURE=1) and passes if that one does",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not (_build.COMPILED and pyfuncitem.get_closest_marker("sources")):
        return None
    # The store parameters exist only with a server: hand it this session's.
    server = "0" if POSTGRES_OFF else pyfuncitem._request.getfixturevalue("pg_server")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid],
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "ACTORFLOW_PURE": "1", "ACTORFLOW_TEST_PG": server},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.split()[-4:-2] == ["1", "passed"], (
        done.stdout + done.stderr
    )
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not POSTGRES_OFF:
        return
    off = [item for item in items if item.get_closest_marker("postgres")]
    if off:
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]
        config.hook.pytest_deselected(items=off)


def pytest_report_header(config: pytest.Config) -> str:
    if POSTGRES_OFF:
        return "PostgreSQL: OFF (ACTORFLOW_TEST_PG=0): its tests are deselected"
    if PG_SETTING:
        return "PostgreSQL: the server of ACTORFLOW_TEST_PG"
    return "PostgreSQL: a throwaway server (tests/pg_cluster.py)"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run async tests on uvloop, the loop `af.run` uses."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def no_gc() -> Iterator[None]:
    """The cyclic collector collected, then off for the test: what a test's own
    `gc.collect()` then frees is what reference counting alone did not."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _AbandonedWorkflowTasks(logging.Handler):
    """Records workflow tasks garbage-collected while pending: an actor that left
    without stopping its workflow (`Task was destroyed but it is pending!`)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Task was destroyed but it is pending" in message:
            self.messages.append(message)


@pytest.fixture(autouse=True)
def no_abandoned_workflow_tasks() -> Iterator[None]:
    """Fail a test after which an actor's workflow was dropped instead of stopped."""
    handler = _AbandonedWorkflowTasks()
    logger = logging.getLogger("actorflow.workflow")
    logger.addHandler(handler)
    try:
        yield
        gc.collect()  # a dropped workflow task is reported when it is collected
        # What survived is live: later tests' collections need not scan it again. A full
        # collection of the heap the whole suite builds took 0.25 s per test, a third of
        # the suite's time.
        gc.freeze()
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, handler.messages


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of the PostgreSQL server the tests use (see the module docstring)."""
    assert not POSTGRES_OFF, "a PostgreSQL test was not deselected"
    if PG_SETTING:
        yield PG_SETTING
        return
    cluster = Cluster()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


async def admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A PostgreSQL store URL with a fresh schema of its own (created by the store)."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield with_query(pg_server, f"schema={schema}")
    asyncio.run(admin(pg_server, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL; tests that take it run once per backend."""
    if request.param == "memory":
        return "memory://"
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'actorflow.db'}"


@pytest.fixture(params=[s for s in STORES if s != "memory"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A durable store's database, which tests read and alter beside the engine; tests
    that take it run once per durable backend."""
    if request.param == "postgres":
        return PostgresDatabase(request.getfixturevalue("pg_url"))
    return SQLiteDatabase(tmp_path / "actorflow.db")


@pytest.fixture
def durable_url(database: Database) -> str:
    """A durable store's URL (SQLite, PostgreSQL), for tests of a store that outlives
    its engine; tests that take it run once per durable backend."""
    return database.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL, for tests that need a store that outlives the engine."""
    return f"sqlite:///{tmp_path / 'actorflow.db'}"


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[af.Engine]:
    async with af.Engine(store_url) as engine:
        yield engine


async def eventually(
    check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005
) -> Any:
    """Wait until `check()` (sync or async) returns a truthy value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def wait_for_status(run: af.Run[Any], *statuses: af.RunStatus, timeout: float = 5.0) -> None:
    """Wait until the run has one of `statuses`."""

    async def check() -> bool:
        return await run.status() in statuses

    await eventually(check, timeout)
