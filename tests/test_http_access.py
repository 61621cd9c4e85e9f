"""Who the HTTP API answers (token, loopback), body limits, and mounting in FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

import actorflow as af
from actorflow.http import asgi_app
from tests import http_workflows as wf  # noqa: F401  (registers the workflows)


def client_for(app: object, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://af")


@pytest.mark.parametrize("host", ["203.0.113.7", "10.0.0.2", "2001:db8::1", "localhost-ish"])
async def test_without_token_only_loopback_clients(engine: af.Engine, host: str) -> None:
    async with client_for(asgi_app(engine), host) as http:
        for path in ("/v1/runs", "/healthz", "/v1/openapi.json"):
            refused = await http.get(path)
            assert refused.status_code == 403
            assert refused.json()["error"]["type"] == "Forbidden"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1"])
async def test_loopback_clients_without_token(engine: af.Engine, host: str) -> None:
    async with client_for(asgi_app(engine), host) as http:
        assert (await http.get("/v1/runs")).status_code == 200


async def test_bearer_token(engine: af.Engine) -> None:
    async with client_for(asgi_app(engine, token="s3cret"), "203.0.113.7") as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = await http.get("/v1/runs", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "Unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
        ok = await http.get("/v1/runs", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert (await http.get("/healthz")).status_code == 200  # for load balancers


async def test_body_over_max_payload_is_refused_while_read(store_url: str) -> None:
    engine = af.Engine(store_url, max_payload_bytes=1000)
    async with engine, client_for(asgi_app(engine)) as http:
        declared = await http.post(
            "/v1/workflows/http_add/runs",
            content=b"[" + b"1," * 2000 + b"1]",
            headers={"content-type": "application/json"},
        )
        assert declared.status_code == 413
        assert declared.json()["error"]["type"] == "PayloadTooLarge"
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(10_000):
                sent += 1
                yield b" " * 400

        streamed = await http.post(
            "/v1/runs/x/events/e",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413
        assert sent <= 4  # it stopped reading at the limit, not at the end
        assert await engine.list_runs() == []


async def test_mounted_in_fastapi_under_a_prefix(engine: af.Engine) -> None:
    service = FastAPI()

    @service.get("/own")
    async def own() -> dict[str, str]:
        return {"service": "mine"}

    service.mount("/actorflow", asgi_app(engine))
    async with client_for(service) as http:
        assert (await http.get("/own")).json() == {"service": "mine"}
        started = await http.post("/actorflow/v1/workflows/http_add/runs", json={"args": [2, 5]})
        assert started.status_code == 201
        run_id = started.json()["id"]
        result = await http.get(f"/actorflow/v1/runs/{run_id}/result", params={"wait": 5})
        assert result.json()["result"] == 7
        missing = await http.get("/actorflow/v1/runs/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "RunNotFoundError"
        assert (await http.get("/actorflow/v1/openapi.json")).json()["openapi"].startswith("3.1")
        assert (await http.get("/actorflow/healthz")).json() == {"status": "ok"}


def test_asgi_app_refuses_bad_options() -> None:
    engine = af.Engine("memory://")
    with pytest.raises(ValueError, match="token"):
        asgi_app(engine, token="")
    with pytest.raises(ValueError, match="heartbeat"):
        asgi_app(engine, heartbeat=0)
