"""Bad input is refused where it enters, with the path of the bad value, and stores nothing."""

from __future__ import annotations

import asyncio
import datetime
import tracemalloc
import uuid
from typing import Any

import pytest

import actorflow as af
from actorflow._serde import dumps, encode


@af.step(retry=af.Retry(limit=3, delay=0))
async def serde_bad_return(key: str) -> Any:
    calls.append(key)
    return {"ok": [1, 2, object()]}


calls: list[str] = []


@af.workflow
async def serde_step_returns_set(key: str) -> Any:
    return await serde_bad_return(key)


@af.workflow
async def serde_returns_object() -> Any:
    return {"when": object()}


@af.workflow
async def serde_echo(value: Any) -> Any:
    return value


@af.workflow
async def serde_waits() -> Any:
    return await af.wait_for_event("data")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (object(), "args[0]"),
        ({"a": [1, {"b": object()}]}, "args[0]['a'][1]['b']"),
        ({1: "int key"}, "args[0][1]"),
        ([b"bytes"], "args[0][0]"),
        (2**70, "args[0]"),
    ],
)
async def test_start_refuses_unserializable_args_and_records_nothing(
    engine: af.Engine, value: Any, path: str
) -> None:
    with pytest.raises(af.SerializationError) as caught:
        await engine.start(serde_echo, value, id="never")
    assert str(caught.value).startswith(f"{path} cannot be serialized")
    assert not await engine.get_run("never").exists()
    assert await engine.list_runs() == []


@af.workflow
async def serde_two_args(a: int, b: int = 0, *, flag: bool = False) -> int:
    return a + b


@af.workflow
async def serde_variadic(first: int, *rest: int) -> int:
    return first + sum(rest)


@af.workflow
async def serde_keyword_only(*, key: str) -> str:
    return key


@af.workflow
async def serde_bad_child(n_args: int) -> str:
    try:
        await af.start(serde_two_args, *range(n_args))
    except TypeError as exc:
        return f"refused: {exc}"
    return "started"


@pytest.mark.parametrize(
    ("workflow", "args", "message"),
    [
        (serde_two_args, (), "workflow 'serde_two_args' takes 1 to 2 positional arguments, got 0"),
        (serde_two_args, (1, 2, 3), "takes 1 to 2 positional arguments, got 3"),
        (serde_echo, (1, 2), "workflow 'serde_echo' takes 1 positional argument, got 2"),
        (serde_variadic, (), "takes at least 1 positional arguments, got 0"),
        (serde_keyword_only, (), "has a required keyword-only parameter 'key'"),
    ],
)
async def test_start_refuses_arguments_the_workflow_cannot_take_and_records_nothing(
    engine: af.Engine, workflow: Any, args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        await engine.start(workflow, *args, id="never")
    assert not await engine.get_run("never").exists()
    assert await engine.list_runs() == []


async def test_start_many_refuses_bad_arguments_naming_the_input(engine: af.Engine) -> None:
    with pytest.raises(TypeError, match=r"^inputs\[1\]: workflow 'serde_two_args' .* got 3$"):
        await engine.start_many(serde_two_args, [(1,), (1, 2, 3), (2,)])
    assert await engine.list_runs() == []


async def test_arguments_a_workflow_can_take_are_accepted(engine: af.Engine) -> None:
    runs = [
        await engine.start(serde_two_args, 1),
        await engine.start(serde_two_args, 1, 2),
        await engine.start(serde_variadic, 1, 2, 3, 4),
    ]
    assert [await r.result(timeout=5) for r in runs] == [1, 3, 10]


async def test_a_child_start_with_bad_arguments_raises_in_the_parent(engine: af.Engine) -> None:
    run = await engine.start(serde_bad_child, 3)
    assert await run.result(timeout=5) == (
        "refused: child run: workflow 'serde_two_args' takes 1 to 2 positional arguments, got 3"
    )
    assert [r.id for r in await engine.list_runs()] == [run.id]  # no child was recorded


async def test_start_refuses_unserializable_metadata(engine: af.Engine) -> None:
    with pytest.raises(af.SerializationError, match=r"metadata\['x'\]"):
        await engine.start(serde_echo, 1, metadata={"x": object()})
    assert await engine.list_runs() == []


async def test_json_values_round_trip_as_json(engine: af.Engine) -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    ident = uuid.UUID(int=7)
    run = await engine.start(serde_echo, {"t": (1, 2), "when": when, "id": ident, "n": None})
    assert await run.result(timeout=5) == {
        "t": [1, 2],
        "when": "2026-01-02T03:04:05+00:00",
        "id": str(ident),
        "n": None,
    }


async def test_send_event_refuses_unserializable_payload(engine: af.Engine) -> None:
    run = await engine.start(serde_waits)
    with pytest.raises(af.SerializationError, match=r"event payload\['f'\]"):
        await run.send_event("data", {"f": lambda: 1})
    with pytest.raises(ValueError):
        await run.send_event("", 1)
    await run.send_event("data", {"fine": True})
    assert await run.result(timeout=5) == {"fine": True}
    received = [e async for e in run.events() if e.kind == "event_received"]
    assert [e.data for e in received] == [{"fine": True}]


async def test_unserializable_step_result_fails_the_step_without_retry(
    engine: af.Engine,
) -> None:
    key = f"bad-return-{engine.url}"
    run = await engine.start(serde_step_returns_set, key)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "SerializationError"
    assert "step 'serde_bad_return' result['ok'][2]" in caught.value.error.message
    assert calls.count(key) == 1


async def test_unserializable_workflow_result_fails_the_run(engine: af.Engine) -> None:
    run = await engine.start(serde_returns_object)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "SerializationError"
    assert "workflow result['when']" in caught.value.error.message


def test_encode_names_dataclass_fields() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Order:
        id: str
        items: list[Any]

    assert encode(Order("o", [1]), "x") == b'{"id":"o","items":[1]}'
    with pytest.raises(af.SerializationError, match=r"x\.items\[0\]"):
        encode(Order("o", [asyncio.Event()]), "x")


@af.step(name="serde.big_return", retry=af.Retry(limit=3, delay=0))
async def serde_big_return(size: int) -> str:
    return "x" * size


@af.workflow(name="serde.big_step")
async def serde_big_step(size: int) -> str:
    return await serde_big_return(size)


@af.workflow(name="serde.grows")
async def serde_grows(size: int) -> str:
    return "x" * size


@af.workflow(name="serde.big_child")
async def serde_big_child(size: int) -> str:
    try:
        await af.start(serde_echo, "x" * size)
    except af.SerializationError as exc:
        return str(exc)
    return "started"


@af.step(name="serde.loud_failure")
async def serde_loud_failure() -> None:
    raise af.FatalError("body: " + "y" * 200_000)


@af.workflow(name="serde.loud")
async def serde_loud() -> None:
    await serde_loud_failure()


async def test_payloads_over_max_payload_bytes_are_refused_where_they_enter(
    store_url: str,
) -> None:
    async with af.Engine(store_url, max_payload_bytes=1000) as engine:
        with pytest.raises(af.SerializationError, match=r"args is 2,004 bytes as JSON.*1,000"):
            await engine.start(serde_echo, "x" * 2000)
        with pytest.raises(af.SerializationError, match=r"inputs\[1\] is"):
            await engine.start_many(serde_echo, [("small",), ("x" * 2000,)])
        with pytest.raises(af.SerializationError, match="metadata is"):
            await engine.start(serde_echo, 1, metadata={"blob": "x" * 2000})
        assert await engine.list_runs() == []

        waiting = await engine.start(serde_waits)
        with pytest.raises(af.SerializationError, match="event payload is"):
            await waiting.send_event("data", "x" * 2000)
        await waiting.send_event("data", "small")
        assert await waiting.result(timeout=5) == "small"

        big_step = await engine.start(serde_big_step, 2000)
        with pytest.raises(af.RunFailedError) as caught:
            await big_step.result(timeout=5)
        assert caught.value.error.type == "SerializationError"
        assert "step 'serde.big_return' result is 2,002 bytes" in caught.value.error.message
        [step] = (await big_step.info()).steps
        assert step.attempts == 1, "an oversized result is not retried"

        grows = await engine.start(serde_grows, 2000)
        with pytest.raises(af.RunFailedError) as caught:
            await grows.result(timeout=5)
        assert caught.value.error.type == "SerializationError"
        assert "workflow result is 2,002 bytes" in caught.value.error.message
        child = await engine.start(serde_big_child, 2000)
        assert "arguments of child workflow 'serde_echo' is" in await child.result(timeout=5)


async def test_max_payload_bytes_is_checked() -> None:
    for bad in (0, -1, 1.5, 2**40):
        with pytest.raises(ValueError, match="max_payload_bytes"):
            af.Engine("memory://", max_payload_bytes=bad)  # type: ignore[arg-type]


async def test_long_error_messages_are_cut_before_they_are_stored(engine: af.Engine) -> None:
    run = await engine.start(serde_loud)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    message = caught.value.error.message
    assert message.startswith("body: yyy")
    assert message.endswith("more characters cut]")
    assert len(message) < 70_000


@af.workflow(name="tests.serialization.waits_for_go")
async def waits_for_go() -> Any:
    return await af.wait_for_event("go", timeout=10)


@af.workflow(name="tests.serialization.hook_with")
async def hook_with(token: str) -> Any:
    return await af.create_hook(token)


async def test_a_nul_in_a_key_is_refused_where_it_enters(store_url: str) -> None:
    """Event types, hook tokens and stream namespaces are text in the stores; PostgreSQL's
    text cannot hold NUL, and a row refused at commit would fail its whole batch. So a
    NUL (not printable) is refused at the call, on every store, and the run goes on."""
    async with af.Engine(store_url, workflows=[waits_for_go, hook_with]) as engine:
        run = await engine.start(waits_for_go)
        with pytest.raises(af.InvalidNameError, match="event type must be printable"):
            await run.send_event("g\x00o", 1)
        with pytest.raises(af.InvalidNameError, match="stream namespace must be printable"):
            await anext(aiter(run.stream(namespace="a\x00b")))
        hooked = await engine.start(hook_with, "t\x00k")
        with pytest.raises(af.RunFailedError, match="hook token must be printable"):
            await hooked.result(timeout=10)
        await run.send_event("go", 2)
        assert await run.result(timeout=10) == 2


def test_stored_values_take_their_length_in_memory() -> None:
    """orjson (3.12 on) returns its 4 KiB working buffer with only the length set; a run
    keeps its encoded values until they are committed, so each would hold a page."""
    values = [{"n": i} for i in range(1000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode(value, "value") for value in values]
        kept += [dumps({"fire_at": i}) for i in range(1000)]
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert kept[0] == b'{"n":0}' and kept[-1] == b'{"fire_at":999}'
    assert per_value < 100, f"{per_value:.0f} bytes per encoded value"
