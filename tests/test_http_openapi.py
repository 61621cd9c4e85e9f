"""`GET /v1/openapi.json` describes every route, and a schemathesis fuzz of the app
in-process (a bounded number of examples per operation) finds no input answered
with a 500 or with a body the document does not describe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Mount, Route

import actorflow as af
from actorflow.http import asgi_app
from actorflow.http._openapi import openapi_document
from tests import http_workflows  # workflows the fuzzer can start

TOKEN = "fuzz-token"


def described_routes(app: Any, prefix: str = "") -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, Mount):
            found |= described_routes(route, prefix + route.path)
        elif isinstance(route, Route):
            assert route.methods is not None
            found |= {(prefix + route.path, m.lower()) for m in route.methods if m != "HEAD"}
    return found


async def test_document_describes_every_route(engine: af.Engine) -> None:
    app = asgi_app(engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://af") as http:
        document = (await http.get("/v1/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    # Each workflow's typed start routes are concrete paths of the templated ones.
    typed = {p for p in document["paths"] if p.startswith("/v1/workflows/") and "{" not in p}
    assert {"/v1/workflows/http_add/runs", "/v1/workflows/http_add/runs/batch"} <= typed
    documented = {
        (_templated(path) if path in typed else path, method)
        for path, ops in document["paths"].items()
        for method in ops
    }
    assert documented == described_routes(app)
    for ops in document["paths"].values():
        for op in ops.values():
            assert op["summary"]
            assert {"200", "201", "202"} & set(op["responses"])
            assert op["responses"]["503"] == {"$ref": "#/components/responses/503"}


def _templated(path: str) -> str:
    rest = path.removeprefix("/v1/workflows/").partition("/")[2]
    return f"/v1/workflows/{{name}}/{rest}"


class EngineOnLifespan:
    """The API on an engine opened at lifespan startup: in the event loop that
    schemathesis runs the app in (an engine belongs to the loop it was opened in).
    A new engine at each startup (schemathesis ends the lifespan between tests)."""

    def __init__(self) -> None:
        self.engine: af.Engine | None = None
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.engine = af.Engine("memory://")
                await self.engine.open()
                self.app = asgi_app(self.engine, token=TOKEN)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                assert self.engine is not None
                await self.engine.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


# Loaded from the document itself: the test above checks the served one is the same.
# Typed routes for two workflows whose runs end by themselves whatever the arguments
# (not http_chatter or http_sleeper, which a fuzzed number would keep busy for ages).
schema = schemathesis.openapi.from_dict(
    openapi_document([http_workflows.http_add, http_workflows.http_ship])
)


@pytest.fixture(scope="module")
def session() -> Iterator[Any]:
    """A requests session calling the app in-process, its lifespan (the engine) started."""
    with get_client(EngineOnLifespan()) as client:
        yield client
    shutdown_lifespans()


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_no_server_errors(case: Any, session: Any) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = case.call(session=session, base_url="http://testserver", headers=headers, timeout=10)
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            status_code_conformance,
            response_schema_conformance,
        ],
    )
