"""The HTTP API's routes in-process (httpx.ASGITransport): shapes, status codes, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import actorflow as af
from actorflow.http import asgi_app
from tests import http_workflows  # noqa: F401  (the workflows these routes start)
from tests.conftest import wait_for_status

S = af.RunStatus


@pytest.fixture
async def client(engine: af.Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
        yield http


def error_type(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["message"]
    kind: str = body["error"]["type"]
    return kind


async def test_start_then_result_and_run(client: httpx.AsyncClient) -> None:
    started = await client.post("/v1/workflows/http_add/runs", json={"args": [3, 4]})
    assert started.status_code == 201
    run = started.json()
    assert run["workflow"] == "http_add" and run["args"] == [3, 4]
    assert run["status"] in ("queued", "running", "completed")
    result = await client.get(f"/v1/runs/{run['id']}/result", params={"wait": 5})
    assert result.status_code == 200
    assert result.json() == {"status": "completed", "result": 7, "error": None}
    got = (await client.get(f"/v1/runs/{run['id']}")).json()
    assert set(got) == {
        "id", "workflow", "status", "args", "result", "error", "metadata", "parent_id",
        "created_at", "started_at", "completed_at", "steps", "steps_done", "streams",
    }  # fmt: skip
    assert got["steps_done"] == 1 and got["streams"] == []
    assert got["status"] == "completed" and got["result"] == 7 and got["parent_id"] is None
    assert got["created_at"].endswith("+00:00")
    [step] = got["steps"]
    assert step["name"] == "http_double" and step["status"] == "completed"
    assert step["result"] == 6 and step["attempts"] == 1


async def test_start_with_id_is_idempotent_or_conflicts(client: httpx.AsyncClient) -> None:
    body = {"args": [1, 2], "id": "order-1", "metadata": {"who": "me"}}
    first = await client.post("/v1/workflows/http_add/runs", json=body)
    assert first.status_code == 201 and first.json()["metadata"] == {"who": "me"}
    again = await client.post("/v1/workflows/http_add/runs", json=body)
    assert again.status_code == 200 and again.json()["id"] == "order-1"
    conflict = await client.post("/v1/workflows/http_add/runs", json={**body, "if_exists": "error"})
    assert conflict.status_code == 409 and error_type(conflict) == "RunAlreadyExistsError"


async def test_failed_run_result(client: httpx.AsyncClient) -> None:
    run = (await client.post("/v1/workflows/http_fail/runs", json={"args": ["no"]})).json()
    result = (await client.get(f"/v1/runs/{run['id']}/result?wait=5")).json()
    assert result["status"] == "failed" and result["result"] is None
    assert result["error"]["type"] == "FatalError" and result["error"]["message"] == "no"


async def test_result_without_wait_is_202_while_running(
    client: httpx.AsyncClient, engine: af.Engine
) -> None:
    run = (await client.post("/v1/workflows/http_approve/runs", json={"args": ["o"]})).json()
    pending = await client.get(f"/v1/runs/{run['id']}/result")
    assert pending.status_code == 202 and pending.json()["status"] in (
        "queued",
        "running",
        "waiting",
    )
    short = await client.get(f"/v1/runs/{run['id']}/result?wait=0.05")
    assert short.status_code == 202
    await wait_for_status(engine.get_run(run["id"]), S.WAITING)
    sent = await client.post(f"/v1/runs/{run['id']}/events/approval", json={"ok": True})
    assert sent.status_code == 202
    done = await client.get(f"/v1/runs/{run['id']}/result?wait=5")
    assert done.json()["result"] == {"order": "o", "decision": {"ok": True}}


async def test_batch_is_all_or_none(client: httpx.AsyncClient, engine: af.Engine) -> None:
    ok = await client.post(
        "/v1/workflows/http_add/runs/batch",
        json={"runs": [{"args": [1, 1], "id": "b1"}, {"args": [2, 2], "id": "b2"}]},
    )
    assert ok.status_code == 201 and [r["id"] for r in ok.json()["runs"]] == ["b1", "b2"]
    bad = await client.post(
        "/v1/workflows/http_add/runs/batch",
        json={"runs": [{"args": [1, 1], "id": "b3"}, {"args": [1], "id": "b4"}]},
    )
    assert bad.status_code == 422
    assert not await engine.get_run("b3").exists()
    mixed = await client.post(
        "/v1/workflows/http_add/runs/batch",
        json={"runs": [{"args": [1, 1], "id": "x"}, {"args": [1, 2]}]},
    )
    assert mixed.status_code == 400


async def test_list_runs_pages_with_cursor(client: httpx.AsyncClient) -> None:
    ids = []
    for i in range(5):
        ids.append(
            (await client.post("/v1/workflows/http_add/runs", json={"args": [i, 0]})).json()["id"]
        )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"workflow": "http_add", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/v1/runs", params=params)).json()
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    bad = await client.get("/v1/runs?status=sleepy")
    assert bad.status_code == 400


async def test_workflows_lists_counts(client: httpx.AsyncClient) -> None:
    run = (await client.post("/v1/workflows/http_add/runs", json={"args": [1, 1]})).json()
    await client.get(f"/v1/runs/{run['id']}/result?wait=5")
    body = (await client.get("/v1/workflows")).json()
    by_name = {w["name"]: w for w in body["workflows"]}
    assert by_name["http_add"]["runs"]["completed"] == 1
    assert by_name["http_sleeper"]["concurrency"] == 3
    assert set(by_name["http_add"]["runs"]) == {s.value for s in S}


async def test_control_routes(client: httpx.AsyncClient, engine: af.Engine) -> None:
    run = (await client.post("/v1/workflows/http_approve/runs", json={"args": ["c"]})).json()
    url = f"/v1/runs/{run['id']}"
    await wait_for_status(engine.get_run(run["id"]), S.WAITING)
    paused = await client.post(f"{url}/pause")
    assert paused.status_code == 200 and paused.json()["status"] in ("pausing", "paused")
    resumed = await client.post(f"{url}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] != "paused"
    terminated = await client.post(f"{url}/terminate")
    assert terminated.json() == {"id": run["id"], "status": "terminated"}
    again = await client.post(f"{url}/terminate")
    assert again.status_code == 409 and error_type(again) == "InvalidStateError"
    restarted = await client.post(f"{url}/restart", json={})
    assert restarted.status_code == 200
    await client.post(f"{url}/events/approval", json="yes")
    result = (await client.get(f"{url}/result?wait=5")).json()
    assert result["result"] == {"order": "c", "decision": "yes"}


async def test_hooks(client: httpx.AsyncClient, engine: af.Engine) -> None:
    run = (await client.post("/v1/workflows/http_hook/runs", json={"args": ["tok-1"]})).json()
    await wait_for_status(engine.get_run(run["id"]), S.WAITING)
    unknown = await client.post("/v1/hooks/nobody", json=1)
    assert unknown.status_code == 404 and error_type(unknown) == "HookNotFoundError"
    sent = await client.post("/v1/hooks/tok-1", json={"n": 1})
    assert sent.status_code == 202
    assert (await client.get(f"/v1/runs/{run['id']}/result?wait=5")).json()["result"] == {"n": 1}


async def test_events_json(client: httpx.AsyncClient) -> None:
    run = (await client.post("/v1/workflows/http_add/runs", json={"args": [2, 2]})).json()
    await client.get(f"/v1/runs/{run['id']}/result?wait=5")
    events = (await client.get(f"/v1/runs/{run['id']}/events")).json()["events"]
    assert [e["index"] for e in events] == list(range(len(events)))
    assert events[0]["kind"] == "run_created" and events[-1]["kind"] == "run_completed"
    assert set(events[0]) == {"index", "kind", "at", "generation", "seq", "name", "data"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "kind"),
    [
        ("get", "/v1/runs/nope", {}, 404, "RunNotFoundError"),
        ("get", "/v1/runs/nope/result?wait=1", {}, 404, "RunNotFoundError"),
        ("get", "/v1/runs/nope/events", {}, 404, "RunNotFoundError"),
        ("get", "/v1/runs/nope/stream", {}, 404, "RunNotFoundError"),
        ("post", "/v1/runs/nope/pause", {}, 404, "RunNotFoundError"),
        ("post", "/v1/runs/nope/events/x", {"json": 1}, 404, "RunNotFoundError"),
        (
            "post",
            "/v1/workflows/nope/runs",
            {"json": {"args": []}},
            404,
            "WorkflowNotRegisteredError",
        ),
        ("post", "/v1/workflows/http_add/runs", {"json": {"args": [1]}}, 422, "TypeError"),
        ("post", "/v1/workflows/http_add/runs", {"json": {"args": 1}}, 400, "BadRequest"),
        ("post", "/v1/workflows/http_add/runs", {"json": {"arg": []}}, 400, "BadRequest"),
        ("post", "/v1/workflows/http_add/runs", {"json": [1]}, 400, "BadRequest"),
        ("post", "/v1/workflows/http_add/runs", {"content": b"{nope"}, 415, "UnsupportedMediaType"),
        (
            "post",
            "/v1/workflows/http_add/runs",
            {"content": b"{nope", "headers": {"content-type": "application/json"}},
            400,
            "MalformedJSON",
        ),
        (
            "post",
            "/v1/workflows/http_add/runs",
            {"content": b"a=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            415,
            "UnsupportedMediaType",
        ),
        ("get", "/v1/runs/x/result?wait=abc", {}, 400, "BadRequest"),
        ("get", "/v1/runs?limit=0", {}, 400, "BadRequest"),
        ("get", "/v1/nothing-here", {}, 404, "NotFound"),
        ("delete", "/v1/runs/x", {}, 405, "MethodNotAllowed"),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    kind: str,
) -> None:
    response = await client.request(method.upper(), path, **kwargs)
    assert (response.status_code, error_type(response)) == (status, kind)


async def test_healthz_and_closed_engine(store_url: str) -> None:
    engine = af.Engine(store_url)
    await engine.open()
    transport = httpx.ASGITransport(app=asgi_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        await engine.close()
        closed = await http.get("/healthz")
        assert closed.status_code == 503 and error_type(closed) == "EngineClosedError"
        start = await http.post("/v1/workflows/http_add/runs", json={"args": [1, 2]})
        assert start.status_code == 503


async def test_schedule_routes(client: httpx.AsyncClient) -> None:
    body = {"id": "nightly", "workflow": "http_add", "cron": "30 2 * * *", "args": [1, 2]}
    created = await client.post("/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["cron"] == "30 2 * * *" and schedule["args"] == [1, 2]
    assert schedule["paused"] is False and schedule["next_time"] is not None
    updated = await client.post("/v1/schedules", json={**body, "timezone": "Europe/Berlin"})
    assert updated.status_code == 200 and updated.json()["timezone"] == "Europe/Berlin"
    listed = (await client.get("/v1/schedules")).json()["schedules"]
    assert [s["id"] for s in listed] == ["nightly"]
    paused = (await client.post("/v1/schedules/nightly/pause")).json()
    assert paused["paused"] is True and paused["next_time"] is None
    assert (await client.post("/v1/schedules/nightly/resume")).json()["paused"] is False
    triggered = await client.post("/v1/schedules/nightly/trigger")
    assert triggered.status_code == 201 and triggered.json()["id"].startswith("nightly@")
    run_id = triggered.json()["id"]
    assert (await client.get(f"/v1/runs/{run_id}/result?wait=5")).json()["result"] == 3
    bad = await client.post("/v1/schedules", json={**body, "cron": "61 * * * *"})
    assert bad.status_code == 422 and error_type(bad) == "ScheduleError"
    assert (await client.post("/v1/schedules", json={"id": "x"})).status_code == 400
    assert (await client.delete("/v1/schedules/nightly")).json() == {"id": "nightly"}
    missing = await client.get("/v1/schedules/nightly")
    assert missing.status_code == 404 and error_type(missing) == "ScheduleNotFoundError"
