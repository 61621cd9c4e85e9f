"""Request bodies: JSON only, read as a stream and refused as soon as it is too large."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from ._problems import Problem

_NOTHING: Any = object()


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes (before reading it all
    when the client declares its length)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "PayloadTooLarge", f"the body is over the engine's max_payload_bytes ({limit:,})"
    )


async def read_json(request: Request, limit: int, empty: Any = _NOTHING) -> Any:
    """The body's JSON value; `empty` if there is no body and one was given.

    Raises `Problem`: 415 unless the body is JSON, 413 over `limit`, 400 if it does
    not parse (or is missing and `empty` was not given).
    """
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise Problem(415, "UnsupportedMediaType", f"expected application/json, got {content_type}")
    body = await read_body(request, limit)
    if not body:
        if empty is _NOTHING:
            raise Problem(400, "MalformedJSON", "a JSON body is required")
        return empty
    if content_type is None:
        raise Problem(415, "UnsupportedMediaType", "a body needs Content-Type: application/json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "MalformedJSON", f"the body is not valid JSON: {exc}") from None


def shape_error(message: str) -> Problem:
    """A body or query that parsed but does not have the route's shape."""
    return Problem(400, "BadRequest", message)


def json_object(
    value: Any, allowed: dict[str, type | tuple[type, ...]], what: str
) -> dict[str, Any]:
    """`value` checked as an object whose keys are among `allowed`, each of its type."""
    if not isinstance(value, dict):
        raise shape_error(f"{what} must be a JSON object")
    for key, item in value.items():
        if key not in allowed:
            raise shape_error(f"{what} has an unknown field {key!r}; allowed: {', '.join(allowed)}")
        if not isinstance(item, allowed[key]):
            raise shape_error(f"{what}.{key} has the wrong type ({type(item).__name__})")
    return value
