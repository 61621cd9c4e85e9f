"""fanout: N runs, each awaited by one `result()` caller and one `events()` subscriber.

All runs block in a step until every caller and subscriber is attached, then
are released together. Delivery latency is measured two ways:

- from the commit: the moment the final event is published after its commit
  (the engine's event hub is called from the commit listener, right after
  COMMIT returns) to the moment the caller / subscriber sees the outcome;
- from the final event's `at` timestamp (stamped when the actor recorded it,
  so this one includes waiting for the commit itself).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import actorflow as af

from .common import Context, Metric, log, summarize, until

DESCRIPTION = "N runs, each with a result() caller and an events() subscriber"
DEFAULTS = {"runs": 1000}
QUICK = {"runs": 50}
TABLE = [
    Metric("result_from_commit_p50_ms", "result(): commit -> caller p50", "ms"),
    Metric("result_from_commit_p99_ms", "result(): commit -> caller p99", "ms"),
    Metric("events_from_commit_p50_ms", "events(): commit -> subscriber p50", "ms"),
    Metric("events_from_commit_p99_ms", "events(): commit -> subscriber p99", "ms"),
    Metric("result_from_at_p50_ms", "result(): event.at -> caller p50", "ms"),
    Metric("result_from_at_p99_ms", "result(): event.at -> caller p99", "ms"),
    Metric("events_from_at_p50_ms", "events(): event.at -> subscriber p50", "ms"),
    Metric("events_from_at_p99_ms", "events(): event.at -> subscriber p99", "ms"),
    Metric("release_to_all_done_s", "release -> last delivery", "s"),
]

FINAL = {"run_completed", "run_failed", "run_terminated"}
_gate: asyncio.Event | None = None


@af.step(name="bench.fanout.hold")
async def hold(x: int) -> int:
    assert _gate is not None
    await _gate.wait()
    return x


@af.workflow(name="bench.fanout.held")
async def held(x: int) -> int:
    return await hold(x)


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    global _gate
    n = cfg["runs"]
    _gate = asyncio.Event()
    committed: dict[str, float] = {}  # run id -> wall time its final event was published
    result_seen: dict[str, float] = {}
    event_seen: dict[str, tuple[float, float]] = {}  # run id -> (wall time seen, event.at)
    subscribed: set[str] = set()

    async with ctx.engine(workflows=[held]) as engine:
        hub = engine._runs.event_hub
        publish = hub.publish

        def timed_publish(key: Any, item: Any) -> None:
            if item.kind in FINAL and key not in committed:
                committed[key] = time.time()
            publish(key, item)

        hub.publish = timed_publish  # type: ignore[method-assign]

        async def caller(run_: af.Run[int]) -> None:
            await run_.result()
            result_seen[run_.id] = time.time()

        async def subscriber(run_: af.Run[int]) -> None:
            async for event in run_.events():
                subscribed.add(run_.id)
                if event.kind in FINAL:
                    event_seen[run_.id] = (time.time(), event.at.timestamp())

        log(f"  {n:,} runs, {n:,} result() callers, {n:,} events() subscribers")
        runs = await asyncio.gather(*(engine.start(held, i) for i in range(n)))
        tasks = [asyncio.create_task(caller(r)) for r in runs]
        tasks += [asyncio.create_task(subscriber(r)) for r in runs]
        await until(lambda: len(subscribed) == n, 120, "every subscriber to attach")
        released = time.time()
        _gate.set()
        await asyncio.gather(*tasks)
        done = time.time()

    def stats(seen: dict[str, float], start: dict[str, float], name: str) -> dict[str, float]:
        s = summarize((seen[k] - start[k] for k in seen), scale=1000.0)
        return {f"{name}_{k}_ms": v for k, v in s.items() if k != "count"}

    at = {k: v[1] for k, v in event_seen.items()}
    events_wall = {k: v[0] for k, v in event_seen.items()}
    ctx.metrics.update(runs=n)
    ctx.metrics.update(stats(result_seen, committed, "result_from_commit"))
    ctx.metrics.update(stats(events_wall, committed, "events_from_commit"))
    ctx.metrics.update(stats(result_seen, at, "result_from_at"))
    ctx.metrics.update(stats(events_wall, at, "events_from_at"))
    ctx.metrics["release_to_all_done_s"] = done - released
    if len(committed) != n:
        ctx.note(f"saw the final commit of {len(committed)} of {n} runs")
