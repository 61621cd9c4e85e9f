"""RepeatedErrors: a failure that repeats (every commit on a full disk) is logged once
in full, then counted.

A streak of failures logs its first error with its traceback, and any error of
another type or message in full too; the repeats of one already logged are counted
and summed up in one line per `interval` seconds. The first success after a streak
logs how long it lasted and how many failures it had. So a service whose disk is
full logs a few lines a minute, not a traceback per commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatedErrors:
    """Logs the failures of one repeated operation (`what`, e.g. "commit") to `log`."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._what = what
        self._interval = interval
        self._clock = clock
        self._seen: set[tuple[str, str]] = set()  # (type, message) logged in this streak
        self._failures = 0  # in this streak
        self._unreported = 0  # repeats since the last line
        self._started = 0.0
        self._reported = 0.0
        self._latest = ""

    def failed(self, exc: BaseException, detail: str = "") -> None:
        """Record a failure; `detail` is added to the first line (e.g. the batch size)."""
        now = self._clock()
        if not self._failures:
            self._started = self._reported = now
        self._failures += 1
        key = (type(exc).__name__, str(exc))
        if key not in self._seen:
            self._seen.add(key)
            self._log.error("%s failed%s", self._what, detail, exc_info=exc)
            return
        self._unreported += 1
        self._latest = f"{key[0]}: {key[1]}"
        if now - self._reported >= self._interval:
            self._log.error(
                "%s failed %d more times in the last %.0f s (latest: %s)",
                self._what,
                self._unreported,
                now - self._reported,
                self._latest,
            )
            self._unreported = 0
            self._reported = now

    def succeeded(self) -> None:
        """Record a success: ends a streak of failures, saying so."""
        if not self._failures:
            return
        self._log.warning(
            "%s succeeds again, after %d failures in %.1f s",
            self._what,
            self._failures,
            self._clock() - self._started,
        )
        self._failures = self._unreported = 0
        self._seen.clear()
