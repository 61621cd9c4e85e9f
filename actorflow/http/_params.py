"""Query parameters and headers, checked: a bad one is a 400 naming it."""

from __future__ import annotations

import math

from starlette.requests import Request

from ._body import shape_error


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise shape_error(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise shape_error(f"{name} must be between {low} and {high}, got {value}")
    return value


def seconds_param(request: Request, name: str, high: float) -> float:
    raw = request.query_params.get(name, "0")
    try:
        value = float(raw)
    except ValueError:
        raise shape_error(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and 0 <= value <= high):
        raise shape_error(f"{name} must be between 0 and {high:g} seconds, got {raw!r}")
    return value


def last_event_id(request: Request) -> int | None:
    """The `Last-Event-ID` a reconnecting SSE client sends: the last index it received."""
    raw = request.headers.get("last-event-id")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise shape_error(f"Last-Event-ID must be a non-negative integer, got {raw!r}")
    return int(raw)


def wants_event_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")
