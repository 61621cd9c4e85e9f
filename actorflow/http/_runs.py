"""The run routes: list, read, wait for the result, control, send events, and read the
event log and streams (JSON, or Server-Sent Events)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import actorflow as af
from actorflow._json_shapes import error_json, event_json, run_json

from ._body import json_object, read_json, shape_error
from ._params import int_param, last_event_id, seconds_param, wants_event_stream
from ._sse import END, message, sse_response

T = TypeVar("T")
MAX_LIST = 1000
MAX_WAIT = 3600.0
MAX_NAMESPACE = 200  # as the engine's streams allow


def json_response(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


class RunRoutes:
    """The handlers under `/v1/runs`, on one engine."""

    def __init__(self, engine: af.Engine, heartbeat: float) -> None:
        self.engine = engine
        self.heartbeat = heartbeat

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/runs", self.list_runs, methods=["GET"]),
            Route("/runs/{id}", self.get_run, methods=["GET"]),
            Route("/runs/{id}/result", self.result, methods=["GET"]),
            Route("/runs/{id}/pause", self.pause, methods=["POST"]),
            Route("/runs/{id}/resume", self.resume, methods=["POST"]),
            Route("/runs/{id}/terminate", self.terminate, methods=["POST"]),
            Route("/runs/{id}/restart", self.restart, methods=["POST"]),
            Route("/runs/{id}/events/{type}", self.send_event, methods=["POST"]),
            Route("/runs/{id}/events", self.events, methods=["GET"]),
            Route("/runs/{id}/stream", self.stream, methods=["GET"]),
        ]

    def _run(self, request: Request) -> af.Run[Any]:
        return self.engine.get_run(request.path_params["id"])

    async def list_runs(self, request: Request) -> Response:
        """Newest first; `next_cursor` is the id of the page's last run, or null at the end."""
        limit = int_param(request, "limit", 100, 1, MAX_LIST)
        statuses = []
        for text in filter(None, request.query_params.get("status", "").split(",")):
            try:
                statuses.append(af.RunStatus(text))
            except ValueError:
                valid = ", ".join(s.value for s in af.RunStatus)
                raise shape_error(f"unknown status {text!r}; valid: {valid}") from None
        infos = await self.engine.list_runs(
            status=statuses or None,
            workflow=request.query_params.get("workflow") or None,
            limit=limit + 1,
            after=request.query_params.get("cursor") or None,
        )
        more = len(infos) > limit
        page = infos[:limit]
        return json_response(
            {"runs": [run_json(i) for i in page], "next_cursor": page[-1].id if more else None}
        )

    async def get_run(self, request: Request) -> Response:
        return json_response(run_json(await self._run(request).info()))

    async def result(self, request: Request) -> Response:
        """200 with the outcome once the run is final, else 202 after `wait` seconds: the
        wait is the run handle's `result()`, answered when the run finishes."""
        wait = seconds_param(request, "wait", MAX_WAIT)
        run = self._run(request)
        try:
            value = await _unless_client_leaves(request, run.result(timeout=wait))
        except _ClientLeft:
            return Response(status_code=499)  # nobody reads it: the connection is gone
        except TimeoutError:
            return json_response({"status": (await run.status()).value}, 202)
        except af.RunFailedError as exc:
            return json_response(
                {"status": "failed", "result": None, "error": error_json(exc.error)}
            )
        except af.RunTerminatedError:
            return json_response({"status": "terminated", "result": None, "error": None})
        try:
            body = orjson.dumps({"status": "completed", "result": value, "error": None})
        except TypeError:
            # A result decoded into a type orjson does not know: answer the stored JSON.
            stored = (await run.info()).result
            body = orjson.dumps({"status": "completed", "result": stored, "error": None})
        return Response(body, media_type="application/json")

    async def _control_answer(self, run: af.Run[Any]) -> Response:
        return json_response({"id": run.id, "status": (await run.status()).value})

    async def pause(self, request: Request) -> Response:
        run = self._run(request)
        await run.pause()
        return await self._control_answer(run)

    async def resume(self, request: Request) -> Response:
        run = self._run(request)
        await run.resume()
        return await self._control_answer(run)

    async def terminate(self, request: Request) -> Response:
        run = self._run(request)
        await run.terminate()
        return await self._control_answer(run)

    async def restart(self, request: Request) -> Response:
        body = await read_json(request, self.engine.max_payload_bytes, empty={})
        options = json_object(body, {"from_step": (str, type(None))}, "body")
        run = self._run(request)
        await run.restart(from_step=options.get("from_step"))
        return await self._control_answer(run)

    async def send_event(self, request: Request) -> Response:
        """202 once the event is durably recorded for the run."""
        payload = await read_json(request, self.engine.max_payload_bytes, empty=None)
        run = self._run(request)
        kind = request.path_params["type"]
        await run.send_event(kind, payload)
        return json_response({"id": run.id, "type": kind}, 202)

    async def events(self, request: Request) -> Response:
        run = self._run(request)
        if not wants_event_stream(request):
            events = [event_json(e) async for e in run.events(follow=False)]
            return json_response({"events": events})
        after = last_event_id(request)
        await run.status()  # an unknown run is a 404, not an empty stream
        return sse_response(self._event_messages(run, after), self.heartbeat)

    async def _event_messages(
        self, run: af.Run[Any], after: int | None
    ) -> AsyncGenerator[bytes, None]:
        events = run.events(after=-1 if after is None else after)
        try:
            async for event in events:
                yield message(event.index, orjson.dumps(event_json(event)))
        finally:
            await events.aclose()

    async def stream(self, request: Request) -> Response:
        namespace = request.query_params.get("namespace", "default")
        if not 0 < len(namespace) <= MAX_NAMESPACE:
            raise shape_error(f"namespace must be 1 to {MAX_NAMESPACE} characters")
        start = int_param(request, "start", 0, -(2**31), 2**31)
        resume = last_event_id(request)
        if resume is not None:
            start = resume + 1
        run = self._run(request)
        await run.status()
        chunks = run.stream(namespace, start, with_info=True)
        return sse_response(_chunk_messages(chunks), self.heartbeat)


async def _unless_client_leaves(request: Request, waiting: Coroutine[Any, Any, T]) -> T:
    """`await waiting`, cancelled if the client disconnects first (a long `?wait=` must
    not hold its waiter for a client that has gone)."""
    answer = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((answer, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():
            answer.cancel()
        await asyncio.gather(answer, gone, return_exceptions=True)
    if answer.cancelled():
        raise _ClientLeft
    return answer.result()


class _ClientLeft(Exception):
    """The client disconnected while its request waited."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _chunk_messages(chunks: AsyncGenerator[Any, None]) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in chunks:
            if isinstance(chunk.value, bytes):
                yield message(chunk.index, base64.b64encode(chunk.value), "bytes")
            else:
                yield message(chunk.index, orjson.dumps(chunk.value))
    finally:
        await chunks.aclose()
    yield END
