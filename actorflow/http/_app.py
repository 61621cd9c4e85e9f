"""`asgi_app(engine)`: the Starlette application serving the HTTP API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

import actorflow as af

from ._access import BearerToken, LoopbackOnly
from ._metrics import prometheus_metrics
from ._openapi import openapi_document
from ._problems import EXCEPTION_HANDLERS
from ._runs import RunRoutes, json_response
from ._schedules import ScheduleRoutes
from ._workflows import WorkflowRoutes
from .ui import dashboard


def asgi_app(engine: af.Engine, token: str | None = None, *, heartbeat: float = 15.0) -> Starlette:
    """The HTTP API on `engine`, as a Starlette application (mountable under a prefix).

    With `token`, every `/v1` and `/metrics` request needs `Authorization: Bearer
    <token>`; without one, only loopback clients are answered. `heartbeat` is the seconds
    of silence after which a Server-Sent Events response sends a comment line.
    The engine is opened and closed by the caller. Raises `ValueError` for an
    empty token or a heartbeat that is not positive.
    """
    if token is not None and not token:
        raise ValueError("token must be a non-empty str or None")
    if not heartbeat > 0:
        raise ValueError(f"heartbeat must be > 0 seconds, got {heartbeat!r}")

    async def openapi(request: Request) -> Response:
        # Made for each request: with `workflows=None` the engine starts every workflow
        # decorated so far, and one module may be imported after the app was made.
        return json_response(openapi_document(engine.workflows()))

    async def healthz(request: Request) -> Response:
        await engine.list_runs(limit=1)  # EngineClosedError (503) or a store error (500)
        return json_response({"status": "ok"})

    v1: list[BaseRoute] = [
        *WorkflowRoutes(engine).routes(),
        *RunRoutes(engine, heartbeat).routes(),
        *ScheduleRoutes(engine).routes(),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    guard = [] if token is None else [Middleware(BearerToken, token=token)]
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", prometheus_metrics, methods=["GET"], middleware=guard),
        Mount("/v1", routes=v1, middleware=guard),
        Mount("/ui", app=dashboard(), name="ui"),  # static files: the token guards /v1 only
    ]
    middleware = [Middleware(LoopbackOnly)] if token is None else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
