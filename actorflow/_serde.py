"""JSON (orjson) encoding of everything that is stored: arguments, results, events, chunks.

Nothing is pickled, so stored data can never execute code. Values of the
supported types orjson does not encode itself (Decimal, sets, timedelta, attrs
classes, pydantic models) are encoded by `_types.to_json_native`. A value refused
is reported with the path of the offending part, found by walking the
value only after the fast path failed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from ._errors import SerializationError
from ._types import to_json_native

dumps = orjson.dumps
loads = orjson.loads


def encode(value: Any, what: str, limit: int | None = None) -> bytes:
    """Serialize `value`; `what` names it in the error (e.g. `"args"`, `"step 'charge' result"`).

    With `limit`, JSON longer than `limit` bytes is refused too (`oversize`).
    """
    try:
        data = orjson.dumps(value, default=to_json_native)
    except (TypeError, orjson.JSONEncodeError) as exc:
        path, reason = _find_offender(value, what)
        raise SerializationError(f"{path} cannot be serialized to JSON: {reason}") from exc
    if limit is not None and len(data) > limit:
        raise oversize(data, what, limit)
    return data


def oversize(data: bytes, what: str, limit: int) -> SerializationError:
    """The error for a payload larger than the engine's `max_payload_bytes`: raised where
    it enters, not at the commit, where SQLite would refuse it with every row of its
    batch. (Callers compare the size themselves: this is on every step's path.)"""
    return SerializationError(
        f"{what} is {len(data):,} bytes as JSON, over the limit of {limit:,} "
        "(Engine(max_payload_bytes=...))"
    )


def _find_offender(value: Any, path: str) -> tuple[str, str]:
    """The path to the innermost part of `value` that orjson refuses, and why."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}[{key!r}]", f"dict keys must be str, not {type(key).__name__}"
            if not _serializable(item):
                return _find_offender(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if not _serializable(item):
                return _find_offender(item, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if not _serializable(item):
                return _find_offender(item, f"{path}.{field.name}")
    try:
        orjson.dumps(value, default=to_json_native)
    except (TypeError, orjson.JSONEncodeError) as exc:
        return path, f"{type(value).__name__} value ({exc})"
    return path, "unknown reason"


def _serializable(value: Any) -> bool:
    try:
        orjson.dumps(value, default=to_json_native)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True
