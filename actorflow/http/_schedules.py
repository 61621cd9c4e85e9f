"""The schedule routes: list, create or update, read, delete, pause, resume, trigger."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import actorflow as af
from actorflow._json_shapes import run_json, schedule_json

from ._body import json_object, read_json, shape_error
from ._runs import json_response

_CREATE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "workflow": str,
    "cron": str,
    "args": list,
    "timezone": str,
    "overlap": str,
    "catchup": str,
    "paused": bool,
    "metadata": object,
}


class ScheduleRoutes:
    """The handlers under `/v1/schedules`, on one engine."""

    def __init__(self, engine: af.Engine) -> None:
        self.engine = engine

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/schedules", self.list_schedules, methods=["GET"]),
            Route("/schedules", self.create, methods=["POST"]),
            Route("/schedules/{id}", self.get, methods=["GET"]),
            Route("/schedules/{id}", self.delete, methods=["DELETE"]),
            Route("/schedules/{id}/pause", self.pause, methods=["POST"]),
            Route("/schedules/{id}/resume", self.resume, methods=["POST"]),
            Route("/schedules/{id}/trigger", self.trigger, methods=["POST"]),
        ]

    def _schedule(self, request: Request) -> af.Schedule:
        return self.engine.get_schedule(request.path_params["id"])

    async def list_schedules(self, request: Request) -> Response:
        infos = await self.engine.list_schedules()
        return json_response({"schedules": [schedule_json(i) for i in infos]})

    async def create(self, request: Request) -> Response:
        """201 with a new schedule; 200 with one updated in place (same id)."""
        body = json_object(
            await read_json(request, self.engine.max_payload_bytes), _CREATE_FIELDS, "body"
        )
        missing = [name for name in ("id", "workflow", "cron") if name not in body]
        if missing:
            raise shape_error(f"body needs {', '.join(missing)}")
        existed = await self.engine.get_schedule(body["id"]).exists()
        options = {k: v for k, v in body.items() if k not in ("id", "workflow", "cron")}
        schedule = await self.engine.create_schedule(
            body["id"], body["workflow"], body["cron"], **options
        )
        return json_response(schedule_json(await schedule.info()), 200 if existed else 201)

    async def get(self, request: Request) -> Response:
        return json_response(schedule_json(await self._schedule(request).info()))

    async def delete(self, request: Request) -> Response:
        schedule = self._schedule(request)
        await schedule.delete()
        return json_response({"id": schedule.id})

    async def pause(self, request: Request) -> Response:
        schedule = self._schedule(request)
        await schedule.pause()
        return json_response(schedule_json(await schedule.info()))

    async def resume(self, request: Request) -> Response:
        schedule = self._schedule(request)
        await schedule.resume()
        return json_response(schedule_json(await schedule.info()))

    async def trigger(self, request: Request) -> Response:
        """201 with the run started now, outside the cron."""
        run = await self._schedule(request).trigger()
        return json_response(run_json(await run.info()), 201)
