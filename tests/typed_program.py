"""Typed workflows: one value of every supported type through arguments, steps, an event and
the result. Imported by tests/test_types.py, and run by it as a subprocess that is killed
with SIGKILL while the run is held in its `hold` step:

    python tests/typed_program.py DB_PATH RUN_ID

prints `open PID`, then `checked MISMATCHES` once the workflow has compared every value
its steps returned live with what it expected, then `held` (and waits to be killed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

import attrs
import pydantic

if __package__ in (None, ""):  # run as a script: make `actorflow` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actorflow as af


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Line:
    sku: str
    qty: int
    price: Decimal


@attrs.frozen
class Address:
    street: str
    city: str


class Point(TypedDict):
    x: int
    y: int


class Quote(pydantic.BaseModel):
    total: Decimal
    valid_until: datetime


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    placed: datetime
    lines: list[Line]
    color: Color
    address: Address
    tags: frozenset[str]
    note: str | None = None


@dataclasses.dataclass
class Approval:
    by: str
    at: datetime


AT = datetime(2026, 12, 2, 17, 0, 5, 123456, tzinfo=UTC)
ORDER = Order(
    uuid.UUID(int=42),
    AT,
    [Line("lamp", 2, Decimal("19.95")), Line("book", 1, Decimal("7.50"))],
    Color.BLUE,
    Address("1 Main St", "Springfield"),
    frozenset({"gift", "express"}),
)
APPROVAL = Approval("alice", AT + timedelta(hours=1))

# One value per supported type (name, annotation, value): each goes through a step of its own.
CASES: list[tuple[str, Any, Any]] = [
    ("json", dict[str, list[int]], {"a": [1, 2]}),
    ("datetime", datetime, AT),
    ("naive datetime", datetime, datetime(2026, 1, 2, 3, 4, 5)),
    ("date", date, date(2026, 12, 2)),
    ("time", time, time(17, 0, 5, 250)),
    ("timedelta", timedelta, timedelta(days=2, seconds=5, microseconds=7)),
    ("uuid", uuid.UUID, uuid.UUID(int=7)),
    ("decimal", Decimal, Decimal("9.95")),
    ("enum", Color, Color.RED),
    ("tuple", tuple[int, str, Color], (1, "a", Color.BLUE)),
    ("set", set[int], {3, 1, 2}),
    ("frozenset", frozenset[str], frozenset({"x", "y"})),
    ("typeddict", Point, Point(x=1, y=2)),
    ("dataclass", Line, Line("pen", 3, Decimal("1.25"))),
    ("attrs", Address, Address("2 Side St", "Shelbyville")),
    ("pydantic", Quote, Quote(total=Decimal("42.10"), valid_until=AT)),
    ("optional none", int | None, None),
    ("optional value", Decimal | None, Decimal("1")),
    ("union", int | Color, Color.RED),
    ("nested", dict[str, list[tuple[Color, datetime]]], {"k": [(Color.RED, AT)]}),
    ("nested dataclass", Order, ORDER),
]


def _case_step(name: str, annotation: Any, value: Any) -> af.StepFunction[[], Any]:
    def produce() -> Any:
        return value

    produce.__annotations__ = {"return": annotation}
    return af.step(name=f"typed.{name}")(produce)


STEPS = [_case_step(*case) for case in CASES]


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types, down into containers and dataclass fields."""
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, dict):
        return all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, set | frozenset):
        return sorted(map(repr, a)) == sorted(map(repr, b))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if attrs.has(type(a)):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    return True


@dataclasses.dataclass
class Report:
    order: Order
    at: datetime
    color: Color
    mismatches: list[str]
    approval: Approval
    values: list[Any]


# In the subprocess, `hold` waits here until the process is killed.
hold_forever: asyncio.Event | None = None
say: Callable[[str], None] = lambda line: None  # noqa: E731


@af.step(name="typed.checked")
def checked(mismatches: list[str]) -> None:
    say(f"checked {','.join(mismatches) or '-'}")


@af.step(name="typed.hold")
async def hold() -> None:
    if hold_forever is not None:
        say("held")
        await hold_forever.wait()


@af.step(name="typed.echo")
async def echo(order: Order) -> Order:
    return order


@af.workflow(name="typed.everything")
async def everything(order: Order, at: datetime, color: Color) -> Report:
    """Checks what it gets, live and on replay: arguments, then each step's result."""
    arguments = [("order", order, ORDER), ("at", at, AT), ("color", color, Color.BLUE)]
    values = [await step() for step in STEPS]
    results = [(name, got, value) for (name, _, value), got in zip(CASES, values, strict=True)]
    expected = [*arguments, *results]
    mismatches = [name for name, got, value in expected if not same(got, value)]
    echoed = await echo(order)
    if not same(echoed, ORDER):
        mismatches.append("echo")
    await checked(mismatches)
    await hold()
    approval = await af.wait_for_event("approval", type=Approval)
    if not same(approval, APPROVAL):
        mismatches.append("approval")
    return Report(echoed, at, color, mismatches, approval, values)


async def main(db: str, run_id: str) -> None:
    global hold_forever, say
    hold_forever = asyncio.Event()

    def say_line(line: str) -> None:
        os.write(1, (line + "\n").encode())

    say = say_line
    async with af.Engine(f"sqlite:///{db}", workflows=[everything]) as engine:
        say(f"open {os.getpid()}")
        await engine.start(everything, ORDER, AT, Color.BLUE, id=run_id)
        await asyncio.Event().wait()


if __name__ == "__main__":
    af.run(main(sys.argv[1], sys.argv[2]))
