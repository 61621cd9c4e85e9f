"""Schedule expressions, DST, catchup and overlap decisions: pure functions, no clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

import actorflow as af
from actorflow._cron import CronExpression
from actorflow._schedule_policy import due_ticks, missed_ticks, overlap_decision

BERLIN = ZoneInfo("Europe/Berlin")


def ts(*parts: int, tz: object = UTC) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()  # type: ignore[arg-type, misc]


def iso(t: float, tz: object = UTC) -> str:
    return datetime.fromtimestamp(t, tz).isoformat()  # type: ignore[arg-type]


def following(expr: CronExpression, start: float, n: int) -> list[float]:
    out, t = [], start
    for _ in range(n):
        nxt = expr.next_after(t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("*/15 * * * *", ts(2026, 1, 1, 0, 7), ["00:15", "00:30", "00:45"]),
        (
            "0 9 * * MON-FRI",
            ts(2026, 1, 2, 10),
            ["2026-01-05T09", "2026-01-06T09", "2026-01-07T09"],
        ),
        ("0 0 1 jan,jul *", ts(2026, 2, 1), ["2026-07-01T00", "2027-01-01T00", "2027-07-01T00"]),
        ("5,10-12 3 * * *", ts(2026, 1, 1), ["03:05", "03:10", "03:11"]),
        ("@hourly", ts(2026, 1, 1, 0, 30), ["01:00", "02:00", "03:00"]),
        ("@daily", ts(2026, 1, 1, 12), ["2026-01-02T00", "2026-01-03T00", "2026-01-04T00"]),
        ("@weekly", ts(2026, 1, 1), ["2026-01-04T00", "2026-01-11T00", "2026-01-18T00"]),
        ("@monthly", ts(2026, 1, 15), ["2026-02-01T00", "2026-03-01T00", "2026-04-01T00"]),
        ("@yearly", ts(2026, 1, 15), ["2027-01-01T00", "2028-01-01T00", "2029-01-01T00"]),
        ("*/20 * * * * *", ts(2026, 1, 1), ["00:00:20", "00:00:40", "00:01:00"]),
        ("30 0 12 * * *", ts(2026, 1, 1), ["2026-01-01T12:00:30", "2026-01-02T12:00:30"]),
        ("@every 90s", ts(2026, 1, 1), ["00:01:30", "00:03:00", "00:04:30"]),
        ("@every 1h", ts(2026, 1, 1, 0, 59), ["01:00", "02:00", "03:00"]),
    ],
)
def test_expressions(text: str, start: float, expected: list[str]) -> None:
    got = [iso(t) for t in following(CronExpression(text), start, len(expected))]
    for found, want in zip(got, expected, strict=True):
        assert want in found, (got, expected)


def test_next_after_is_strictly_after() -> None:
    expr = CronExpression("0 * * * *")
    assert expr.next_after(ts(2026, 1, 1, 1)) == ts(2026, 1, 1, 2)
    assert expr.next_after(ts(2026, 1, 1, 1) - 0.5) == ts(2026, 1, 1, 1)
    assert CronExpression("@every 10s").next_after(ts(2026, 1, 1)) == ts(2026, 1, 1, 0, 0, 10)


@pytest.mark.parametrize(
    ("text", "zone", "needle"),
    [
        ("61 * * * *", "UTC", "minute"),
        ("* * *", "UTC", "3 fields"),
        ("0 0 30 2 *", "UTC", "day-of-month"),
        ("@fortnightly", "UTC", "unknown schedule expression"),
        ("@every soon", "UTC", "not a duration"),
        ("@every 100ms", "UTC", "at least 1 s"),
        ("", "UTC", "non-empty"),
        ("0 * * * *", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
        ("0 * * * *", "", "IANA zone"),
    ],
)
def test_bad_expressions_raise_schedule_error(text: str, zone: str, needle: str) -> None:
    with pytest.raises(af.ScheduleError, match=needle) as caught:
        CronExpression(text, zone)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, af.ActorflowError)


def test_spring_forward_fixed_time_runs_right_after_the_gap() -> None:
    # 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    expr = CronExpression("30 2 * * *", "Europe/Berlin")
    got = following(expr, ts(2026, 3, 28, 12, tz=BERLIN), 3)
    assert [iso(t, BERLIN) for t in got] == [
        "2026-03-29T03:00:00+02:00",  # the first valid instant after the gap, once
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_fall_back_fixed_time_runs_once_in_the_repeated_hour() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    expr = CronExpression("30 2 * * *", "Europe/Berlin")
    got = following(expr, ts(2026, 10, 24, 12, tz=BERLIN), 3)
    assert [iso(t) for t in got] == [
        "2026-10-25T00:30:00+00:00",  # the first 02:30 (CEST) only
        "2026-10-26T01:30:00+00:00",
        "2026-10-27T01:30:00+00:00",
    ]
    # Started again inside the repeated hour (second pass, 02:45 CET): not again today.
    assert expr.next_after(ts(2026, 10, 25, 1, 45)) == ts(2026, 10, 26, 1, 30)


def test_wildcard_jobs_keep_their_interval_across_both_transitions() -> None:
    expr = CronExpression("*/30 * * * *", "Europe/Berlin")
    spring = following(expr, ts(2026, 3, 29, 0, 0), 4)  # 01:00 CET onwards
    fall = following(expr, ts(2026, 10, 24, 23, 30), 6)  # 01:30 CEST onwards
    for ticks in (spring, fall):
        assert {b - a for a, b in itertools.pairwise(ticks)} == {1800.0}
    # In the fall, wall-clock 02:00 and 02:30 happen twice and the job runs in both.
    assert [datetime.fromtimestamp(t, BERLIN).strftime("%H:%M") for t in fall] == [
        "02:00", "02:30", "02:00", "02:30", "03:00", "03:30",
    ]  # fmt: skip


def test_ticks_are_the_last_n_in_the_window_oldest_first() -> None:
    expr = CronExpression("0 * * * *")
    after, now = ts(2026, 1, 1, 0, 30), ts(2026, 1, 1, 5, 0)
    assert expr.ticks(after, now, 100) == [ts(2026, 1, 1, h) for h in (1, 2, 3, 4, 5)]
    assert expr.ticks(after, now, 2) == [ts(2026, 1, 1, 4), ts(2026, 1, 1, 5)]
    assert expr.ticks(now, now, 5) == []
    every = CronExpression("@every 1h")
    assert every.ticks(after, now, 3) == [ts(2026, 1, 1, h) for h in (3, 4, 5)]


def test_catchup_after_a_year_of_downtime_is_bounded() -> None:
    expr = CronExpression("* * * * * *")  # every second: 31 million ticks missed
    after, now = ts(2025, 1, 1), ts(2026, 1, 1)
    assert missed_ticks(expr, after, now, "latest") == [now]
    every = missed_ticks(expr, after, now, "all")
    assert len(every) == 100 and every[-1] == now and every == sorted(every)
    assert every[0] == now - 99
    assert missed_ticks(expr, after, now, "skip") == []


def test_catchup_across_dst_keeps_debian_rules() -> None:
    expr = CronExpression("30 2 * * *", "Europe/Berlin")
    ticks = missed_ticks(expr, ts(2026, 10, 20, 12), ts(2026, 10, 27, 12), "all")
    assert [iso(t) for t in ticks][-3:] == [
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
        "2026-10-27T01:30:00+00:00",
    ]
    assert len(ticks) == 7  # one per day, the repeated hour included once


def test_due_ticks_live_and_after_a_stall() -> None:
    expr = CronExpression("* * * * * *")
    start = ts(2026, 1, 1)
    assert due_ticks(expr, start + 1, start, start + 1.2) == ([start + 1], start + 2)
    ticks, following_tick = due_ticks(expr, start + 1, start, start + 500)
    assert len(ticks) == 100 and ticks[-1] == start + 500 and following_tick == start + 501


@pytest.mark.parametrize(
    ("overlap", "running", "buffered", "decision"),
    [
        ("skip", False, 0, "start"),
        ("skip", True, 0, "skip"),
        ("buffer_one", True, 0, "buffer"),
        ("buffer_one", True, 1, "skip"),
        ("buffer_all", True, 3, "buffer"),
        ("buffer_all", False, 1, "buffer"),  # waits behind the older buffered tick
        ("terminate_other", True, 0, "terminate"),
        ("terminate_other", False, 0, "start"),
        ("allow", True, 0, "start"),
    ],
)
def test_overlap_decisions(overlap: str, running: bool, buffered: int, decision: str) -> None:
    assert overlap_decision(overlap, running, buffered) == decision
