"""Step retry policy."""

from __future__ import annotations

import math
from typing import Literal

import attrs

Backoff = Literal["constant", "linear", "exponential"]


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Retry.{attribute.name} must be a finite number of seconds >= 0, got {value!r}"
        )


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Retry.{attribute.name} must be an int >= 0, got {value!r}")


@attrs.frozen
class Retry:
    """How a failing step is retried.

    `limit` counts retries after the first attempt (so `limit=3` allows four
    attempts). The n-th retry waits `delay` (constant), `delay * n` (linear) or
    `delay * 2**(n-1)` (exponential), capped at `max_delay`.

    Raises `ValueError` at construction for a `limit` that is not an int >= 0,
    a delay that is not a finite number >= 0, or `max_delay < delay`.
    """

    limit: int = attrs.field(default=3, validator=_count)
    delay: float = attrs.field(default=1.0, converter=float, validator=_seconds)
    backoff: Backoff = attrs.field(
        default="exponential",
        validator=attrs.validators.in_(("constant", "linear", "exponential")),
    )
    max_delay: float = attrs.field(default=60.0, converter=float, validator=_seconds)

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.delay:
            raise ValueError(
                f"Retry.max_delay ({self.max_delay!r}) must be >= delay ({self.delay!r})"
            )

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before the `retry`-th retry (1-based)."""
        if self.backoff == "constant":
            delay = self.delay
        elif self.backoff == "linear":
            delay = self.delay * retry
        else:
            # 2.0 ** n overflows past n = 1023: the cap applies long before.
            delay = self.delay * 2.0 ** min(retry - 1, 1000)
        return min(delay, self.max_delay)


NO_RETRY = Retry(limit=0)
