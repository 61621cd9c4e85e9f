"""Durations (`"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"2d"`, seconds, timedelta) and instants."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

Duration = float | int | str | timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def to_seconds(duration: Duration, what: str = "duration") -> float:
    """Seconds in `duration`; raises `ValueError`/`TypeError` naming `what` for bad input."""
    if isinstance(duration, bool):
        raise TypeError(f"{what} must be seconds, a string like '30s', or a timedelta; got bool")
    if isinstance(duration, timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, int | float):
        seconds = float(duration)
    elif isinstance(duration, str):
        match = _PATTERN.match(duration)
        if match is None:
            raise ValueError(
                f"{what} {duration!r} is not a duration; use e.g. '500ms', '30s', '5m', '1h', '2d'"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise TypeError(
            f"{what} must be seconds, a string like '30s', or a timedelta; "
            f"got {type(duration).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite, non-negative duration; got {duration!r}")
    return seconds


def to_timestamp(when: datetime, what: str = "datetime") -> float:
    """Epoch seconds of a timezone-aware datetime."""
    if not isinstance(when, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. datetime.now(UTC))")
    return when.timestamp()
