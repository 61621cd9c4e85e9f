"""Shared fixtures: every engine test runs on memory:// and on a SQLite file, under uvloop."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

import actorflow as af


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
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, handler.messages


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL; tests that take it run once per backend."""
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'actorflow.db'}"


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
