"""Issue 15, item 19 (the policy): repeated failures are logged once in full, then counted."""

from __future__ import annotations

import logging

import pytest

from actorflow._repeated_errors import RepeatedErrors


def test_a_streak_logs_its_first_error_in_full_then_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    errors = RepeatedErrors(logging.getLogger("test.repeated"), "commit", 30.0, lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.repeated"):
        for i in range(190):  # one a second or so, like a full disk under load
            now[0] = i * 0.5
            errors.failed(OSError("database or disk is full"), " (12 rows)")
        errors.failed(ValueError("another"))  # a different error: in full too
        now[0] = 100.0
        errors.succeeded()
        errors.succeeded()  # no streak: nothing to say
    records = [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records[0] == (logging.ERROR, "commit failed (12 rows)", True)
    counts = [m for _, m, _ in records if "more times" in m]
    full = "OSError: database or disk is full"
    assert counts == [f"commit failed 60 more times in the last 30 s (latest: {full})"] * 3
    assert (logging.ERROR, "commit failed", True) in records
    assert records[-1] == (
        logging.WARNING,
        "commit succeeds again, after 191 failures in 100.0 s",
        False,
    )
    assert len(records) == 6
