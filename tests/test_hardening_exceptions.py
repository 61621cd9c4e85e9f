"""Issue 15, items 1 and 3: a step or workflow raising CancelledError, GeneratorExit,
SystemExit, KeyboardInterrupt or any other BaseException fails like any error: retried
by the step's policy, caught by `except BaseException` in the workflow, its concurrency
slot released; never a hung run, never an escape from the engine, never a crash loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import actorflow as af


class Custom(BaseException):
    pass


RAISED: dict[str, type[BaseException]] = {
    "cancelled": asyncio.CancelledError,
    "generator_exit": GeneratorExit,
    "system_exit": SystemExit,
    "keyboard_interrupt": KeyboardInterrupt,
    "custom": Custom,
}
attempts: dict[str, int] = {}


@af.step(name="hex.raises_async", retry=af.Retry(limit=2, delay=0))
async def hex_raises_async(kind: str, key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < 3:
        raise RAISED[kind]("boom")
    return "third time"


@af.step(name="hex.raises_sync", retry=af.Retry(limit=1, delay=0))
def hex_raises_sync(kind: str, key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    raise RAISED[kind]("boom")


@af.workflow(name="hex.retries")
async def hex_retries(kind: str, key: str) -> str:
    return await hex_raises_async(kind, key)


@af.workflow(name="hex.catches", concurrency=1)
async def hex_catches(kind: str, key: str) -> str:
    try:
        await hex_raises_sync(kind, key)
    except BaseException as exc:
        return f"caught {type(exc).__name__}"
    return "not raised"


@pytest.mark.parametrize("kind", sorted(RAISED))
async def test_a_step_raising_a_base_exception_is_retried_by_its_policy(
    engine: af.Engine, kind: str
) -> None:
    key = f"retries-{kind}-{engine.url}"
    run = await engine.start(hex_retries, kind, key)
    assert await run.result(timeout=5) == "third time"
    assert attempts[key] == 3
    step = (await run.info()).steps[0]
    assert (step.status, step.attempts) == ("completed", 3)


@pytest.mark.parametrize("kind", sorted(RAISED))
async def test_a_failed_step_reaches_the_workflow_and_frees_the_slot(
    engine: af.Engine, kind: str
) -> None:
    runs = [
        await engine.start(hex_catches, kind, f"catches-{kind}-{i}-{engine.url}") for i in range(3)
    ]
    # concurrency=1: each run must give its slot back for the next one to start.
    assert [await r.result(timeout=5) for r in runs] == ["caught StepFailedError"] * 3
    assert all(attempts[f"catches-{kind}-{i}-{engine.url}"] == 2 for i in range(3))


@af.workflow(name="hex.workflow_raises")
async def hex_workflow_raises(kind: str) -> None:
    raise RAISED[kind]("from the workflow")


@pytest.mark.parametrize("kind", ["system_exit", "keyboard_interrupt", "generator_exit", "custom"])
async def test_a_workflow_raising_a_base_exception_fails(engine: af.Engine, kind: str) -> None:
    run = await engine.start(hex_workflow_raises, kind)
    with pytest.raises(af.RunFailedError) as caught:
        await run.result(timeout=5)
    assert caught.value.error.type == RAISED[kind].__name__
    assert await run.status() == af.RunStatus.FAILED


SCRIPT = """
import asyncio, sys
import actorflow as af

@af.step(retry=af.Retry(limit=0))
def exits() -> None:
    sys.exit(3)

@af.workflow
async def step_exits() -> None:
    await exits()

@af.workflow
async def interrupts() -> None:
    raise KeyboardInterrupt

async def main() -> None:
    async with af.Engine(sys.argv[1]) as engine:
        for wf, run_id in ((step_exits, "a"), (interrupts, "b")):
            run = await engine.start(wf, id=run_id)
            try:
                await run.result(timeout=10)
            except af.RunFailedError as exc:
                print(run_id, await run.status(), exc.error.type, flush=True)

af.run(main())
print("exited cleanly", flush=True)
"""


@pytest.mark.parametrize("round_", [1, 2])
def test_system_exit_and_keyboard_interrupt_in_runs_leave_the_process_working(
    tmp_path: Path, round_: int
) -> None:
    """In a process of its own: the runs fail, `af.run` returns, the process exits; run
    again on the same file (round 2 runs it twice), the recorded failures stay."""
    script = tmp_path / "exits.py"
    script.write_text(textwrap.dedent(SCRIPT))
    for _ in range(round_):
        done = subprocess.run(
            [sys.executable, str(script), f"sqlite:///{tmp_path / 'x.db'}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "a failed SystemExit",
            "b failed KeyboardInterrupt",
            "exited cleanly",
        ], done.stderr
