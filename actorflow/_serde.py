"""JSON (orjson) encoding of everything that is stored: arguments, results, events, chunks.

Nothing is pickled, so stored data can never execute code. A value orjson
refuses is reported with the path of the offending part, found by walking the
value only after the fast path failed. Values of the supported types orjson
does not encode itself (Decimal, sets, timedelta, attrs classes, pydantic
models) are encoded by `_types.to_json_native`. Two things orjson would accept are
refused as well, because they would come back changed: a float that is NaN or
infinite (orjson writes `null`), found by a walk that runs only when the JSON
holds a `null`. Values nested deeper than `MAX_DEPTH` levels, or that contain
themselves, are refused with the path where that happens.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from typing import Any, Final, Protocol

import attrs
import orjson

from ._errors import SerializationError
from ._types import to_json_native

# Final: compiled modules (this one and those importing them) read them from C statics,
# where a plain global is looked up by name on every value stored or loaded.
_orjson_dumps: Final = orjson.dumps
loads: Final = orjson.loads
_to_json_native: Final = to_json_native
# `b"null" in data` first tries `b"null"` as an int and raises and clears a TypeError
# inside CPython (about 1,200 instructions more than this search, on every value stored).
_find_null: Final = re.compile(b"null").search

MAX_DEPTH = 254
"""orjson's nesting limit: the deepest value that can be stored."""


class NonFiniteFloatError(ValueError):
    """A float that JSON cannot represent (orjson would write it as `null`)."""


def dumps(value: Any) -> bytes:
    """`orjson.dumps`, right-sized (see `_trimmed`): for the engine's own data."""
    return _trimmed(_orjson_dumps(value))


def dumps_value(value: Any) -> bytes:
    """`dumps` for a user's value: raises `TypeError` (orjson's errors) for what orjson
    refuses and `NonFiniteFloatError` for a NaN or an infinity; `encode` names the part."""
    data = _orjson_dumps(value, default=_to_json_native)
    if _find_null(data) is not None and _has_non_finite(value, 0):
        raise NonFiniteFloatError
    return _trimmed(data)


def _trimmed(data: bytes) -> bytes:
    """A copy of `data` whose memory is its length. orjson (3.12 on) hands back its whole
    working buffer, at least 4 KiB, with only the length set: each value a run keeps in
    its log until committed (or an in-memory store keeps for good) would hold a page.
    Copying costs ~30 ns; keeping 100,000 untrimmed values measured ~2 us each more than
    trimmed ones (a fresh page each, its fault and its zeroing)."""
    return b"%b" % data


class Typed(Protocol):
    """What knows a value's annotation: its `TypeCodec`; a `WorkflowFunction` (or
    `Signature`) for a run's arguments; a run's driver for the workflow's result."""

    def with_text_keys(self, value: Any, /) -> Any:
        """`value` with its typed dicts' keys as strings, or None (see `TypeCodec`)."""


def encode(
    value: Any,
    what: str,
    limit: int | None = None,
    typed: Typed | None = None,
) -> bytes:
    """Serialize `value`; `what` names it in the error (e.g. `"args"`, `"step 'charge' result"`).

    Raises `SerializationError` naming the path of the part that cannot be stored.
    With `limit`, JSON longer than `limit` bytes is refused too (`oversize`).
    `typed` (see `Typed`) is asked for another form when orjson refuses the value:
    dicts whose keys the annotation types (`dict[UUID, int]`) are stored with their
    keys as strings.
    """
    try:
        try:
            data = dumps_value(value)
        except TypeError:
            if typed is None:
                raise
            form = typed.with_text_keys(value)
            if form is None:
                raise
            data = dumps_value(form)
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        try:
            path, reason = _find_offender(value, what, 0, [])
        except Exception as walk:  # a part that raises when looked at (a property, say)
            path, reason = what, f"{exc}; looking for the bad part raised {walk!r}"
        message = f"{_shorten(path)} cannot be serialized to JSON: {reason}"
        raise SerializationError(message) from exc
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


def _shorten(path: str) -> str:
    """A path readable in a message: the middle of a very deep one is elided."""
    if len(path) <= 240:
        return path
    return f"{path[:120]}...{path[-100:]}"


def _children(value: Any) -> list[tuple[str, Any]] | None:
    """(path suffix, item) of each part of a container orjson walks into; None for a leaf."""
    if isinstance(value, dict):
        return [(f"[{key!r}]", item) for key, item in value.items()]
    if isinstance(value, list | tuple | set | frozenset):
        return [(f"[{i}]", item) for i, item in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f".{f.name}", getattr(value, f.name)) for f in dataclasses.fields(value)]
    if attrs.has(type(value)):
        return [(f".{f.name}", getattr(value, f.name)) for f in attrs.fields(type(value))]
    if isinstance(value, enum.Enum):
        return [(".value", value.value)]
    return None


def _has_non_finite(value: Any, depth: int) -> bool:
    """Whether `value` holds a NaN or an infinity; only called on values orjson accepted,
    so they are at most `MAX_DEPTH` deep and hold no cycle."""
    if isinstance(value, float):
        return not math.isfinite(value)
    children = _children(value)
    return children is not None and any(_has_non_finite(item, depth + 1) for _, item in children)


def _find_offender(value: Any, path: str, depth: int, ancestors: list[int]) -> tuple[str, str]:
    """The path to the innermost part of `value` that cannot be stored, and why."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, f"{value!r} is not a JSON number (store it as a string or None)"
    if id(value) in ancestors:
        return path, "the value contains itself (a reference cycle)"
    children = _children(value)
    if children is not None and depth >= MAX_DEPTH:
        return path, f"nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return f"{path}[{key!r}]", f"dict keys must be str, not {type(key).__name__}"
    if children is not None:
        ancestors.append(id(value))
        for suffix, item in children:
            if not _storable(item) or _deeper_than(item, MAX_DEPTH - depth - 1):
                return _find_offender(item, path + suffix, depth + 1, ancestors)
        ancestors.pop()
    try:
        orjson.dumps(value, default=to_json_native)
    except (TypeError, orjson.JSONEncodeError) as exc:
        return path, f"{type(value).__name__} value ({exc})"
    return path, "unknown reason"


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether `value` nests containers more than `levels` deep (a cycle counts as deep)."""
    children = _children(value)
    if children is None:
        return False
    if levels <= 0:
        return True
    return any(_deeper_than(item, levels - 1) for _, item in children)


def _storable(value: Any) -> bool:
    try:
        dumps_value(value)
    except (TypeError, ValueError):
        return False
    return True
