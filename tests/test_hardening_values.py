"""Issue 15, items 6 and 7 (and the value half of 2): values JSON cannot hold as they
are (a value containing itself, one nested too deeply, NaN and infinities) are refused
with `SerializationError` naming the path, wherever they enter, and nothing is stored."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

import actorflow as af


def _cyclic() -> Any:
    value: dict[str, Any] = {"items": [1]}
    value["items"].append(value)
    return value


def _deep() -> Any:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    return value


BAD: dict[str, tuple[Callable[[], Any], str]] = {
    "cyclic": (_cyclic, r"\['items'\]\[1\] cannot be serialized .*: the value contains itself"),
    "deep": (_deep, r"[][0.]+ cannot be serialized to JSON: nested more than 254 levels deep"),
    "nan": (lambda: {"price": [1.0, math.nan]}, r"\['price'\]\[1\] .*nan is not a JSON number"),
    "inf": (lambda: {"price": math.inf}, r"\['price'\] .*inf is not a JSON number"),
    "-inf": (lambda: [-math.inf], r"\[0\] .*-inf is not a JSON number"),
}
KINDS = sorted(BAD)


@af.workflow(name="hv.echo")
async def hv_echo(value: Any) -> Any:
    return value


@af.workflow(name="hv.waits")
async def hv_waits() -> Any:
    return await af.wait_for_event("data")


calls: list[str] = []


@af.step(name="hv.bad_return", retry=af.Retry(limit=3, delay=0))
async def hv_bad_return(kind: str, key: str) -> Any:
    calls.append(key)
    return BAD[kind][0]()


@af.workflow(name="hv.step_returns")
async def hv_step_returns(kind: str, key: str) -> Any:
    return await hv_bad_return(kind, key)


@af.workflow(name="hv.returns")
async def hv_returns(kind: str) -> Any:
    return BAD[kind][0]()


@af.step(name="hv.step_writes")
async def hv_step_writes(kind: str) -> str:
    try:
        await af.get_writable().write(BAD[kind][0]())
    except af.SerializationError as exc:
        return str(exc)
    return "written"


@af.workflow(name="hv.writes")
async def hv_writes(kind: str) -> list[str]:
    try:
        await af.get_writable().write(BAD[kind][0]())
        in_body = "written"
    except af.SerializationError as exc:
        in_body = str(exc)
    return [in_body, await hv_step_writes(kind)]


@pytest.mark.parametrize("kind", KINDS)
async def test_start_refuses_the_value_and_records_nothing(engine: af.Engine, kind: str) -> None:
    make, message = BAD[kind]
    with pytest.raises(af.SerializationError, match=r"^args\[0\]" + message):
        await engine.start(hv_echo, make(), id="never")
    with pytest.raises(af.SerializationError, match=r"^metadata" + message):
        await engine.start(hv_echo, 1, id="never", metadata=make())
    assert await engine.list_runs() == []


@pytest.mark.parametrize("kind", KINDS)
async def test_send_event_refuses_the_value(engine: af.Engine, kind: str) -> None:
    make, message = BAD[kind]
    run = await engine.start(hv_waits)
    with pytest.raises(af.SerializationError, match=r"^event payload" + message):
        await run.send_event("data", make())
    await run.send_event("data", "fine")
    assert await run.result(timeout=5) == "fine"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_step_returning_the_value_fails_at_once(engine: af.Engine, kind: str) -> None:
    key = f"{kind}-{engine.url}"
    run = await engine.start(hv_step_returns, kind, key)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "SerializationError"
    assert caught.value.error.message.startswith("step 'hv.bad_return' result")
    assert calls.count(key) == 1  # not retried


@pytest.mark.parametrize("kind", KINDS)
async def test_a_workflow_returning_the_value_fails(engine: af.Engine, kind: str) -> None:
    run = await engine.start(hv_returns, kind)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "SerializationError"
    assert caught.value.error.message.startswith("workflow result")
    assert await run.status() == af.RunStatus.FAILED


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_writes_refuse_the_value(engine: af.Engine, kind: str) -> None:
    run = await engine.start(hv_writes, kind)
    in_body, in_step = await run.result(timeout=5)
    assert in_body.startswith("stream chunk") and "cannot be serialized" in in_body
    assert in_step.startswith("stream chunk") and "cannot be serialized" in in_step
    assert [c async for c in run.stream()] == []


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@af.workflow(name="hv.raises_unprintable")
async def hv_raises_unprintable() -> None:
    raise _Unprintable


async def test_a_workflow_raising_an_error_whose_str_raises_fails(engine: af.Engine) -> None:
    run = await engine.start(hv_raises_unprintable)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "_Unprintable"
    assert "str() of the _Unprintable raised RuntimeError" in caught.value.error.message
    assert await run.status() == af.RunStatus.FAILED
