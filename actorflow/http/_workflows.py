"""The workflow routes (list, start one run, start a batch) and hooks."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import actorflow as af
from actorflow._json_shapes import run_json, workflow_json

from ._body import json_object, read_json, shape_error
from ._runs import json_response
from ._workflow_types import SchemaCache

_START_FIELDS: dict[str, type | tuple[type, ...]] = {
    "args": list,
    "id": str,
    "metadata": object,
    "if_exists": str,
}
_BATCH_ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {"args": list, "id": str}


class WorkflowRoutes:
    """The handlers under `/v1/workflows` and `/v1/hooks`, on one engine."""

    def __init__(self, engine: af.Engine) -> None:
        self.engine = engine
        self.schemas = SchemaCache()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/workflows", self.list_workflows, methods=["GET"]),
            Route("/workflows/{name}/runs", self.start, methods=["POST"]),
            Route("/workflows/{name}/runs/batch", self.start_batch, methods=["POST"]),
            Route("/hooks/{token}", self.resume_hook, methods=["POST"]),
        ]

    async def list_workflows(self, request: Request) -> Response:
        counts = await self.engine.count_runs()
        return json_response(
            {
                "workflows": [
                    workflow_json(wf, counts.get(wf.name, {}), self.schemas.of(wf))
                    for wf in self.engine.workflows()
                ]
            }
        )

    async def start(self, request: Request) -> Response:
        """201 with the new run; 200 with the existing one for a known `id` when
        `if_exists` is `"return"` (the default), 409 when it is `"error"`."""
        body = json_object(
            await read_json(request, self.engine.max_payload_bytes), _START_FIELDS, "body"
        )
        if_exists = body.get("if_exists", "return")
        if if_exists not in ("return", "error"):
            raise shape_error(f"if_exists must be 'return' or 'error', got {if_exists!r}")
        name = request.path_params["name"]
        try:
            run = await self.engine.start(
                name,
                *body.get("args", []),
                id=body.get("id"),
                if_exists="error",
                metadata=body.get("metadata"),
            )
        except af.RunAlreadyExistsError:
            if if_exists == "error":
                raise
            existing = self.engine.get_run(body["id"])
            return json_response(run_json(await existing.info()), 200)
        return json_response(run_json(await run.info()), 201)

    async def start_batch(self, request: Request) -> Response:
        """201 with every run, started in one commit; nothing is started if one is refused.
        Give every entry an `id` or none (ids make the batch idempotent)."""
        body = json_object(
            await read_json(request, self.engine.max_payload_bytes), {"runs": list}, "body"
        )
        entries = [
            json_object(entry, _BATCH_ENTRY_FIELDS, f"runs[{i}]")
            for i, entry in enumerate(body.get("runs", []))
        ]
        with_id = sum("id" in entry for entry in entries)
        if with_id not in (0, len(entries)):
            raise shape_error("give an id to every run of a batch, or to none")
        runs = await self.engine.start_many(
            request.path_params["name"],
            [entry.get("args", []) for entry in entries],
            ids=[entry["id"] for entry in entries] if with_id else None,
        )
        infos = await asyncio.gather(*(run.info() for run in runs))
        return json_response({"runs": [run_json(info) for info in infos]}, 201)

    async def resume_hook(self, request: Request) -> Response:
        payload = await read_json(request, self.engine.max_payload_bytes, empty=None)
        await self.engine.resume_hook(request.path_params["token"], payload)
        return json_response({"token": request.path_params["token"]}, 202)
