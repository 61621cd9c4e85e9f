"""Durable sleeps, events and hooks, on memory:// and SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import actorflow as af
from tests._probes import PROBES, Probe, new_probe
from tests.conftest import wait_for_status

S = af.RunStatus


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield from new_probe()


@af.step
async def wait_mark(key: str, name: str) -> int:
    return PROBES[key].hit(name)


@af.step
async def wait_block(key: str, name: str) -> None:
    p = PROBES[key]
    p.hit(name)
    await p.gate(f"{name}:go")


@af.step
async def wait_now() -> float:
    return time.time()


# -- sleep ----------------------------------------------------------------------------------


@af.workflow
async def wait_sleeper(key: str, duration: Any) -> list[float]:
    if duration == "timedelta-200ms":
        duration = timedelta(milliseconds=200)
    before = await wait_now()
    await wait_mark(key, "before")
    await af.sleep(duration)
    after = await wait_now()
    await wait_mark(key, "after")
    return [before, after]


@pytest.mark.parametrize("duration", ["200ms", 0.2, "timedelta-200ms"])
async def test_sleep_waits_durably(engine: af.Engine, probe: Probe, duration: Any) -> None:
    run = await engine.start(wait_sleeper, probe.key, duration)
    await probe.reached("before")
    await wait_for_status(run, S.WAITING)
    assert probe.calls["after"] == 0
    before, after = await run.result(timeout=5)
    assert after - before >= 0.2
    assert probe.calls == {"before": 1, "after": 1}
    kinds = [e.kind async for e in run.events()]
    assert kinds.index("sleep_started") < kinds.index("sleep_fired")


async def test_sleep_zero_and_bad_durations(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(wait_sleeper, probe.key, "0s")
    before, after = await run.result(timeout=5)
    assert after >= before
    for bad in ("soon", -1):
        failed = await engine.start(wait_sleeper, probe.key, bad)
        with pytest.raises(af.RunFailedError) as caught:
            await failed.result(timeout=5)
        assert caught.value.error.type == "ValueError"
        assert "sleep duration" in caught.value.error.message


@af.workflow
async def wait_until_worker(key: str, when: str) -> float:
    await af.sleep_until(datetime.fromisoformat(when))
    return await wait_now()


async def test_sleep_until_aware_datetime(engine: af.Engine, probe: Probe) -> None:
    # A non-UTC zone: the instant is what counts, not the wall-clock digits.
    zone = timezone(timedelta(hours=-5))
    target = datetime.now(zone) + timedelta(milliseconds=200)
    run = await engine.start(wait_until_worker, probe.key, target.isoformat())
    await wait_for_status(run, S.WAITING)
    woke = await run.result(timeout=5)
    assert woke >= target.timestamp()
    sleep = [e async for e in run.events() if e.kind == "sleep_started"]
    assert sleep[0].data["fire_at"] == pytest.approx(target.timestamp())


async def test_sleep_until_past_datetime_returns_at_once(engine: af.Engine, probe: Probe) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    run = await engine.start(wait_until_worker, probe.key, past.isoformat())
    assert await run.result(timeout=5) >= past.timestamp()


@af.workflow
async def wait_naive(catch: bool) -> str:
    try:
        await af.sleep_until(datetime(2030, 1, 1))
    except ValueError as exc:
        if catch:
            return f"refused: {exc}"
        raise
    return "slept"


async def test_sleep_until_naive_datetime_is_an_error(engine: af.Engine) -> None:
    caught_run = await engine.start(wait_naive, True)
    message = await caught_run.result(timeout=5)
    assert message.startswith("refused:") and "timezone-aware" in message
    failing = await engine.start(wait_naive, False)
    with pytest.raises(af.RunFailedError) as caught:
        await failing.result(timeout=5)
    assert caught.value.error.type == "ValueError"
    assert "timezone-aware" in caught.value.error.message


# -- events ---------------------------------------------------------------------------------


@af.workflow
async def wait_three(key: str) -> list[Any]:
    await wait_block(key, "gate")
    got = [await af.wait_for_event("wait_item") for _ in range(3)]
    got.append(await af.wait_for_event("wait_other"))
    return got


async def test_events_sent_before_the_wait_are_buffered_in_order(
    engine: af.Engine, probe: Probe
) -> None:
    run = await engine.start(wait_three, probe.key)
    await probe.reached("gate")
    # Nobody waits yet: all of these are buffered, per type, in order.
    await run.send_event("wait_other", "o")
    for i in (1, 2):
        await run.send_event("wait_item", {"i": i})
    probe.open("gate:go")
    # The workflow takes both buffered items, then waits for the third.
    await wait_for_status(run, S.WAITING)
    await run.send_event("wait_item", {"i": 3})
    assert await run.result(timeout=5) == [{"i": 1}, {"i": 2}, {"i": 3}, "o"]


@af.workflow
async def wait_one(type: str) -> Any:
    return await af.wait_for_event(type)


async def test_event_delivered_while_waiting(engine: af.Engine) -> None:
    run = await engine.start(wait_one, "wait_ping")
    await wait_for_status(run, S.WAITING)
    await run.send_event("wait_other_type", 0)  # another type does not wake it
    assert await run.status() == S.WAITING
    await run.send_event("wait_ping", [1, "two", None])
    assert await run.result(timeout=5) == [1, "two", None]
    kinds = [e.kind async for e in run.events()]
    assert kinds.count("event_received") == 2


async def test_send_event_refusals(engine: af.Engine) -> None:
    run = await engine.start(wait_one, "wait_ping")
    await wait_for_status(run, S.WAITING)
    with pytest.raises(ValueError):
        await run.send_event("", 1)
    with pytest.raises(ValueError):
        await run.send_event("hook:sneaky", 1)
    with pytest.raises(af.SerializationError):
        await run.send_event("wait_ping", {"bad": object()})
    assert await run.status() == S.WAITING  # nothing was recorded
    await run.send_event("wait_ping", "ok")
    assert await run.result(timeout=5) == "ok"
    with pytest.raises(af.InvalidStateError):
        await run.send_event("wait_ping", "late")
    with pytest.raises(af.RunNotFoundError):
        await engine.get_run("wait-no-such-run").send_event("wait_ping", 1)


@af.workflow
async def wait_with_timeout(timeout: str, catch: bool) -> Any:
    try:
        return await af.wait_for_event("wait_approval", timeout=timeout)
    except af.EventTimeoutError as exc:
        if not catch:
            raise
        return f"timed out: {exc}"


async def test_wait_for_event_timeout_is_catchable(engine: af.Engine) -> None:
    started = time.time()
    run = await engine.start(wait_with_timeout, "100ms", True)
    result = await run.result(timeout=5)
    assert result.startswith("timed out") and "wait_approval" in result
    assert time.time() - started >= 0.1
    kinds = [e.kind async for e in run.events()]
    assert "wait_timed_out" in kinds


async def test_wait_for_event_timeout_uncaught_fails_run(engine: af.Engine) -> None:
    run = await engine.start(wait_with_timeout, "50ms", False)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == "EventTimeoutError"


async def test_event_before_timeout_wins(engine: af.Engine) -> None:
    run = await engine.start(wait_with_timeout, "30s", True)
    await wait_for_status(run, S.WAITING)
    assert (await run.info()).status == S.WAITING
    await run.send_event("wait_approval", {"ok": True})
    assert await run.result(timeout=5) == {"ok": True}
    kinds = [e.kind async for e in run.events()]
    assert "wait_timed_out" not in kinds


@af.workflow
async def wait_timeout_then_event(key: str) -> list[Any]:
    out: list[Any] = []
    try:
        await af.wait_for_event("wait_late", timeout="50ms")
    except af.EventTimeoutError:
        out.append("timeout")
    await wait_block(key, "after-timeout")
    out.append(await af.wait_for_event("wait_late"))
    return out


async def test_event_after_timeout_is_buffered_for_the_next_wait(
    engine: af.Engine, probe: Probe
) -> None:
    run = await engine.start(wait_timeout_then_event, probe.key)
    await probe.reached("after-timeout")
    await run.send_event("wait_late", "second wait gets it")
    probe.open("after-timeout:go")
    assert await run.result(timeout=5) == ["timeout", "second wait gets it"]


# -- hooks ----------------------------------------------------------------------------------


@af.workflow
async def wait_hook_once(token: str) -> Any:
    hook = af.create_hook(token)
    return {"token": hook.token, "payload": await hook}


@af.workflow
async def wait_hook_loop(token: str) -> list[Any]:
    got: list[Any] = []
    async for payload in af.create_hook(token):
        if payload == "stop":
            break
        got.append(payload)
    return got


async def test_hook_receives_payload(engine: af.Engine, probe: Probe) -> None:
    token = f"wait-hook-{probe.key}"
    run = await engine.start(wait_hook_once, token)
    await wait_for_status(run, S.WAITING)
    await engine.resume_hook(token, {"approved": True})
    assert await run.result(timeout=5) == {"token": token, "payload": {"approved": True}}
    # The token is released when the run finishes.
    with pytest.raises(af.HookNotFoundError):
        await engine.resume_hook(token, 1)


async def test_hook_async_for_and_buffering(engine: af.Engine, probe: Probe) -> None:
    token = f"wait-loop-{probe.key}"
    run = await engine.start(wait_hook_loop, token)
    await wait_for_status(run, S.WAITING)
    for payload in (1, {"two": 2}, [3], "stop"):
        await engine.resume_hook(token, payload)
    assert await run.result(timeout=5) == [1, {"two": 2}, [3]]
    with pytest.raises(af.HookNotFoundError):
        await engine.resume_hook(token, "after the loop ended")


@af.workflow
async def wait_hook_after_step(key: str, token: str) -> list[Any]:
    hook = af.create_hook(token)
    await wait_block(key, "hook-gate")
    return [await hook, await hook]


async def test_hook_payloads_sent_before_await_are_buffered(
    engine: af.Engine, probe: Probe
) -> None:
    token = f"wait-early-{probe.key}"
    run = await engine.start(wait_hook_after_step, probe.key, token)
    await probe.reached("hook-gate")
    await engine.resume_hook(token, "first")
    await engine.resume_hook(token, "second")
    probe.open("hook-gate:go")
    assert await run.result(timeout=5) == ["first", "second"]


async def test_resume_unknown_hook(engine: af.Engine) -> None:
    with pytest.raises(af.HookNotFoundError):
        await engine.resume_hook("wait-nobody-holds-this", 1)
    with pytest.raises(ValueError):
        await engine.resume_hook("", 1)


@af.workflow
async def wait_hook_conflict(token: str) -> str:
    try:
        af.create_hook(token)
    except af.HookConflictError as exc:
        return f"conflict: {exc}"
    return "got it"


async def test_hook_token_in_use_conflicts(engine: af.Engine, probe: Probe) -> None:
    token = f"wait-conflict-{probe.key}"
    holder = await engine.start(wait_hook_once, token)
    await wait_for_status(holder, S.WAITING)
    second = await engine.start(wait_hook_conflict, token)
    message = await second.result(timeout=5)
    assert message.startswith("conflict:") and token in message
    # The holder still owns the token.
    await engine.resume_hook(token, "for the holder")
    assert (await holder.result(timeout=5))["payload"] == "for the holder"
    # Once the holder finished, the token is free again.
    third = await engine.start(wait_hook_conflict, token)
    assert await third.result(timeout=5) == "got it"


@af.workflow
async def wait_hook_uncaught_conflict(token: str) -> str:
    af.create_hook(token)
    return "unreachable"


async def test_hook_conflict_uncaught_fails_run(engine: af.Engine, probe: Probe) -> None:
    token = f"wait-conflict2-{probe.key}"
    holder = await engine.start(wait_hook_once, token)
    await wait_for_status(holder, S.WAITING)
    loser = await engine.start(wait_hook_uncaught_conflict, token)
    with pytest.raises(af.RunFailedError) as caught:
        await loser.result(timeout=5)
    assert caught.value.error.type == "HookConflictError"
    await holder.terminate()
    # A terminated run releases its hooks.
    with pytest.raises(af.HookNotFoundError):
        await engine.resume_hook(token, 1)


@af.step
async def wait_publish(key: str, token: str) -> None:
    p = PROBES[key]
    p.values["token"] = token
    p.hit("published")


@af.workflow
async def wait_random_hook(key: str) -> Any:
    hook = af.create_hook()
    await wait_publish(key, hook.token)
    return await hook


async def test_hook_with_generated_token(engine: af.Engine, probe: Probe) -> None:
    run = await engine.start(wait_random_hook, probe.key)
    await probe.reached("published")
    token = probe.values["token"]
    assert isinstance(token, str) and len(token) >= 16
    await wait_for_status(run, S.WAITING)
    await engine.resume_hook(token, "hello")
    assert await run.result(timeout=5) == "hello"
