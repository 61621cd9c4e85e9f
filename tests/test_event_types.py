"""Typed event and hook payloads are refused where they enter when the expected type is
known then: declared by the workflow (`@af.workflow(events=)`, on any engine), or that of
the wait the run is in (`wait_for_event(type=)`, `create_hook(type=)`). A refusal is an
`af.ValidationError` (HTTP 422 with argument, path and reason) and stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import actorflow as af
from actorflow.http import asgi_app

from . import typed_program as tp
from .conftest import eventually

TIMEOUT = 30.0
GOOD = {"by": "bob", "at": "2026-01-02T03:04:05Z"}
BAD = {"by": 7, "at": "2026-01-02T03:04:05Z"}


@af.workflow(name="event_types.declared", events={"approval": tp.Approval})
async def declared() -> list[Any]:
    await af.wait_for_event("go")
    approval = await af.wait_for_event("approval")  # decoded into the declared type
    return [type(approval).__name__, approval.by, approval.at.year]


@af.workflow(name="event_types.waiting")
async def waiting() -> list[Any]:
    approval = await af.wait_for_event("approval", type=tp.Approval)
    untyped = await af.wait_for_event("approval")  # no type expected: any JSON value
    return [approval.by, untyped]


@af.workflow(name="event_types.hooked")
async def hooked(token: str) -> list[Any]:
    hook = af.create_hook(token, type=tp.Approval)
    approval = await hook
    return [type(approval).__name__, approval.by]


async def _log(run: af.Run[Any]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.name) async for e in run.events(follow=False)]


async def _waits_for(run: af.Run[Any], key: str) -> None:
    """Until the run's log shows it waiting for `key` (an event type, or `hook:<token>`)."""

    async def waiting() -> bool:
        log = await _log(run)
        return bool(log) and log[-1] == ("wait_started", key)

    await eventually(waiting, TIMEOUT)


def _check_refusal(exc: af.ValidationError, what: str) -> None:
    assert (exc.argument, exc.path, exc.reason) == (None, ".by", "Expected `str`, got `int`")
    assert what in str(exc)


async def test_a_declared_event_type_refuses_a_bad_payload_before_the_run_waits(
    engine: af.Engine,
) -> None:
    run = await engine.start(declared)
    await _waits_for(run, "go")
    before = await _log(run)
    with pytest.raises(af.ValidationError) as caught:
        await run.send_event("approval", BAD)
    _check_refusal(caught.value, "'approval' event of workflow 'event_types.declared'")
    with pytest.raises(af.ValidationError):
        await run.send_event("approval", "not an object")
    assert await _log(run) == before  # nothing stored
    await run.send_event("approval", GOOD)  # buffered: the run waits for "go"
    await run.send_event("go")
    assert await run.result(timeout=TIMEOUT) == ["Approval", "bob", 2026]


def test_declared_event_types_are_checked_when_the_workflow_is_declared() -> None:
    async def body() -> None: ...

    with pytest.raises(af.InvalidNameError):
        af.workflow(name="event_types.reserved", events={"hook:x": int})(body)
    with pytest.raises(TypeError):
        af.workflow(name="event_types.listed", events=["approval"])(body)  # type: ignore[arg-type]


async def test_the_wait_the_run_is_in_refuses_a_payload_that_does_not_fit(
    engine: af.Engine,
) -> None:
    run = await engine.start(waiting)
    await _waits_for(run, "approval")
    before = await _log(run)
    with pytest.raises(af.ValidationError) as caught:
        await run.send_event("approval", BAD)
    _check_refusal(caught.value, "'approval' event")
    assert await _log(run) == before
    await run.send_event("approval", GOOD)
    await _waits_for(run, "approval")  # the second, untyped wait takes anything
    await run.send_event("approval", BAD)
    assert await run.result(timeout=TIMEOUT) == ["bob", BAD]


async def test_a_typed_hook_refuses_a_payload_that_does_not_fit_while_the_run_waits(
    engine: af.Engine,
) -> None:
    run = await engine.start(hooked, "typed-hook")
    await _waits_for(run, "hook:typed-hook")
    before = await _log(run)
    with pytest.raises(af.ValidationError) as caught:
        await engine.resume_hook("typed-hook", BAD)
    _check_refusal(caught.value, "hook payload")
    assert await _log(run) == before
    await engine.resume_hook("typed-hook", GOOD)
    assert await run.result(timeout=TIMEOUT) == ["Approval", "bob"]


@pytest.fixture
async def client(engine: af.Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
        yield http


async def test_http_refuses_a_payload_that_does_not_fit_with_422(
    engine: af.Engine, client: httpx.AsyncClient
) -> None:
    declared_run = await engine.start(declared)
    hook_run = await engine.start(hooked, "http-typed-hook")
    await _waits_for(hook_run, "hook:http-typed-hook")
    for response in [
        await client.post(f"/v1/runs/{declared_run.id}/events/approval", json=BAD),
        await client.post("/v1/hooks/http-typed-hook", json=BAD),
    ]:
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["type"] == "ValidationError"
        assert (error["argument"], error["path"]) == (None, ".by")
        assert error["reason"] == "Expected `str`, got `int`"
    ok = await client.post(f"/v1/runs/{declared_run.id}/events/approval", json=GOOD)
    assert ok.status_code == 202, ok.text
    assert (await client.post("/v1/hooks/http-typed-hook", json=GOOD)).status_code == 202
    assert await hook_run.result(timeout=TIMEOUT) == ["Approval", "bob"]


@pytest.mark.postgres
async def test_a_client_engine_checks_the_declared_type_before_routing_the_event(
    pg_url: str,
) -> None:
    async with (
        af.Engine(pg_url, workflows=[declared]) as owner,
        af.Engine(pg_url, workflows=[declared], execute=False) as sender,
    ):
        run = await owner.start(declared)
        await _waits_for(run, "go")
        before = await _log(run)
        remote = sender.get_run(run.id)
        with pytest.raises(af.ValidationError) as caught:
            await remote.send_event("approval", BAD)
        _check_refusal(caught.value, "'approval' event")
        assert await _log(run) == before
        await remote.send_event("approval", GOOD)
        await remote.send_event("go")
        assert await run.result(timeout=TIMEOUT) == ["Approval", "bob", 2026]
