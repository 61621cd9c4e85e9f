"""Issue 15, items 8, 11, 12 and 13: names callers choose are bounded, step and child
run ids never collide, and a run id belongs to one workflow."""

from __future__ import annotations

from typing import Any

import pytest

import actorflow as af

LONG = "t" * 256


@af.step(name="hid.whoami")
async def hid_whoami() -> str:
    return af.step_info().step_id


@af.workflow(name="hid.ids")
async def hid_ids() -> list[str]:
    return [await hid_whoami(), await hid_whoami()]


@af.workflow(name="hid.other")
async def hid_other() -> str:
    return "other"


@af.workflow(name="hid.waits")
async def hid_waits() -> Any:
    return await af.wait_for_event("t" * 255)


@af.workflow(name="hid.child")
async def hid_child(n: int) -> int:
    return n * 2


@af.workflow(name="hid.parent")
async def hid_parent() -> list[Any]:
    child = await af.start(hid_child, 21)
    return [child.id, await child.result()]


@af.workflow(name="hid.waits_long")
async def hid_waits_long(kind: str) -> str:
    try:
        if kind == "event":
            await af.wait_for_event(LONG)
        elif kind == "hook":
            af.create_hook(LONG)
        elif kind == "stream":
            af.get_writable(LONG)
        else:
            await af.start(hid_child, 1, id=LONG)
    except af.InvalidNameError as exc:
        return str(exc)
    return "accepted"


async def test_event_types_are_bounded_where_they_enter(engine: af.Engine) -> None:
    run = await engine.start(hid_waits)
    for event_type in (LONG, "t" * 5_000_000):
        with pytest.raises(af.InvalidNameError, match="event type must be at most 255"):
            await run.send_event(event_type, 1)
    await run.send_event("t" * 255, 1)  # the longest allowed
    assert await run.result(timeout=5) == 1


async def test_hook_tokens_and_run_ids_are_bounded_where_they_enter(engine: af.Engine) -> None:
    with pytest.raises(af.InvalidNameError, match="hook token must be at most 255"):
        await engine.resume_hook(LONG, 1)
    with pytest.raises(af.InvalidNameError, match="run id must be at most 255"):
        await engine.start(hid_other, id=LONG)
    with pytest.raises(af.InvalidNameError, match="run id must be at most 255"):
        engine.get_run(LONG)


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("event", "event type"),
        ("hook", "hook token"),
        ("stream", "stream namespace"),
        ("child", "run id"),
    ],
)
async def test_names_from_workflow_code_are_bounded(
    engine: af.Engine, kind: str, what: str
) -> None:
    run = await engine.start(hid_waits_long, kind)
    assert await run.result(timeout=5) == (
        f"{what} must be at most 255 characters, got 256 ({'t' * 40!r}...)"
    )


async def test_step_ids_of_a_restarted_run_and_of_a_run_named_like_it_differ(
    engine: af.Engine,
) -> None:
    first = await engine.start(hid_ids, id="a")
    assert await first.result(timeout=5) == ["a:0", "a:1"]
    await first.restart()
    assert await first.result(timeout=5) == ["a:1.0", "a:1.1"]
    lookalike = await engine.start(hid_ids, id="a:1")
    assert await lookalike.result(timeout=5) == ["a:1:0", "a:1:1"]


async def test_child_ids_cannot_collide_with_chosen_ids(engine: af.Engine) -> None:
    squatter = await engine.start(hid_child, 1, id="P.0")  # the old scheme's child id
    parent = await engine.start(hid_parent, id="P")
    assert await parent.result(timeout=5) == ["P~0", 42]
    assert await squatter.result(timeout=5) == 2
    with pytest.raises(af.InvalidNameError, match="'~', which is reserved"):
        await engine.start(hid_child, 1, id="P~0")
    with pytest.raises(af.InvalidNameError, match="reserved"):
        await engine.start_many(hid_child, [(1,)], ids=["Q~1"])
    assert await engine.get_run("P~0").result(timeout=5) == 42  # lookups accept child ids


async def test_a_child_of_a_restarted_parent_gets_a_new_id(engine: af.Engine) -> None:
    parent = await engine.start(hid_parent, id="R")
    assert await parent.result(timeout=5) == ["R~0", 42]
    await parent.restart()
    assert await parent.result(timeout=5) == ["R~1.0", 42]


@pytest.mark.parametrize("if_exists", ["return", "error"])
async def test_starting_an_id_held_by_another_workflow_raises(
    engine: af.Engine, if_exists: Any
) -> None:
    run = await engine.start(hid_other, id="x")
    assert await run.result(timeout=5) == "other"
    with pytest.raises(af.RunAlreadyExistsError, match=r"'x'.*'hid\.other'.*'hid\.child'"):
        await engine.start(hid_child, 1, id="x", if_exists=if_exists)
    with pytest.raises(af.RunAlreadyExistsError, match=r"'x'.*'hid\.other'.*'hid\.child'"):
        await engine.start_many(hid_child, [(1,), (2,)], ids=["y", "x"])
    assert await engine.get_run("y").result(timeout=5) == 2  # the others were recorded
    same = await engine.start(hid_other, id="x")  # the same workflow: idempotent
    assert same.id == "x"


async def test_starting_an_id_held_by_another_workflow_raises_after_reopening(
    durable_url: str,
) -> None:
    async with af.Engine(durable_url) as engine:
        await (await engine.start(hid_other, id="x")).result(timeout=5)
    async with af.Engine(durable_url) as engine:
        with pytest.raises(af.RunAlreadyExistsError, match=r"'hid\.other'"):
            await engine.start(hid_child, 1, id="x")
        assert await engine.get_run("x").result(timeout=5) == "other"
