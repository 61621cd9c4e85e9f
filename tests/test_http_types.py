"""Typed values at the HTTP boundary: arguments checked against the workflow's annotations
(422 with the argument, the path inside it and what was expected; nothing stored), and
each workflow's JSON Schemas in `GET /v1/workflows` and in the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import actorflow as af
from actorflow.http import asgi_app
from tests import http_workflows as hw

PARCEL = {"sku": "lamp", "qty": 1, "ship_by": "2026-12-02T00:00:00Z"}


@pytest.fixture
async def client(engine: af.Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
        yield http


def refusal(response: httpx.Response) -> dict[str, Any]:
    """The error of a 422 ValidationError answer, with its parts."""
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "ValidationError"
    assert set(error) == {"type", "message", "argument", "path", "reason"}
    return error


async def test_a_typed_run_started_over_http_gets_its_types(client: httpx.AsyncClient) -> None:
    started = await client.post("/v1/workflows/http_ship/runs", json={"args": [PARCEL, "express"]})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    outcome = (await client.get(f"/v1/runs/{run_id}/result?wait=30")).json()
    assert outcome["status"] == "completed"
    # The workflow saw a Parcel and a Speed (qty + 1, one day for express); stored as JSON.
    assert outcome["result"]["qty"] == 2
    assert outcome["result"]["ship_by"].startswith("2026-12-03T00:00:00")


@pytest.mark.parametrize(
    ("args", "argument", "path", "reason"),
    [
        ([{**PARCEL, "qty": "two"}], "parcel", ".qty", "Expected `int`, got `str`"),
        ([{**PARCEL, "ship_by": "soon"}], "parcel", ".ship_by", "Invalid RFC3339 encoded datetime"),
        ([{"sku": "lamp"}], "parcel", "", "Object missing required field `qty`"),
        ([PARCEL, "overnight"], "speed", "", "Invalid enum value 'overnight'"),
    ],
)
async def test_start_refuses_arguments_that_do_not_fit_with_422_and_stores_nothing(
    client: httpx.AsyncClient, args: list[Any], argument: str, path: str, reason: str
) -> None:
    error = refusal(await client.post("/v1/workflows/http_ship/runs", json={"args": args}))
    assert (error["argument"], error["path"], error["reason"]) == (argument, path, reason)
    assert error["message"].startswith(f"workflow 'http_ship': argument '{argument}'")
    assert (await client.get("/v1/runs")).json()["runs"] == []


async def test_a_batch_with_one_bad_entry_is_refused_whole(client: httpx.AsyncClient) -> None:
    runs = [{"args": [PARCEL]}, {"args": [{**PARCEL, "qty": 1.5}]}]
    error = refusal(await client.post("/v1/workflows/http_ship/runs/batch", json={"runs": runs}))
    assert error["message"].startswith("inputs[1]: workflow 'http_ship': argument 'parcel'")
    assert (error["argument"], error["path"]) == ("parcel", ".qty")
    assert (await client.get("/v1/runs")).json()["runs"] == []


async def test_schedule_args_are_checked_with_422(client: httpx.AsyncClient) -> None:
    body = {"id": "ship-daily", "workflow": "http_ship", "cron": "@daily"}
    error = refusal(await client.post("/v1/schedules", json={**body, "args": [[PARCEL]]}))
    assert error["message"].startswith("schedule 'ship-daily': workflow 'http_ship'")
    assert (error["argument"], error["path"]) == ("parcel", "")
    assert error["reason"] == "Expected `object`, got `array`"
    assert (await client.get("/v1/schedules")).json()["schedules"] == []
    created = await client.post("/v1/schedules", json={**body, "args": [PARCEL, "express"]})
    assert created.status_code == 201, created.text
    run_id = (await client.post("/v1/schedules/ship-daily/trigger")).json()["id"]
    outcome = (await client.get(f"/v1/runs/{run_id}/result?wait=30")).json()
    assert outcome["result"]["qty"] == 2


async def test_workflows_lists_each_workflows_schemas(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/workflows")).json()["workflows"]
    by_name = {wf["name"]: wf for wf in listed}
    expected = af.workflow_schemas(hw.http_ship)
    assert by_name["http_ship"]["schemas"] == {"args": expected.args, "result": expected.result}
    parcel = expected.args["$defs"]["Parcel"]
    assert parcel["required"] == ["sku", "qty", "ship_by"]
    assert by_name["http_add"]["schemas"]["args"]["prefixItems"] == [
        {"type": "integer", "title": "a"},
        {"type": "integer", "title": "b"},
    ]
    assert by_name["http_add"]["schemas"]["result"] == {"type": "integer"}


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


async def test_openapi_has_a_typed_start_route_per_workflow(client: httpx.AsyncClient) -> None:
    document = (await client.get("/v1/openapi.json")).json()
    components = document["components"]["schemas"]
    start = document["paths"]["/v1/workflows/http_ship/runs"]["post"]
    body = start["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["args"]
    args = body["properties"]["args"]
    assert args["prefixItems"] == [
        {"$ref": "#/components/schemas/http_ship.Parcel", "title": "parcel"},
        {"$ref": "#/components/schemas/http_ship.Speed", "title": "speed", "default": "standard"},
    ]
    assert (args["minItems"], args["maxItems"]) == (1, 2)
    assert components["http_ship.Parcel"]["properties"]["qty"] == {"type": "integer"}
    assert components["http_ship.Speed"]["enum"] == ["express", "standard"]
    created = start["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["allOf"][0] == {"$ref": "#/components/schemas/Run"}
    result = created["allOf"][1]["properties"]["result"]
    parcel = {"$ref": "#/components/schemas/http_ship.Parcel"}
    assert result == {"anyOf": [parcel, {"type": "null"}]}
    batch = document["paths"]["/v1/workflows/http_ship/runs/batch"]["post"]
    entries = batch["requestBody"]["content"]["application/json"]["schema"]
    assert entries["properties"]["runs"]["items"]["properties"]["args"] == args
    # The templated routes stay, for workflows registered later; the 422 body has the parts.
    assert "/v1/workflows/{name}/runs" in document["paths"]
    error = components["Error"]["properties"]["error"]
    assert {"argument", "path", "reason"} <= set(error["properties"])
    # Every reference resolves inside the document.
    for ref in set(_refs(document)):
        assert ref.startswith("#/components/")
        section, name = ref.removeprefix("#/components/").split("/", 1)
        assert name in document["components"][section], ref


class Opaque:
    """A class msgspec has no schema for (nor a decoder): its values pass unchecked."""


@af.workflow(name="http_types.opaque")
async def opaque(thing: Opaque) -> None:
    return None


async def test_a_workflow_without_schemas_is_listed_and_started_through_the_template(
    sqlite_url: str,
) -> None:
    async with af.Engine(sqlite_url, workflows=[opaque, hw.http_add]) as engine:
        transport = httpx.ASGITransport(app=asgi_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
            listed = (await http.get("/v1/workflows")).json()["workflows"]
            assert [(wf["name"], wf["schemas"] is None) for wf in listed] == [
                ("http_add", False),
                ("http_types.opaque", True),
            ]
            paths = (await http.get("/v1/openapi.json")).json()["paths"]
            assert "/v1/workflows/http_add/runs" in paths
            assert not any("opaque" in path for path in paths)
