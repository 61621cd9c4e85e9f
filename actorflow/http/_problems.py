"""Errors as HTTP answers: the status for each actorflow error, and the error body.

Every error body is `{"error": {"type": ..., "message": ...}}`: `type` is the
exception's class name for errors the engine raised, or a name of the HTTP
layer's own (`MalformedJSON`, `PayloadTooLarge`, ...) for what it refused
before the engine saw the request. A `ValidationError` (an argument that does
not fit the workflow's annotations) adds its parts: `argument`, `path` and
`reason` (what was expected).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

import actorflow as af

# First match wins: subclasses before their bases.
_STATUS_OF: tuple[tuple[type[BaseException], int], ...] = (
    (af.EngineClosedError, 503),
    (af.RunNotFoundError, 404),
    (af.WorkflowNotRegisteredError, 404),
    (af.HookNotFoundError, 404),
    (af.ScheduleNotFoundError, 404),
    (af.RunAlreadyExistsError, 409),
    (af.InvalidStateError, 409),
    (af.HookConflictError, 409),
    (af.SerializationError, 422),
    # What the engine refuses as a value (a bad id, event type, namespace, a wrong
    # number of arguments, and validation errors, which are ValueErrors) is a request
    # the HTTP layer could parse but the engine cannot process.
    (ValueError, 422),
    (TypeError, 422),
)

_HTTP_TYPES = {
    404: "NotFound",
    405: "MethodNotAllowed",
}


class Problem(Exception):
    """A request the HTTP layer refuses itself: its status, error type and message."""

    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message


def error_response(status: int, type: str, message: str, **detail: Any) -> Response:
    """The error body with `status`; `detail` adds fields next to `type` and `message`."""
    body = orjson.dumps({"error": {"type": type, "message": message, **detail}})
    return Response(body, status, media_type="application/json")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status for an error the engine raised, or None if it is not a client's."""
    for cls, status in _STATUS_OF:
        if isinstance(exc, cls):
            return status
    return None


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return error_response(exc.status, exc.type, exc.message)


async def on_engine_error(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    if status is None:
        raise exc  # not the client's doing: a 500, logged by the server
    if isinstance(exc, af.ValidationError):
        detail = {"argument": exc.argument, "path": exc.path, "reason": exc.reason}
        return error_response(status, type(exc).__name__, str(exc), **detail)
    return error_response(status, type(exc).__name__, str(exc))


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, "HTTPError")
    response = error_response(exc.status_code, kind, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """The 500 answer; Starlette re-raises `exc` after it, for the server to log."""
    return error_response(500, "InternalError", f"{type(exc).__name__}: {exc}")


EXCEPTION_HANDLERS = {
    Problem: on_problem,
    HTTPException: on_http_exception,
    af.ActorflowError: on_engine_error,
    ValueError: on_engine_error,
    TypeError: on_engine_error,
    Exception: on_unexpected,
}
