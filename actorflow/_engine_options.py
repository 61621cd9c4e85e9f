"""The engine's settings, checked where they enter (`Engine(...)`)."""

from __future__ import annotations

import math

MAX_PAYLOAD = 512 * 1024 * 1024  # SQLite stores at most 1 GB per value


def check_options(
    max_concurrency: int | None,
    idle_timeout: float | None,
    wake_ahead: float,
    max_stream_bytes: int,
    max_payload_bytes: int,
    close_timeout: float,
) -> None:
    """Raise `ValueError` naming the first of the engine's settings that is out of range."""
    if max_concurrency is not None and (
        not isinstance(max_concurrency, int) or max_concurrency < 1
    ):
        raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
    if idle_timeout is not None and not (idle_timeout >= 0 and math.isfinite(idle_timeout)):
        raise ValueError(f"idle_timeout must be >= 0 seconds or None, got {idle_timeout!r}")
    if not (wake_ahead >= 0 and math.isfinite(wake_ahead)):
        raise ValueError(f"wake_ahead must be >= 0 seconds, got {wake_ahead!r}")
    if not isinstance(max_stream_bytes, int) or max_stream_bytes <= 0:
        raise ValueError(f"max_stream_bytes must be a positive int, got {max_stream_bytes!r}")
    if not isinstance(max_payload_bytes, int) or not 0 < max_payload_bytes <= MAX_PAYLOAD:
        raise ValueError(
            f"max_payload_bytes must be a positive int of at most {MAX_PAYLOAD:,} "
            f"(SQLite stores at most 1 GB per value), got {max_payload_bytes!r}"
        )
    if not (close_timeout >= 0 and math.isfinite(close_timeout)):
        raise ValueError(f"close_timeout must be >= 0 seconds, got {close_timeout!r}")
