"""Which converter library actorflow's typed values use: msgspec, cattrs or pydantic, measured.

`python -m benchmarks.converters` (needs `pip install cattrs pydantic` besides
actorflow's own msgspec). For each library and each supported type, a value is
encoded to JSON-native data, through JSON (orjson) and back, and decoded into
its annotated type: it must come back equal and of the same type. Then: the
message of a validation error deep inside a value, whether a JSON Schema comes
out, and the time to encode and decode a small dataclass. Prints a table; not
part of `python -m benchmarks` (the other libraries are not dependencies).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import time as clock
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypedDict

import attrs
import orjson


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Item:
    sku: str
    qty: int
    price: Decimal


@attrs.define
class Address:
    street: str
    zip: str


class Point(TypedDict):
    x: int
    y: int


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    at: datetime
    items: list[Item]
    color: Color
    address: Address
    tags: frozenset[str]
    note: str | None = None


@dataclasses.dataclass
class Small:
    name: str
    qty: int
    price: float


def _cases() -> list[tuple[str, Any, Any]]:
    at = datetime(2026, 12, 2, 17, 0, 5, 123456, tzinfo=UTC)
    cases: list[tuple[str, Any, Any]] = [
        ("json (dict of lists)", dict[str, list[int]], {"a": [1, 2]}),
        ("datetime", datetime, at),
        ("date", date, date(2026, 12, 2)),
        ("time", time, time(17, 0, 5)),
        ("timedelta", timedelta, timedelta(days=1, seconds=5)),
        ("UUID", uuid.UUID, uuid.UUID(int=7)),
        ("Decimal", Decimal, Decimal("9.95")),
        ("Enum", Color, Color.BLUE),
        ("tuple", tuple[int, str], (1, "a")),
        ("set", set[int], {1, 2}),
        ("frozenset", frozenset[str], frozenset({"a"})),
        ("TypedDict", Point, {"x": 1, "y": 2}),
        ("dataclass", Item, Item("a", 2, Decimal("1.5"))),
        ("attrs class", Address, Address("Main St", "1000")),
        ("Optional", int | None, None),
        ("union", int | str, "x"),
        (
            "nested generics",
            dict[str, list[tuple[Color, datetime]]],
            {"k": [(Color.RED, at)]},
        ),
        (
            "nested dataclass",
            Order,
            Order(
                uuid.UUID(int=1),
                at,
                [Item("a", 1, Decimal("2"))],
                Color.RED,
                Address("s", "z"),
                frozenset({"t"}),
            ),
        ),
    ]
    try:
        import pydantic

        class Quote(pydantic.BaseModel):
            total: Decimal
            at: datetime

        cases.append(("pydantic model", Quote, Quote(total=Decimal("3.5"), at=at)))
    except ImportError:
        pass
    return cases


class Library:
    name: str

    def encode(self, value: Any, tp: Any) -> bytes:
        """`value` as JSON."""
        raise NotImplementedError

    def decode(self, data: Any, tp: Any) -> Any:
        raise NotImplementedError

    def schema(self, tp: Any) -> Any:
        raise NotImplementedError


class Msgspec(Library):
    name = "msgspec"

    def __init__(self) -> None:
        from actorflow import _types

        self._types = _types

    def encode(self, value: Any, tp: Any) -> bytes:
        return orjson.dumps(value, default=self._types.to_json_native)  # what actorflow stores

    def decode(self, data: Any, tp: Any) -> Any:
        return self._types.TypeCodec(tp).decode(data)

    def schema(self, tp: Any) -> Any:
        return self._types.json_schema(tp)


class Cattrs(Library):
    name = "cattrs"

    def __init__(self) -> None:
        from cattrs.preconf.json import make_converter

        self._c = make_converter()

    def encode(self, value: Any, tp: Any) -> bytes:
        return orjson.dumps(self._c.unstructure(value, tp))

    def decode(self, data: Any, tp: Any) -> Any:
        return self._c.structure(data, tp)

    def schema(self, tp: Any) -> Any:
        raise NotImplementedError("cattrs has no JSON Schema")


class Pydantic(Library):
    name = "pydantic"

    def __init__(self) -> None:
        from pydantic import TypeAdapter

        self._adapter = TypeAdapter

    def encode(self, value: Any, tp: Any) -> bytes:
        return orjson.dumps(self._adapter(tp).dump_python(value, mode="json"))

    def decode(self, data: Any, tp: Any) -> Any:
        return self._adapter(tp).validate_python(data)

    def schema(self, tp: Any) -> Any:
        return self._adapter(tp).json_schema()


def _round_trip(lib: Library, tp: Any, value: Any) -> str:
    try:
        data = orjson.loads(lib.encode(value, tp))
        back = lib.decode(data, tp)
    except Exception as exc:
        return f"error: {type(exc).__name__}"[:36]
    if back != value:
        return f"unequal: {back!r}"[:36]
    if type(back) is not type(value) or _inner_types(back) != _inner_types(value):
        return f"other type: {type(back).__name__}"
    return "ok"


def _inner_types(value: Any) -> list[str]:
    """The types of a container's items, shallowly (a tuple must not come back as lists)."""
    if isinstance(value, dict):
        return [type(v).__name__ for v in value.values()]
    if isinstance(value, list | tuple):
        return [type(v).__name__ for v in value]
    return []


def _error(lib: Library) -> str:
    bad = {
        "id": str(uuid.UUID(int=1)),
        "at": "2026-12-02T17:00:00Z",
        "items": [{"sku": "a", "qty": "two", "price": "1"}],
        "color": "red",
        "address": {"street": "s", "zip": "z"},
        "tags": [],
    }
    try:
        lib.decode(bad, Order)
    except Exception as exc:
        return " ".join(str(exc).split())[:110]
    return "accepted a bad value"


def _lax(lib: Library) -> str:
    """Whether a string is accepted for an int (arguments must be checked, not coerced)."""
    try:
        got = lib.decode("1", int)
    except Exception:
        return "rejects '1' for int"
    return f"coerces '1' to {got!r}"


def _speed(lib: Library, n: int = 50_000) -> float:
    """Microseconds to encode, dump, load and decode a small dataclass."""
    value = Small("widget", 3, 9.5)
    if lib.name == "pydantic":  # the adapter built once, as a real integration would
        from pydantic import TypeAdapter

        adapter = TypeAdapter(Small)
        encode: Callable[[Any], bytes] = lambda v: orjson.dumps(  # noqa: E731
            adapter.dump_python(v, mode="json")
        )
        decode: Callable[[Any], Any] = adapter.validate_python
    elif lib.name == "msgspec":
        from actorflow import _types

        codec = _types.TypeCodec(Small)
        encode = lambda v: orjson.dumps(v, default=_types.to_json_native)  # noqa: E731
        decode = codec.decode
    else:
        encode = lambda v: lib.encode(v, Small)  # noqa: E731
        decode = lambda d: lib.decode(d, Small)  # noqa: E731
    start = clock.perf_counter()
    for _ in range(n):
        decode(orjson.loads(encode(value)))
    return (clock.perf_counter() - start) / n * 1e6


def main() -> None:
    libs: list[Library] = [Msgspec()]
    for cls in (Cattrs, Pydantic):
        try:
            libs.append(cls())
        except ImportError as exc:
            print(f"{cls.name}: not installed ({exc})", file=sys.stderr)
    width = 22
    print(f"{'':{width}}" + "".join(f"{lib.name:>40}" for lib in libs))
    for label, tp, value in _cases():
        print(f"{label:{width}}" + "".join(f"{_round_trip(lib, tp, value):>40}" for lib in libs))
    print()
    for lib in libs:
        print(f"{lib.name}: error at items[0].qty: {_error(lib)}")
        print(f"{lib.name}: strictness: {_lax(lib)}")
        try:
            lib.schema(Order)
            schema = "yes"
        except Exception as exc:
            schema = f"no ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"
        print(f"{lib.name}: JSON Schema of Order: {schema}")
        print(f"{lib.name}: encode+dumps+loads+decode of a 3-field dataclass: {_speed(lib):.2f} us")


if __name__ == "__main__":
    main()
