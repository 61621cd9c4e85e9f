"""What a schedule does with its ticks: which are due, and what overlap makes of each.

Pure functions of the expression, the schedule's state and the time, so that
DST, long downtimes and every policy are tested without waiting for a clock.
"""

from __future__ import annotations

from typing import Literal

from ._cron import CronExpression
from ._schedule_types import MAX_CATCHUP

Decision = Literal["start", "skip", "buffer", "terminate"]


def missed_ticks(expr: CronExpression, after: float, now: float, catchup: str) -> list[float]:
    """Ticks in `(after, now]` to act on at open, after no engine ran since `after`:
    the most recent one (`latest`), the `MAX_CATCHUP` most recent, oldest first
    (`all`), or none (`skip`)."""
    if catchup == "skip":
        return []
    return expr.ticks(after, now, 1 if catchup == "latest" else MAX_CATCHUP)


def due_ticks(
    expr: CronExpression, first: float | None, after: float, now: float
) -> tuple[list[float], float | None]:
    """Ticks due by `now` for a live schedule whose next tick is `first`, and the tick after
    them. Normally one; after a long stall of the loop, at most `MAX_CATCHUP`, the most recent."""
    found: list[float] = []
    tick = first
    while tick is not None and tick <= now:
        if len(found) == MAX_CATCHUP:
            return expr.ticks(after, now, MAX_CATCHUP), expr.next_after(now)
        found.append(tick)
        tick = expr.next_after(tick)
    return found, tick


def overlap_decision(overlap: str, running: bool, buffered: int) -> Decision:
    """What a tick does given the schedule's unfinished runs and waiting ticks.

    - `skip`: skipped while a run is unfinished.
    - `buffer_one`: waits for the unfinished run, unless a tick waits already (then skipped).
    - `buffer_all`: every such tick waits, in order.
    - `terminate_other`: the unfinished runs are terminated, then it starts.
    - `allow`: starts now.
    """
    if overlap == "allow" or not (running or buffered):
        return "start"
    if overlap == "buffer_all":
        return "buffer"
    if overlap == "buffer_one":
        return "skip" if buffered else "buffer"
    if overlap == "terminate_other":
        return "terminate" if running else "start"
    return "skip"
